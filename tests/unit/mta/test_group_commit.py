"""Group commit on a real SQLite file: one transaction for many callers, batch
operations called once per transaction, and a failing operation failing only
its own caller."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table, func, insert, select

from postroom.db.engine import make_engine
from postroom.mta.queue.groupcommit import GroupCommitter, QueueWriteError

metadata = MetaData()
items = Table("items", metadata, Column("value", Integer, primary_key=True))


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/g.db")
    metadata.create_all(engine)
    return engine


def count(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(items)).scalar_one()


async def test_concurrent_callers_share_transactions_and_batch_calls(engine) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def insert_many(conn: Connection, values: list[int]) -> list[int]:
        calls.append(len(values))
        conn.execute(insert(items), [{"value": v} for v in values])
        return [v * 10 for v in values]

    committer = GroupCommitter(engine, batch_max=1000)
    committer.start()
    results = await asyncio.gather(*(committer.submit_item(insert_many, v) for v in range(200)))
    await committer.close()
    assert results == [v * 10 for v in range(200)]
    assert count(engine) == 200
    assert sum(calls) == 200
    assert len(calls) < 200  # items of one transaction went into one call


async def test_a_failing_operation_fails_only_its_caller(engine) -> None:  # type: ignore[no-untyped-def]
    def add(value: int):  # type: ignore[no-untyped-def]
        return lambda conn: conn.execute(insert(items), {"value": value}).rowcount

    committer = GroupCommitter(engine)
    committer.start()
    outcomes = await asyncio.gather(
        committer.submit(add(1)),
        committer.submit(add(1)),  # duplicate primary key: this one fails
        committer.submit(add(2)),
        return_exceptions=True,
    )
    await committer.close()
    assert outcomes[0] == 1 and outcomes[2] == 1
    assert isinstance(outcomes[1], QueueWriteError)
    assert count(engine) == 2


async def test_nothing_is_accepted_after_close(engine) -> None:  # type: ignore[no-untyped-def]
    committer = GroupCommitter(engine)
    committer.start()
    await committer.close()
    with pytest.raises(RuntimeError):
        await committer.submit(lambda conn: None)


async def test_a_cancelled_callers_write_still_commits_and_is_reported(  # type: ignore[no-untyped-def]
    engine, caplog: pytest.LogCaptureFixture
) -> None:
    def add_one(conn: Connection) -> int:
        return conn.execute(insert(items), {"value": 7}).rowcount

    committer = GroupCommitter(engine)
    committer.start()
    caller = asyncio.create_task(committer.submit(add_one))
    await asyncio.sleep(0)  # submitted
    caller.cancel()
    with caplog.at_level(logging.WARNING, logger="postroom.mta.queue.groupcommit"):
        await committer.close()
    assert count(engine) == 1  # no withdrawal: the work must come through ShieldedTasks
    assert "a committed write (" in caplog.text and "add_one) had no caller left" in caplog.text


async def test_what_arrives_while_another_process_writes_joins_the_next_transaction(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import fcntl
    import os

    calls: list[list[int]] = []

    def insert_many(conn: Connection, values: list[int]) -> list[None]:
        calls.append(values)
        conn.execute(insert(items), [{"value": v} for v in values])
        return [None] * len(values)

    other_writer = os.open(f"{tmp_path}/g.db-writers", os.O_RDONLY)
    fcntl.flock(other_writer, fcntl.LOCK_EX)  # another worker's commit is under way
    committer = GroupCommitter(engine)
    committer.start()
    first = asyncio.ensure_future(committer.submit_item(insert_many, 1))
    await asyncio.sleep(0.1)  # the commit thread now waits for its turn
    later = [asyncio.ensure_future(committer.submit_item(insert_many, v)) for v in (2, 3)]
    await asyncio.sleep(0.1)
    os.close(other_writer)  # its turn
    await asyncio.gather(first, *later)
    await committer.close()
    assert calls == [[1, 2, 3]]  # one transaction, taken when the turn came
