"""`write_transaction` on a real SQLite file: the write lock is held from the first
statement, a second writer waits for it (busy timeout) instead of failing, and
the transaction commits, or rolls back on an exception."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from postroom.db.engine import make_engine, write_transaction

HOLD_S = 0.3


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    path = tmp_path / "w.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE items (value INTEGER)")
    yield engine, path
    engine.dispose()


def values(path: Path) -> list[int]:
    with sqlite3.connect(path) as other:
        return [value for (value,) in other.execute("SELECT value FROM items ORDER BY value")]


def test_the_write_lock_is_held_before_any_write(database: tuple[Engine, Path]) -> None:
    engine, path = database
    other = sqlite3.connect(path, timeout=0)
    try:
        with write_transaction(engine) as conn:
            conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one()
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again once committed
        other.rollback()
    finally:
        other.close()


def test_commits_and_rolls_back(database: tuple[Engine, Path]) -> None:
    engine, path = database
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO items VALUES (1)")
    with pytest.raises(RuntimeError), write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO items VALUES (2)")
        raise RuntimeError("abandon")
    assert values(path) == [1]


def test_a_second_writer_waits_for_the_lock(database: tuple[Engine, Path]) -> None:
    engine, path = database
    holding = threading.Event()

    def hold_the_lock() -> None:
        with write_transaction(engine) as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1)")
            holding.set()
            time.sleep(HOLD_S)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(10)
    started = time.monotonic()
    with write_transaction(engine) as conn:
        # Reads what the first writer committed: the lock was taken after its commit.
        seen = conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one()
        conn.exec_driver_sql("INSERT INTO items VALUES (2)")
    holder.join(10)
    assert seen == 1
    assert time.monotonic() - started >= HOLD_S / 2
    assert values(path) == [1, 2]


def flock_is_free(path: Path) -> bool:
    import fcntl
    import os

    descriptor = os.open(f"{path}-writers", os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)
    return True


def test_writers_queue_on_the_writers_file(database: tuple[Engine, Path]) -> None:
    engine, path = database
    assert flock_is_free(path)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO items VALUES (1)")
        assert not flock_is_free(path)  # the next writer waits in the kernel, not in sleeps
    assert flock_is_free(path)


def test_without_the_writers_file_sqlite_alone_orders_writers(
    database: tuple[Engine, Path],
) -> None:
    engine, path = database
    Path(f"{path}-writers").unlink()  # a database created before the file existed
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO items VALUES (2)")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 1
