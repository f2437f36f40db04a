"""The passwd-file kept in step with the database (postroom.mailbox.dovecot_sync): rewritten
whole from the rows, rows it cannot hold left out, two rewrites at once landing in the order
they read, and a caller that may not give the file to Dovecot's group still writing it."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.fakes.mailbox_rows import ANY_HASH, insert_mailbox_row

from postroom.mailbox.accounts import Accounts, Mailbox
from postroom.mailbox.directory import Directory
from postroom.mailbox.dovecot_sync import sync_passwd_file

WAIT_S = 10.0


@pytest.fixture
def accounts(engine: Engine, tmp_path: Path) -> Accounts:
    directory = Directory(engine)
    directory.add_project("acme")
    directory.add_domain("example.test", "acme")
    directory.mark_verified("example.test", [])
    return Accounts(engine, tmp_path / "mail")


def logins(path: Path) -> list[str]:
    return [line.split(":", 1)[0] for line in path.read_text().splitlines()]


def test_the_file_is_the_database_and_a_bad_row_is_only_left_out(
    accounts: Accounts, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "dovecot" / "passwd"
    for name in ("alice", "bob"):
        accounts.add_mailbox(f"{name}@example.test", ANY_HASH, 0)
    insert_mailbox_row(engine, "a%d@example.test")
    report = sync_passwd_file(accounts, path, "nogroup")
    assert logins(path) == ["alice@example.test", "bob@example.test"]
    assert [left.address for left in report.left_out] == ["a%d@example.test"]
    assert "'%'" in report.left_out[0].reason
    # Created 0750 and given to the group, so that Dovecot's auth process can enter it.
    assert path.parent.stat().st_mode & 0o777 == 0o750
    assert path.parent.stat().st_gid == grp.getgrnam("nogroup").gr_gid

    accounts.delete_mailbox("bob@example.test")
    sync_passwd_file(accounts, path, "nogroup")
    assert logins(path) == ["alice@example.test"]


def test_two_rewrites_at_once_land_in_the_order_they_read(
    accounts: Accounts, tmp_path: Path
) -> None:
    path = tmp_path / "passwd"
    accounts.add_mailbox("alice@example.test", ANY_HASH, 0)
    has_read, may_write = threading.Event(), threading.Event()

    class SlowReader(Accounts):
        """Reads its snapshot (alice only), then waits before the write."""

        def mailboxes(self, **filters: str | None) -> list[Mailbox]:
            rows = super().mailboxes(**filters)
            has_read.set()
            assert may_write.wait(WAIT_S)
            return rows

    slow = SlowReader(accounts.engine, accounts.mail_root)
    first = threading.Thread(target=sync_passwd_file, args=(slow, path, "nogroup"))
    first.start()
    try:
        assert has_read.wait(WAIT_S)
        accounts.add_mailbox("bob@example.test", ANY_HASH, 0)
        second = threading.Thread(target=sync_passwd_file, args=(accounts, path, "nogroup"))
        second.start()
        # Unlocked, the second rewrite would land now and the stale first one after it.
        second.join(0.5)
    finally:
        may_write.set()
        first.join(WAIT_S)
    second.join(WAIT_S)
    assert not first.is_alive() and not second.is_alive()
    assert logins(path) == ["alice@example.test", "bob@example.test"]


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A directory the unprivileged user `nobody` owns (pytest's tmp_path is root's 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="postroom-nobody-"))
    shutil.chown(directory, "nobody", "nogroup")
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def sync_as_nobody(config: Path) -> subprocess.CompletedProcess[str]:
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    command = [sys.executable, "-m", "postroom.cli.main", "-c", str(config), "dovecot", "passwd"]
    return subprocess.run(
        [*as_nobody, *command], capture_output=True, text=True, timeout=60, cwd=config.parent
    )


def test_a_caller_outside_dovecots_group_still_writes_the_file(nobody_home: Path) -> None:
    """`make run` as an ordinary user on a machine with Dovecot: the file cannot be given to
    group dovecot, which used to fail every mailbox change (EPERM); now it is written with a
    note, and none once it lives in the setgid directory `dovecot config` suggests."""
    assert os.geteuid() == 0, "the test drops to nobody"
    assert "nobody" not in grp.getgrnam("dovecot").gr_mem
    config = nobody_home / "postroom.toml"
    state = f'[server]\nhostname = "mx.example.test"\n[state]\ndir = "{nobody_home}/s"\n'
    config.write_text(state)
    result = sync_as_nobody(config)
    assert result.returncode == 0, result.stderr
    passwd = nobody_home / "s" / "dovecot" / "passwd"
    assert passwd.stat().st_gid == grp.getgrnam("nogroup").gr_gid
    assert f"as root: chgrp dovecot {passwd}" in result.stderr

    setgid = nobody_home / "etc-dovecot-postroom"  # install -d -o nobody -g dovecot -m 2750
    setgid.mkdir()
    shutil.chown(setgid, "nobody", "dovecot")
    setgid.chmod(0o2750)
    config.write_text(f'{state}[mailbox]\ndovecot_passwd_file = "{setgid}/passwd"\n')
    for _ in range(2):  # created, then replaced: the group stays Dovecot's
        result = sync_as_nobody(config)
        assert (result.returncode, result.stderr) == (0, "")
        assert (setgid / "passwd").stat().st_gid == grp.getgrnam("dovecot").gr_gid
