"""Modes of the directories and files postroom creates for its state.

Under systemd the unit's UMask=0027 and StateDirectoryMode=0750 keep the state
private; anywhere else (`make run`, a shell) the caller's umask, often 022,
would leave the database (password hashes, contacts, queued mail) readable by
every local user. So postroom sets these modes itself, whatever the umask:

- `make_directories(path)`: `path` and its missing parents, each created with
  exactly 0750 (the owner; the group for tools an operator adds to it).
  Existing directories are left as they are: never loosened, never changed.
- `create_file(path, data, mode)`: a new file with exactly `mode` (0640 by
  default) from the start; what postroom writes into its state and config.
- `prepare_sqlite_file(path)`: the database file is created empty with exactly
  0640 before SQLite opens it, because SQLite gives the -wal and -shm files it
  creates later the database file's mode. An existing database, -wal or -shm
  that grants anything to others (an older postroom let the umask decide)
  loses those bits; its owner and group bits stay the operator's. Created as
  root in a directory someone else owns (the CLI run as root beside a `serve`
  running as `postroom`), the file is given to that directory's owner, so that
  `serve` can write it.
- `prepare_sqlite_file` also creates `<database>-writers` (0640, same owner), the
  file on which writer processes queue with flock (db/engine.py `write_transaction`).
- Other creators keep their own, stricter modes: the secret key file 0600
  (`core.secretbox`), Maildir directories 0700 and messages 0600
  (`mailbox.maildir`: Dovecot reads them as the same user), the Dovecot
  passwd-file 0640 with Dovecot's group (`mailbox.dovecot`).

Config keys: none (callers pass paths from [state] dir, [database] url).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from postroom.core.ownership import hand_to_state_owner

DIRECTORY_MODE = 0o750
FILE_MODE = 0o640
SQLITE_COMPANIONS = ("-wal", "-shm")
SQLITE_WRITERS_SUFFIX = "-writers"


def make_directories(path: Path, mode: int = DIRECTORY_MODE) -> None:
    """Create `path` and its missing parents with exactly `mode`; raises OSError."""
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # another process made it first: its mode is its creator's business
        os.chmod(directory, mode)  # the umask may have taken bits away


def create_file(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """A new file holding `data` with exactly `mode` from its first byte (never readable
    by others in between, whatever the umask); FileExistsError if `path` exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(descriptor, "wb") as handle:
        os.fchmod(handle.fileno(), mode)  # the umask may have taken bits away
        handle.write(data)


def prepare_sqlite_file(path: Path) -> None:
    """Make sure the SQLite database at `path` exists with a private mode (see above)."""
    make_directories(path.parent)
    created = []
    for new in (path, Path(f"{path}{SQLITE_WRITERS_SUFFIX}")):
        try:
            create_file(new, b"")
            created.append(new)
        except FileExistsError:
            pass
    if path not in created:
        for existing in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANIONS)):
            _drop_access_of_others(existing)
    hand_to_state_owner(created, path.parent)


def _drop_access_of_others(path: Path) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o007:
            os.chmod(path, mode & ~0o007)
    except FileNotFoundError:
        pass  # no -wal or -shm while no connection is open
    except PermissionError:
        pass  # not ours to change (another user's database, read-only): SQLite will say more
