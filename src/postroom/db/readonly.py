"""Reading the SQLite database without SQLAlchemy, for CLI commands that only read.

Operators script the CLI, and importing SQLAlchemy alone costs 150-200 ms on a
small machine, several times what a read such as `postroom queue stats` needs.
`sqlite_rows(url)` opens the database of a plain SQLite URL
(`sqlite:///PATH`, what `[state] dir` gives) with the standard library,
read-only (`mode=ro`: nothing is created, nothing can be written), and returns
a `rows(sql)` function for the statements of such a command — or None when
this path does not apply, and the caller takes the full one (SQLAlchemy,
migrations): another database, a URL with options, a file that does not
exist yet or cannot be read, or a schema that is not at `HEAD_REVISION` (the
full path migrates it). A statement that fails later raises `sqlite3.Error`.

The connection is closed when the process ends (CLI commands are short).
Config keys: [database] url (through the caller). Untrusted input: none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from postroom.db.migrate import HEAD_REVISION, revision_read_by

_PREFIX = "sqlite:///"

Rows = Callable[[str], Sequence[Sequence[Any]]]


def sqlite_rows(url: str) -> Rows | None:
    if not url.startswith(_PREFIX) or "?" in url:
        return None
    path = Path(url.removeprefix(_PREFIX))
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None

    def rows(sql: str) -> list[Any]:
        return connection.execute(sql).fetchall()

    try:
        revision = revision_read_by(rows)
    except sqlite3.Error:
        revision = None
    if revision != HEAD_REVISION:
        connection.close()
        return None
    return rows
