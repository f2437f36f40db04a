"""The Maildir store against real files: unique names, durable delivery that
never leaves partial files, Maildir++ quota bookkeeping and its recalculation."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from postroom.mailbox.maildir import (
    QUOTA_FILE_MAX_BYTES,
    MaildirError,
    Usage,
    deliver,
    ensure_maildir,
    remove_maildir,
    set_quota,
    usage,
)

HOST = "mx.example.test"
MESSAGE = b"From: a@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"
NAME = re.compile(
    r"new/(?P<seconds>\d+)\.M(?P<micro>\d+)P(?P<pid>\d+)Q(?P<counter>\d+)R(?P<random>[0-9a-f]+)"
    r"\.(?P<host>[^,]+),S=(?P<size>\d+)"
)


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    path = tmp_path / "mail" / "example.test" / "alice"
    ensure_maildir(path)
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def quota_lines(path: Path) -> list[str]:
    return (path / "maildirsize").read_text().splitlines()


def place(directory: Path, name: str, content: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(content)


# --- creation -----------------------------------------------------------------------


def test_ensure_maildir_creates_private_tree_with_parents(tmp_path: Path) -> None:
    path = tmp_path / "root" / "example.test" / "alice"
    ensure_maildir(path)
    for directory in (tmp_path / "root", tmp_path / "root" / "example.test", path):
        assert mode_of(directory) == 0o700
    for name in ("cur", "new", "tmp"):
        assert (path / name).is_dir()
        assert mode_of(path / name) == 0o700


def test_ensure_maildir_is_idempotent_and_keeps_messages(maildir: Path) -> None:
    name = deliver(maildir, MESSAGE, hostname=HOST)
    ensure_maildir(maildir)
    assert (maildir / name).read_bytes() == MESSAGE


def test_ensure_maildir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "alice").write_text("not a directory")
    with pytest.raises(MaildirError) as caught:
        ensure_maildir(tmp_path / "alice")
    assert caught.value.path == tmp_path / "alice"
    assert caught.value.cause is not None


# --- delivery -----------------------------------------------------------------------


def test_five_hundred_deliveries_get_unique_exact_files(maildir: Path) -> None:
    contents = {}
    for index in range(500):
        content = MESSAGE + b"x" * index
        name = deliver(maildir, content, hostname=HOST)
        assert name not in contents
        contents[name] = content
    assert len(os.listdir(maildir / "new")) == 500
    assert os.listdir(maildir / "tmp") == []
    for name, content in contents.items():
        match = NAME.fullmatch(name)
        assert match is not None, name
        assert int(match["size"]) == len(content) == (maildir / name).stat().st_size
        assert int(match["pid"]) == os.getpid()
        assert match["host"] == HOST
        assert (maildir / name).read_bytes() == content


def test_delivery_keeps_bytes_exactly_and_files_private(maildir: Path) -> None:
    content = b"Subject: \xff\xfe raw\r\n\r\nline one\r\nbare lf\nno final newline"
    name = deliver(maildir, content, hostname=HOST)
    assert (maildir / name).read_bytes() == content
    assert mode_of(maildir / name) == 0o600


def test_delivery_escapes_slash_and_colon_in_hostname(maildir: Path) -> None:
    name = deliver(maildir, MESSAGE, hostname="odd/host:25")
    assert name.endswith(f".odd\\057host\\07225,S={len(MESSAGE)}")
    assert (maildir / name).exists()


def test_delivery_creates_a_missing_maildir(tmp_path: Path) -> None:
    path = tmp_path / "example.test" / "bob"
    name = deliver(path, MESSAGE, hostname=HOST)
    assert (path / name).read_bytes() == MESSAGE
    assert mode_of(path / "cur") == 0o700


def test_delivery_refuses_bad_arguments_before_writing(maildir: Path) -> None:
    for hostname in ("", "bad\0host"):
        with pytest.raises(ValueError):
            deliver(maildir, MESSAGE, hostname=hostname)
    with pytest.raises(ValueError):
        deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=-1)
    assert os.listdir(maildir / "tmp") == os.listdir(maildir / "new") == []


def test_failed_link_leaves_nothing_behind(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_link(source: object, target: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "link", broken_link)
    with pytest.raises(MaildirError) as caught:
        deliver(maildir, MESSAGE, hostname=HOST)
    assert caught.value.path == maildir
    assert isinstance(caught.value.cause, OSError)
    assert os.listdir(maildir / "tmp") == []
    assert os.listdir(maildir / "new") == []
    assert not (maildir / "maildirsize").exists()


def test_failed_directory_sync_withdraws_the_message(
    maildir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync_failing_on_directories(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_failing_on_directories)
    with pytest.raises(MaildirError):
        deliver(maildir, MESSAGE, hostname=HOST)
    assert os.listdir(maildir / "tmp") == []
    assert os.listdir(maildir / "new") == []


def test_failed_write_leaves_nothing_behind(maildir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(MaildirError):
        deliver(maildir, MESSAGE, hostname=HOST)
    assert os.listdir(maildir / "tmp") == []
    assert os.listdir(maildir / "new") == []


def test_name_collision_in_new_picks_another_name(
    maildir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = os.link
    taken: list[str] = []

    def link_colliding_once(source: str | Path, target: str | Path) -> None:
        if not taken:
            taken.append(Path(target).name)
            raise FileExistsError(errno.EEXIST, "File exists")
        real_link(source, target)

    monkeypatch.setattr(os, "link", link_colliding_once)
    name = deliver(maildir, MESSAGE, hostname=HOST)
    assert Path(name).name != taken[0]
    assert os.listdir(maildir / "new") == [Path(name).name]
    assert os.listdir(maildir / "tmp") == []


def test_endless_name_collisions_give_up_cleanly(
    maildir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always_taken(source: object, target: object) -> None:
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr(os, "link", always_taken)
    with pytest.raises(MaildirError):
        deliver(maildir, MESSAGE, hostname=HOST)
    assert os.listdir(maildir / "tmp") == []
    assert os.listdir(maildir / "new") == []


def test_quota_bookkeeping_failure_does_not_undo_a_delivery(
    maildir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (maildir / "maildirsize").mkdir()  # neither readable nor replaceable as a file
    with caplog.at_level(logging.WARNING):
        name = deliver(maildir, MESSAGE, hostname=HOST)
    assert (maildir / name).read_bytes() == MESSAGE
    assert "maildirsize" in caplog.text


def test_concurrent_deliveries_all_counted(maildir: Path) -> None:
    set_quota(maildir, 0)
    contents = [MESSAGE + b"y" * index for index in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(lambda content: deliver(maildir, content, hostname=HOST), contents))
    assert len(set(names)) == 200
    assert usage(maildir) == Usage(bytes_used=sum(map(len, contents)), messages=200)
    assert len(quota_lines(maildir)) == 202  # definition, initial sum, one line per delivery


# --- quota bookkeeping ---------------------------------------------------------------


def test_usage_sums_deliveries(maildir: Path) -> None:
    for copies in (1, 2, 5):
        deliver(maildir, MESSAGE * copies, hostname=HOST)
    assert usage(maildir) == Usage(bytes_used=len(MESSAGE) * 8, messages=3)
    lines = quota_lines(maildir)
    assert lines[0] == "0S"
    assert lines[-2:] == [f"{len(MESSAGE) * 2} 1", f"{len(MESSAGE) * 5} 1"]


def test_usage_of_an_empty_maildir_is_zero_and_written_down(maildir: Path) -> None:
    assert usage(maildir) == Usage(bytes_used=0, messages=0)
    assert quota_lines(maildir) == ["0S", "0 0"]
    assert mode_of(maildir / "maildirsize") == 0o600


def test_usage_of_a_maildir_not_created_yet_is_zero(tmp_path: Path) -> None:
    assert usage(tmp_path / "example.test" / "new-user") == Usage(bytes_used=0, messages=0)
    assert not (tmp_path / "example.test").exists()


def test_quota_definition_written_and_rewritten_on_change(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=1_000_000)
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=1_000_000)
    assert quota_lines(maildir)[0] == "1000000S"
    assert len(quota_lines(maildir)) == 3
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=2_000_000)
    assert quota_lines(maildir) == ["2000000S", f"{3 * len(MESSAGE)} 3"]
    deliver(maildir, MESSAGE, hostname=HOST)
    assert quota_lines(maildir) == ["0S", f"{4 * len(MESSAGE)} 4"]


def test_set_quota_rewrites_definition_and_recounts(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    deliver(maildir, MESSAGE, hostname=HOST)
    set_quota(maildir, 5_000)
    assert quota_lines(maildir) == ["5000S", f"{2 * len(MESSAGE)} 2"]
    assert os.listdir(maildir / "tmp") == []
    set_quota(maildir, 0)
    assert quota_lines(maildir)[0] == "0S"
    with pytest.raises(ValueError):
        set_quota(maildir, -1)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda file: file.unlink(), id="deleted"),
        pytest.param(lambda file: file.write_text("0S\n12 1\nnot numbers\n"), id="garbage"),
        pytest.param(lambda file: file.write_text("0S\n12 1\n-500 -3\n"), id="negative"),
        pytest.param(lambda file: file.write_text("0S\n12 1\n7 1"), id="unterminated"),
        pytest.param(lambda file: file.write_bytes(b"0S\n\0\0\n"), id="binary"),
        pytest.param(lambda file: file.write_text(""), id="empty"),
        pytest.param(lambda file: file.write_text("lots\n1 1\n"), id="bad-definition"),
        pytest.param(
            lambda file: file.write_text("0S\n" + "0 0\n" * (QUOTA_FILE_MAX_BYTES // 4)),
            id="too-big",
        ),
    ],
)
def test_usage_recalculates_an_untrustworthy_file(
    maildir: Path, damage: Callable[[Path], object]
) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    deliver(maildir, MESSAGE * 3, hostname=HOST)
    damage(maildir / "maildirsize")
    expected = Usage(bytes_used=4 * len(MESSAGE), messages=2)
    assert usage(maildir) == expected
    assert quota_lines(maildir) == ["0S", f"{expected.bytes_used} 2"]
    assert os.listdir(maildir / "tmp") == []


def test_recalculation_keeps_a_valid_definition(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST, quota_bytes=9000)
    (maildir / "maildirsize").write_text("9000S\nbroken\n")
    assert usage(maildir) == Usage(bytes_used=len(MESSAGE), messages=1)
    assert quota_lines(maildir) == ["9000S", f"{len(MESSAGE)} 1"]


def test_file_at_the_size_limit_is_recalculated_and_shrinks(maildir: Path) -> None:
    padding = "0 0\n" * ((QUOTA_FILE_MAX_BYTES - 3) // 4 + 1)
    (maildir / "maildirsize").write_text("0S\n" + padding)
    assert (maildir / "maildirsize").stat().st_size >= QUOTA_FILE_MAX_BYTES
    deliver(maildir, MESSAGE, hostname=HOST)
    assert quota_lines(maildir) == ["0S", f"{len(MESSAGE)} 1"]


def test_recalculation_counts_folders_and_trusts_size_in_name(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    place(maildir / "cur", "1.M1P1Q1R1.host,S=1000:2,S", b"short")  # S= wins over stat
    place(maildir / ".Junk" / "new", "2.M1P1Q1R1.host,S=200", b"x")
    place(maildir / ".Junk" / "cur", "3.M1P1Q1R1.host:2,", b"x" * 30)  # no S=: stat
    place(maildir / ".Archive.2024" / "cur", "4.M1P1Q1R1.host,S=5,W=6:2,", b"x")
    place(maildir / ".Junk" / "tmp", "5.M1P1Q1R1.host,S=9999", b"x")  # tmp/ is not mail
    place(maildir / "new", ".hidden", b"x" * 77)  # not a message
    (maildir / "not-a-folder").mkdir()
    place(maildir / "not-a-folder" / "cur", "6.M1P1Q1R1.host,S=4444", b"x")
    (maildir / "maildirsize").unlink()
    assert usage(maildir) == Usage(bytes_used=len(MESSAGE) + 1000 + 200 + 30 + 5, messages=5)


# --- removal -------------------------------------------------------------------------


def test_remove_maildir_deletes_everything(maildir: Path) -> None:
    deliver(maildir, MESSAGE, hostname=HOST)
    place(maildir / ".Junk" / "cur", "1.M1P1Q1R1.host,S=1", b"x")
    remove_maildir(maildir)
    assert not maildir.exists()
    assert maildir.parent.is_dir()


def test_remove_maildir_refuses_what_is_not_a_maildir(tmp_path: Path) -> None:
    keep = tmp_path / "important"
    (keep / "cur").mkdir(parents=True)
    (keep / "new").mkdir()
    (keep / "precious.txt").write_text("keep me")
    with pytest.raises(MaildirError):
        remove_maildir(keep)
    assert (keep / "precious.txt").read_text() == "keep me"
    with pytest.raises(MaildirError):
        remove_maildir(tmp_path / "missing")
