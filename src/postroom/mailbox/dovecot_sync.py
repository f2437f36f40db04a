"""Keeping Dovecot's passwd-file in step with the mailboxes in the database.

`sync_passwd_file(accounts, path, group)` rewrites `path` ([mailbox]
dovecot_passwd_file) from every mailbox row, as a whole and atomically
(`dovecot.write_passwd_file`): nothing is patched, so after a successful call
the file equals the database, whatever an earlier call failed to write. The
rows are read under an exclusive lock (flock on the file's directory, waited
for at most `LOCK_TIMEOUT_S`), so two commands changing mailboxes at the same
moment write in the order they read: the later snapshot always lands last.
Rows the file cannot hold (a name stored by an older version or by hand) are
left out and returned in `SyncReport.left_out` for the caller to show; they
never stop the other mailboxes' changes from reaching Dovecot.

The file's group is `group` ([mailbox] dovecot_group: Dovecot's auth process
reads the file as that group) when the group exists and we may give files to
it (as root, or as a member); otherwise the file keeps its group and
`SyncReport.group_note` says what the operator should do. A missing directory
is created 0750 (`core.statefiles`) and given to `group` as well, so that the
auth process can enter it.

Errors: OSError from the file system, TimeoutError when the lock stays taken;
the caller reports both. Config keys: none (the caller passes the values).
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postroom.core.statefiles import make_directories
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.dovecot import DovecotMailbox, LeftOut, write_passwd_file

# A rewrite takes milliseconds; a lock held this long belongs to a stuck command.
LOCK_TIMEOUT_S = 30.0
_LOCK_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class SyncReport:
    left_out: tuple[LeftOut, ...]
    group_note: str = ""
    """Empty, or why the file could not be given to the configured group."""


def sync_passwd_file(accounts: Accounts, path: Path, group: str) -> SyncReport:
    try:
        gid: int | None = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None  # no Dovecot here (yet): nothing reads the file as that group
    # Only root or a member may give a file to a group; anyone else keeps the file's
    # own group (which a setgid directory may have made the right one).
    may_give = gid is not None and (os.geteuid() == 0 or gid in (os.getegid(), *os.getgroups()))
    if not path.parent.is_dir():
        make_directories(path.parent)
        if may_give:
            os.chown(path.parent, -1, gid)
    with _locked(path.parent):
        mailboxes = [
            DovecotMailbox(
                address=mailbox.address,
                password_hash=mailbox.password_hash,
                maildir=str(mailbox.maildir),
                quota_bytes=mailbox.quota_bytes,
            )
            for mailbox in accounts.mailboxes()
        ]
        left_out = write_passwd_file(path, mailboxes, group=group if may_give else None)
    note = ""
    if gid is not None and path.stat().st_gid != gid:
        note = (
            f"{path} is not in group {group}, as which Dovecot's auth process reads it, and "
            f"only root or a member may put it there (as root: chgrp {group} {path})"
        )
    return SyncReport(left_out, note)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{directory}: another command has held the passwd-file lock "
                        f"for {LOCK_TIMEOUT_S:.0f}s"
                    ) from None
                time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock
