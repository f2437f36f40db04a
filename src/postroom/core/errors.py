"""Errors that end a command with one line for the operator, never a traceback,
and the one wording of a failed file operation (`PATH: cannot VERB: REASON`)
that every command and the config loader use."""

from __future__ import annotations

import os


class StartupError(RuntimeError):
    """The server cannot start (a port taken, an address not local)."""


def cannot(path: str | os.PathLike[str], verb: str, error: OSError) -> str:
    """`PATH: cannot read: No such file or directory`: the file first (what to fix),
    then what failed, then the system's reason (not Python's `[Errno 2] ...` repr)."""
    return f"{path}: cannot {verb}: {error.strerror or error}"
