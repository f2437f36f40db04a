"""Database engines: SQLite (WAL, fsync on every commit) by default, PostgreSQL.

Input: a SQLAlchemy URL (`[database] url`, or SQLite under `[state] dir`).
Durability is the contract here: SQLite runs with `journal_mode=WAL` and
`synchronous=FULL`, so a commit returns only after the WAL is fsynced; that is
what lets the SMTP session say 250 right after the queue's group commit.
PostgreSQL keeps its own defaults (`synchronous_commit=on`).

Several writer processes (the workers of `serve`, the CLI) share one database.
`write_transaction(engine)` is `engine.begin()` for a transaction that writes:
on SQLite it starts with `BEGIN IMMEDIATE`, so the write lock is taken first
(waiting up to the busy timeout) and everything the transaction reads stays
true until it commits. Without it, Python's sqlite3 (legacy transaction
control, the default before 3.16) sends BEGIN only before the first
INSERT/UPDATE/DELETE: a SELECT before it runs outside the transaction and
another process may change what it read before the write. PostgreSQL
transactions are unchanged (READ COMMITTED: lock rows that a decision depends
on, or make the write conditional).
The SQLite file is created by `core.statefiles.prepare_sqlite_file` (0640 in a
0750 directory, whatever the umask) before SQLite opens it; when it cannot be,
`StartupError` names the path and the reason (one line, exit 2, at any command).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from postroom.core.errors import StartupError
from postroom.core.statefiles import prepare_sqlite_file


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                prepare_sqlite_file(Path(parsed.database))
            except OSError as error:
                raise StartupError(
                    f"cannot create the SQLite database {parsed.database}: "
                    f"{error.filename}: {error.strerror}"
                ) from None
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The writer waits for a CLI command's short transaction instead of failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` holding SQLite's write lock from its first statement on."""
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # The first statement on the DBAPI connection: sqlite3 sees no transaction
            # open, passes it through, and its commit()/rollback() then end this one.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
