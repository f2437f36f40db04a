"""A claim on SQLite claims only what is still due when it writes: another node's
claim committed between this claim's SELECT and its UPDATE keeps its rows.

The claim runs here in a plain `engine.begin()` (sqlite3's legacy transaction
control: the SELECT runs outside the transaction), the case the group commit's
BEGIN IMMEDIATE no longer produces, to show the UPDATE alone keeps claims exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import MessageOrigin, deliveries
from postroom.mta.queue.outbox import store_queued
from postroom.mta.queue.records import Job
from postroom.mta.queue.store import QueueStore


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "race.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as conn:
        store_queued(
            conn,
            "a@src.test",
            ["r1@dest.test", "r2@dest.test", "r3@dest.test"],
            b"Subject: x\r\n\r\nx\r\n",
            "default",
            MessageOrigin.RELAY,
        )
    engine.dispose()
    yield path


def delivery_ids(jobs: list[Job]) -> set[int]:
    return {d.delivery_id for job in jobs for d in job.deliveries}


def test_rows_claimed_meanwhile_by_another_node_are_left_to_it(path: Path) -> None:
    engine_a: Engine = make_engine(f"sqlite:///{path}")
    engine_b: Engine = make_engine(f"sqlite:///{path}")
    node_a = QueueStore(engine_a, node_name="node/w0")
    node_b = QueueStore(engine_b, node_name="node/w1")
    taken_by_b: list[Job] = []

    def other_node_claims_first(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT deliveries.id") and not taken_by_b:
            with engine_b.begin() as other:
                taken_by_b.extend(node_b._claim(other, 2))

    event.listen(engine_a, "after_cursor_execute", other_node_claims_first)
    with engine_a.begin() as conn:
        taken_by_a = node_a._claim(conn, 10)

    assert len(delivery_ids(taken_by_b)) == 2
    assert len(delivery_ids(taken_by_a)) == 1
    assert not delivery_ids(taken_by_a) & delivery_ids(taken_by_b)
    with engine_a.connect() as conn:
        owners = dict(conn.execute(select(deliveries.c.id, deliveries.c.lease_owner)).all())
    assert {i: owners[i] for i in delivery_ids(taken_by_b)} == dict.fromkeys(
        delivery_ids(taken_by_b), "node/w1"
    )
    assert [owners[i] for i in delivery_ids(taken_by_a)] == ["node/w0"]
    engine_a.dispose()
    engine_b.dispose()
