"""Errors that end a command with one line for the operator, never a traceback."""

from __future__ import annotations


class StartupError(RuntimeError):
    """The server cannot start (a port taken, an address not local)."""
