"""Files the CLI creates for the server belong to the server's user.

The sysadmin runs `postroom` commands as root, while `serve` runs as the
unprivileged `postroom` user (systemd unit) that owns `[state] dir`. A
Maildir or secret file that root creates would then be unreadable for the
server. `hand_to_state_owner(paths, state_dir)` gives each path to the owner
of the state directory — only when we are root and that owner is not (as
under `make run`, where everything already belongs to the caller).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def hand_to_state_owner(paths: Iterable[Path], state_dir: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        owner = state_dir.stat()
    except FileNotFoundError:
        return
    if owner.st_uid == 0:
        return
    for path in paths:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def tree(path: Path) -> list[Path]:
    """`path` and everything below it (for handing a new Maildir over whole)."""
    found = [path]
    for root, directories, files in os.walk(path):
        found.extend(Path(root) / name for name in (*directories, *files))
    return found
