"""Campaign claims on a real PostgreSQL: two producers take disjoint batches, and a
row another transaction holds locked is skipped (SKIP LOCKED), not waited for.

The producer world of the unit tests (`tests/unit/campaign/producer_world.py`) on
the session's PostgreSQL, in a project of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.peers.postgres import PostgresServer
from tests.unit.campaign.producer_world import ProducerWorld

from postroom.db.models import campaign_recipients

pytestmark = pytest.mark.flow

ROWS = 60


@pytest.fixture
def world(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[ProducerWorld]:
    project = f"claims{uuid.uuid4().hex[:8]}"
    world = ProducerWorld(postgres_server.url, tmp_path, contacts_count=ROWS, project=project)
    world.launch()
    yield world
    world.engine.dispose()


def test_two_producers_claim_disjoint_batches_until_none_is_left(world: ProducerWorld) -> None:
    producers = [world.producer(f"node-{name}", batch_rows=7)[0] for name in "ab"]

    def drain(index: int) -> list[int]:
        taken: list[int] = []
        while batch := producers[index].claim(world.campaign_id):
            taken += [row.row_id for row in batch]
        return taken

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(drain, [0, 1])
    assert not set(first) & set(second)
    assert len(first) + len(second) == ROWS
    owners = {row.lease_owner for row in world.rows()}
    assert owners == {"node-a", "node-b"} or len(first) == 0 or len(second) == 0


def test_rows_locked_by_another_transaction_are_skipped_not_waited_for(
    world: ProducerWorld,
) -> None:
    producer, _ = world.producer("node-a", batch_rows=5)
    with world.engine.connect() as holder, holder.begin():
        locked = list(
            holder.execute(
                select(campaign_recipients.c.id)
                .where(campaign_recipients.c.campaign_id == world.campaign_id)
                .order_by(campaign_recipients.c.seq)
                .limit(5)
                .with_for_update()
            ).scalars()
        )
        with ThreadPoolExecutor(1) as pool:  # bounded: a blocked claim fails the test
            claimed = pool.submit(producer.claim, world.campaign_id).result(timeout=10)
    assert len(claimed) == 5
    assert not {row.row_id for row in claimed} & set(locked)
