"""The appliance secret file: creation, permissions, sub-keys, encryption round trips."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from postroom.core.secretbox import SecretBox, SecretKeyError


def test_create_writes_mode_0600_base64_line(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    SecretBox.load(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert content.endswith(b"\n") and content.count(b"\n") == 1
    assert len(base64.b64decode(content.strip(), validate=True)) == 32
    assert [entry.name for entry in tmp_path.iterdir()] == ["secret.key"]  # no temporary left


def test_round_trip_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    box = SecretBox.load(path, create=True)
    token = box.encrypt(b"-----BEGIN PRIVATE KEY-----\nsecret")
    assert b"secret" not in token
    assert box.decrypt(token) == b"-----BEGIN PRIVATE KEY-----\nsecret"
    # A second start (or another node with a copy of the file) reads the same secret.
    again = SecretBox.load(path, create=True)
    assert again.decrypt(token) == b"-----BEGIN PRIVATE KEY-----\nsecret"
    assert again.derive(b"other purpose") == box.derive(b"other purpose")


def test_sub_keys_differ_by_purpose(tmp_path: Path) -> None:
    box = SecretBox.load(tmp_path / "secret.key", create=True)
    assert len(box.derive(b"a")) == 32
    assert box.derive(b"a") != box.derive(b"b")


def test_wrong_secret_key(tmp_path: Path) -> None:
    token = SecretBox.load(tmp_path / "one.key", create=True).encrypt(b"data")
    other = SecretBox.load(tmp_path / "two.key", create=True)
    with pytest.raises(
        SecretKeyError, match=r"cannot decrypt .* with .*two\.key: wrong secret key"
    ):
        other.decrypt(token)


def test_altered_token_is_refused(tmp_path: Path) -> None:
    box = SecretBox.load(tmp_path / "secret.key", create=True)
    token = bytearray(box.encrypt(b"data"))
    token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
    with pytest.raises(SecretKeyError, match="wrong secret key"):
        box.decrypt(bytes(token))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_group_or_other_permissions_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "secret.key"
    SecretBox.load(path, create=True)
    path.chmod(mode)
    with pytest.raises(SecretKeyError) as raised:
        SecretBox.load(path, create=True)
    assert str(path) in str(raised.value)
    assert f"mode {mode:04o}" in str(raised.value)


def test_missing_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    with pytest.raises(SecretKeyError, match="secret key file is missing") as raised:
        SecretBox.load(path, create=False)
    assert str(path) in str(raised.value)
    assert not path.exists()


def test_create_makes_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "state" / "secret.key"
    SecretBox.load(path, create=True)
    # The state directory's mode, whichever of its files comes first (core.statefiles);
    # the key file itself is 0600.
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o750


def test_create_where_no_directory_can_be_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    path = tmp_path / "a-file" / "secret.key"
    with pytest.raises(SecretKeyError, match="cannot create the secret key file: ") as raised:
        SecretBox.load(path, create=True)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not base64 at all\n",
        base64.b64encode(os.urandom(16)) + b"\n",
        base64.b64encode(os.urandom(32)) + b"\n" + base64.b64encode(os.urandom(32)) + b"\n",
        b"A" * 4000,
    ],
    ids=["empty", "not-base64", "too-short", "two-lines", "huge"],
)
def test_malformed_secret_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(SecretKeyError, match="malformed secret key file") as raised:
        SecretBox.load(path, create=True)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == content  # create never overwrites an existing file


def test_repr_does_not_show_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    box = SecretBox.load(path, create=True)
    assert path.read_text().strip() not in repr(box)
    assert str(path) in repr(box)
