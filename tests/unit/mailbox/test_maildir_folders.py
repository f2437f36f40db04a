"""Delivery into a Maildir++ folder (the Junk folder of quarantined mail).

`deliver(..., folder=".Junk")` creates the folder with cur/ new/ tmp/ and its
`maildirfolder` marker, stores the message in the folder's new/, returns the
name relative to the Maildir root, and counts it in the root's `maildirsize`
(never a quota file of its own). Bad folder names are refused with ValueError
before anything is written; an empty name is the root itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from postroom.mailbox.maildir import (
    FOLDER_MARKER,
    QUOTA_FILE,
    Usage,
    deliver,
    ensure_maildir,
    usage,
)

HOST = "mx.example.test"
MESSAGE = b"From: a@sender.test\r\nSubject: junk\r\n\r\nbuy now\r\n"
FOLDER_NAME = re.compile(r"\.Junk/new/\d+\.M\d+P\d+Q\d+R[0-9a-f]+\.mx\.example\.test,S=(\d+)")


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "mail" / "example.test" / "alice"


def tree(root: Path) -> list[str]:
    """Every path under `root`, relative, sorted: the whole state of the Maildir."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_delivery_into_junk_creates_the_folder_and_returns_its_name(maildir: Path) -> None:
    name = deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    match = FOLDER_NAME.fullmatch(name)
    assert match is not None, name
    assert int(match.group(1)) == len(MESSAGE)
    assert (maildir / name).read_bytes() == MESSAGE
    junk = maildir / ".Junk"
    assert sorted(entry.name for entry in junk.iterdir()) == sorted(
        ["cur", "new", "tmp", FOLDER_MARKER]
    )
    assert (junk / FOLDER_MARKER).is_file()
    assert (junk / FOLDER_MARKER).stat().st_size == 0
    assert list((junk / "tmp").iterdir()) == []
    assert list((junk / "cur").iterdir()) == []


def test_the_root_is_a_maildir_too_and_stays_empty(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    for sub in ("cur", "new", "tmp"):
        assert (maildir / sub).is_dir()
    assert list((maildir / "new").iterdir()) == []
    assert not (maildir / FOLDER_MARKER).exists()


def test_the_folder_directories_are_private(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    for directory in (".Junk", ".Junk/new", ".Junk/cur", ".Junk/tmp"):
        assert (maildir / directory).stat().st_mode & 0o777 == 0o700


def test_the_quota_file_at_the_root_counts_folder_deliveries(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    deliver(maildir, MESSAGE + b"more\r\n", hostname=HOST, folder=".Junk")
    assert usage(maildir) == Usage(bytes_used=2 * len(MESSAGE) + 6, messages=2)
    assert (maildir / QUOTA_FILE).is_file()
    assert not (maildir / ".Junk" / QUOTA_FILE).exists()


def test_a_first_delivery_into_a_folder_counts_at_the_root(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    assert usage(maildir) == Usage(bytes_used=len(MESSAGE), messages=1)
    assert not (maildir / ".Junk" / QUOTA_FILE).exists()


def test_the_recount_finds_folder_messages(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    (maildir / QUOTA_FILE).unlink()
    assert usage(maildir) == Usage(bytes_used=2 * len(MESSAGE), messages=2)


def test_deliveries_with_a_quota_definition_keep_counting(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=10_000, folder=".Junk")
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=10_000)
    lines = (maildir / QUOTA_FILE).read_text().splitlines()
    assert lines[0] == "10000S"
    assert usage(maildir) == Usage(bytes_used=2 * len(MESSAGE), messages=2)


def test_a_second_delivery_reuses_the_folder(maildir: Path) -> None:
    first = deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    second = deliver(maildir, b"second\r\n", hostname=HOST, folder=".Junk")
    assert first != second
    assert sorted(os.listdir(maildir / ".Junk" / "new")) == sorted(
        [Path(first).name, Path(second).name]
    )


def test_an_existing_folder_gets_its_missing_marker(maildir: Path) -> None:
    ensure_maildir(maildir / ".Junk")  # made by an IMAP client before us, say
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    assert (maildir / ".Junk" / FOLDER_MARKER).is_file()


def test_an_existing_marker_is_left_alone(maildir: Path) -> None:
    ensure_maildir(maildir / ".Junk")
    (maildir / ".Junk" / FOLDER_MARKER).write_bytes(b"kept")
    deliver(maildir, MESSAGE, hostname=HOST, folder=".Junk")
    assert (maildir / ".Junk" / FOLDER_MARKER).read_bytes() == b"kept"


@pytest.mark.parametrize("folder", [".Archive.2024", ".Spam-Box", ".a_b", ".9"])
def test_other_maildir_plus_plus_names_are_accepted(maildir: Path, folder: str) -> None:
    name = deliver(maildir, MESSAGE, hostname=HOST, folder=folder)
    assert name.startswith(f"{folder}/new/")
    assert (maildir / folder / FOLDER_MARKER).is_file()
    assert usage(maildir).messages == 1


def test_an_empty_folder_is_the_root(maildir: Path) -> None:
    name = deliver(maildir, MESSAGE, hostname=HOST, folder="")
    assert name.startswith("new/")
    assert (maildir / name).read_bytes() == MESSAGE
    assert [entry.name for entry in maildir.iterdir() if entry.name.startswith(".")] == []
    assert not (maildir / FOLDER_MARKER).exists()
    assert usage(maildir) == Usage(bytes_used=len(MESSAGE), messages=1)


BAD_FOLDERS = [
    "Junk",
    "../x",
    ".a/b",
    ".",
    "..",
    "...",
    "./x",
    "/tmp/x",
    ".Junk/",
    ".Junk\n",
    ".Junk\0",
    ". Junk",
    ".-Junk",
    "._Junk",
    ".Jünk",
    "..Junk",
    ".Junk/../../x",
]


@pytest.mark.parametrize("folder", BAD_FOLDERS)
def test_bad_folder_names_are_refused_before_anything_is_written(
    maildir: Path, folder: str
) -> None:
    with pytest.raises(ValueError, match="folder name"):
        deliver(maildir, MESSAGE, hostname=HOST, folder=folder)
    assert not maildir.exists()
    assert not maildir.parent.exists()


@pytest.mark.parametrize("folder", BAD_FOLDERS)
def test_bad_folder_names_leave_an_existing_maildir_untouched(maildir: Path, folder: str) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    before = tree(maildir.parent.parent)
    with pytest.raises(ValueError):
        deliver(maildir, MESSAGE, hostname=HOST, folder=folder)
    assert tree(maildir.parent.parent) == before
    assert usage(maildir).messages == 1
