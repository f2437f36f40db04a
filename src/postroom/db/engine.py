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
Before `BEGIN IMMEDIATE`, a SQLite writer also takes an exclusive flock on
`<database>-writers`: SQLite's own busy handler, the only one Python's sqlite3
offers, sleeps 1, 2, 5, 10 ... ms between tries, so with two busy workers each
commit waited for the other's plus most of a sleep (two workers relayed less than
one). Queued on the flock, the next writer wakes the moment the last one commits.
The flock only orders writers; the write lock stays SQLite's, so a writer that
cannot open the file (another user's, not yet created) goes on without it.
The SQLite file is created by `core.statefiles.prepare_sqlite_file` (0640 in a
0750 directory, whatever the umask) before SQLite opens it; when it cannot be,
`StartupError` names the path and the reason (one line, exit 2, at any command).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from postroom.core.errors import StartupError
from postroom.core.statefiles import SQLITE_WRITERS_SUFFIX, prepare_sqlite_file


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
def write_transaction(engine: Engine, *, in_turn: bool = False) -> Iterator[Connection]:
    """`engine.begin()` holding SQLite's write lock from its first statement on;
    `in_turn`: the caller already holds `writers_turn(engine)`."""
    turn = contextlib.nullcontext() if in_turn else writers_turn(engine)
    with turn, engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # The first statement on the DBAPI connection: sqlite3 sees no transaction
            # open, passes it through, and its commit()/rollback() then end this one.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection


@contextmanager
def writers_turn(engine: Engine) -> Iterator[None]:
    """This writer's turn among the processes writing one SQLite file (the flock; a
    no-op elsewhere). A group commit takes its batch once its turn came, so that what
    arrived while it waited rides in the same transaction."""
    queued = _queue_behind_writers(engine)
    try:
        yield
    finally:
        if queued is not None:
            os.close(queued)  # releases the flock


def _queue_behind_writers(engine: Engine) -> int | None:
    """The `-writers` file's descriptor, flocked; None without SQLite or the file."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return None
    try:
        # One open file description per transaction: flock excludes the threads of
        # one process from each other too (they would share a descriptor's lock).
        descriptor = os.open(f"{database}{SQLITE_WRITERS_SUFFIX}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    except OSError:  # ENOLCK and the like: SQLite's own lock still orders the writers
        os.close(descriptor)
        return None
    return descriptor
