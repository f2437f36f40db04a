"""The campaign producer against a real SQLite file and a real queue store.

Recipient rows are written by the real `campaign.launch.launch`; the delivery
engine is a `JobSink` keeping the jobs it is handed. Claims (leases, expiry, two
producers), the exactly-once transaction, release times, skips at production, the
sent transition, the message limit, and rating events that name the campaign.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.unit.campaign.producer_world import ProducerWorld, one_pass

from postroom.campaign.producer import LEASE_S, Committed
from postroom.db.models import (
    campaign_recipients,
    campaign_sends,
    campaigns,
    contact_events,
    contacts,
    deliveries,
    messages,
    projects,
)
from postroom.mta.bounce.classify import Classifier
from postroom.mta.queue.records import FailedDelivery
from postroom.mta.queue.store import QueueStore
from postroom.rating.contacts import Contacts
from postroom.rating.observer import RatingObserver
from postroom.rating.rules import Rules


@pytest.fixture
def world(tmp_path: Path) -> ProducerWorld:
    return ProducerWorld(f"sqlite:///{tmp_path}/db.sqlite", tmp_path, contacts_count=5)


@pytest.fixture
async def store(world: ProducerWorld) -> AsyncIterator[QueueStore]:
    store = world.store("node-a")
    store.start()
    yield store
    await store.close()


def _campaign_state(world: ProducerWorld) -> str:
    with world.engine.connect() as conn:
        return str(
            conn.execute(
                select(campaigns.c.state).where(campaigns.c.id == world.campaign_id)
            ).scalar_one()
        )


def _deliveries(world: ProducerWorld) -> list:  # type: ignore[type-arg]
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                select(deliveries, messages.c.origin, messages.c.pool, messages.c.body)
                .join(messages, messages.c.id == deliveries.c.message_id)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            )
        )


def test_claims_are_leased_disjoint_and_an_expired_lease_is_claimable(
    world: ProducerWorld,
) -> None:
    world.launch()
    first, _ = world.producer("node-a", batch_rows=2)
    second, _ = world.producer("node-b", batch_rows=2)
    a = first.claim(world.campaign_id)
    b = second.claim(world.campaign_id)
    assert [row.address for row in a] == [world.address(0), world.address(1)]
    assert [row.address for row in b] == [world.address(2), world.address(3)]
    owners = {row.address: row.lease_owner for row in world.rows()}
    assert owners[world.address(0)] == "node-a" and owners[world.address(3)] == "node-b"
    assert [row.address for row in second.claim(world.campaign_id)] == [world.address(4)]
    assert second.claim(world.campaign_id) == []  # everything is leased
    world.clock.now += LEASE_S + 1  # node-a died: its rows are claimable again
    assert {row.address for row in second.claim(world.campaign_id)} >= {
        world.address(0),
        world.address(1),
    }


@pytest.mark.parametrize("state", ["paused", "launching"])
def test_a_paused_or_launching_campaign_is_not_claimed(world: ProducerWorld, state: str) -> None:
    world.launch()
    producer, _ = world.producer("node-a")
    with world.engine.begin() as conn:
        conn.execute(update(campaigns).values(state=state))
    assert producer.claim(world.campaign_id) == []


async def test_one_pass_queues_each_leased_row_once_with_its_message(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch(pool="mailings", from_name="Spring Sale")
    producer, sink = world.producer("node-a", store)
    assert await one_pass(producer) == 0.0
    rows = world.rows()
    assert [row.state for row in rows] == ["queued"] * 5
    assert all(row.lease_owner is None for row in rows)
    found = _deliveries(world)
    assert sorted(d.recipient for d in found) == [world.address(i) for i in range(5)]
    assert {d.message_id for d in found} == {row.message_id for row in rows}
    assert {(d.origin, d.pool, d.state) for d in found} == {("campaign", "mailings", "inflight")}
    # Due now: handed to the delivery engine, one job per message.
    assert sorted(job.message_id for job in sink.jobs) == sorted(row.message_id for row in rows)
    message = email.message_from_bytes(found[0].body, policy=email.policy.default)
    assert message["Subject"] == "Hello Ann"
    assert str(message["From"]) == f"Spring Sale <{'news@acme.test'}>"
    assert message["List-Unsubscribe"] is not None
    with world.engine.connect() as conn:
        sends = conn.execute(select(campaign_sends.c.kind, campaign_sends.c.message_id)).all()
    assert sorted(sends) == sorted(("campaign", row.message_id) for row in rows)
    # Nothing pending: another pass finds nothing and the campaign is sent.
    assert await one_pass(producer) > 0
    assert _campaign_state(world) == "sent"
    assert len(_deliveries(world)) == 5


async def test_rows_lost_or_a_campaign_paused_meanwhile_get_nothing_queued(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch(history=False)
    producer, sink = world.producer("node-a", store)
    claimed = producer.claim(world.campaign_id)
    launched = producer._launch(world.campaign_id)
    made = producer._render(launched, claimed)
    # Row 0's lease went to another node, row 1 was queued by someone else meanwhile.
    with world.engine.begin() as conn:
        conn.execute(
            update(campaign_recipients)
            .where(campaign_recipients.c.seq == 0)
            .values(lease_owner="node-b")
        )
        conn.execute(
            update(campaign_recipients).where(campaign_recipients.c.seq == 1).values(state="queued")
        )
    jobs = await store.enqueue_produced(
        lambda conn: producer._commit(conn, launched, made, Committed())
    )
    assert sorted(job.deliveries[0].recipient for job in jobs) == [
        world.address(i) for i in (2, 3, 4)
    ]
    assert len(_deliveries(world)) == 3
    assert [row.state for row in world.rows()][:2] == ["pending", "queued"]
    # The same batch again (a retry): nothing is queued twice.
    again = await store.enqueue_produced(
        lambda conn: producer._commit(conn, launched, made, Committed())
    )
    assert again == [] and len(_deliveries(world)) == 3
    # A paused campaign: its leased, rendered rows stay pending, nothing queued.
    with world.engine.begin() as conn:
        conn.execute(
            update(campaign_recipients)
            .where(campaign_recipients.c.seq == 0)
            .values(lease_owner="node-a")
        )
        conn.execute(update(campaigns).values(state="paused"))
    paused = await store.enqueue_produced(
        lambda conn: producer._commit(conn, launched, made, Committed())
    )
    assert paused == [] and len(_deliveries(world)) == 3
    # Pending and released, not leased on: a resume claims it at once.
    assert (world.rows()[0].state, world.rows()[0].lease_owner) == ("pending", None)
    assert sink.jobs == []
    with world.engine.connect() as conn:  # history off: no campaign_sends rows
        assert conn.execute(select(campaign_sends)).first() is None


async def test_release_times_become_next_attempt_times(
    world: ProducerWorld, store: QueueStore
) -> None:
    start = world.clock.now
    world.launch(start_at=start, interval_s=2.0, part_size=2, part_gap_s=30)
    producer, sink = world.producer("node-a", store)
    await one_pass(producer)
    releases = [row.release_at for row in world.rows()]
    assert releases == [start, start + 2, start + 30, start + 32, start + 60]
    found = _deliveries(world)
    assert [d.next_attempt_at for d in found] == releases
    # Only the row due now is in flight and handed over; the later ones wait queued.
    assert [d.state for d in found] == ["inflight"] + ["queued"] * 4
    assert [job.deliveries[0].recipient for job in sink.jobs] == [world.address(0)]
    # Every row queued, but messages still wait for their release: not sent yet
    # (it can still be paused or cancelled); once the last one is due, it is.
    await one_pass(producer)
    assert _campaign_state(world) == "sending"
    world.clock.now = start + 60
    await one_pass(producer)
    assert _campaign_state(world) == "sent"


async def test_a_scheduled_campaign_starts_sending_at_its_first_message(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch(start_at=world.clock.now + 3600)
    producer, _ = world.producer("node-a", store)
    await one_pass(producer)
    assert _campaign_state(world) == "scheduled"  # released in an hour: beyond the lookahead
    assert _deliveries(world) == []
    world.clock.now += 3600
    await one_pass(producer)
    assert _campaign_state(world) == "sending"
    assert len(_deliveries(world)) == 5


async def test_a_contact_blocked_or_unsubscribed_after_launch_gets_nothing(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    with world.engine.begin() as conn:
        conn.execute(
            update(contacts).where(contacts.c.address == world.address(1)).values(blocked=1)
        )
        conn.execute(
            update(contacts)
            .where(contacts.c.address == world.address(2))
            .values(unsubscribed_at=time.time())
        )
    producer, _ = world.producer("node-a", store)
    claimed = producer.claim(world.campaign_id)
    launched = producer._launch(world.campaign_id)
    made = producer._render(launched, claimed)
    # Blocked between rendering and the write: the write checks again.
    with world.engine.begin() as conn:
        conn.execute(
            update(contacts).where(contacts.c.address == world.address(3)).values(blocked=1)
        )
    await store.enqueue_produced(lambda conn: producer._commit(conn, launched, made, Committed()))
    assert [(row.state, row.reason) for row in world.rows()] == [
        ("queued", ""),
        ("skipped", "blocked"),
        ("skipped", "unsubscribed"),
        ("skipped", "blocked"),
        ("queued", ""),
    ]
    assert sorted(d.recipient for d in _deliveries(world)) == [
        world.address(0),
        world.address(4),
    ]


async def test_a_contact_lacking_a_variable_is_skipped(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    with world.engine.begin() as conn:
        conn.execute(
            update(contacts).where(contacts.c.address == world.address(0)).values(variables="{}")
        )
    producer, _ = world.producer("node-a", store)
    await one_pass(producer)
    assert [(row.state, row.reason) for row in world.rows()][:2] == [
        ("skipped", "undefined_variable"),
        ("queued", ""),
    ]


async def test_the_project_limit_stops_production_and_rows_stay_pending(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    with world.engine.begin() as conn:
        conn.execute(update(projects).values(message_limit=3))
    producer, _ = world.producer("node-a", store, batch_rows=2)
    await one_pass(producer)  # 2 of 3
    await one_pass(producer)  # 2 more would pass the limit: nothing
    await one_pass(producer)  # resting: not even claimed
    assert [row.state for row in world.rows()] == ["queued"] * 2 + ["pending"] * 3
    assert all(row.lease_owner is None for row in world.rows())
    assert len(_deliveries(world)) == 2


async def test_the_next_batch_is_claimed_and_rendered_while_the_last_one_commits(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    producer, sink = world.producer("node-a", store, batch_rows=2)
    assert await producer.produce_once() == 0.0
    # Returned with its commit still to run: rows 0 and 1 are leased, not queued yet.
    assert [(row.state, row.lease_owner) for row in world.rows()][:3] == [
        ("pending", "node-a"),
        ("pending", "node-a"),
        ("pending", None),
    ]
    assert await producer.produce_once() == 0.0  # rows 2 and 3, once 0 and 1 are stored
    assert [row.state for row in world.rows()][:2] == ["queued"] * 2
    await one_pass(producer)
    assert [row.state for row in world.rows()] == ["queued"] * 5
    assert sorted(job.message_id for job in sink.jobs) == sorted(
        row.message_id for row in world.rows()
    )


async def test_a_batch_whose_commit_fails_goes_back_pending_and_is_produced_later(
    world: ProducerWorld, store: QueueStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.launch()
    producer, _ = world.producer("node-a", store)

    async def database_gone(produce: object) -> list[object]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "enqueue_produced", database_gone)
    await one_pass(producer)
    assert {(row.state, row.lease_owner) for row in world.rows()} == {("pending", None)}
    assert _deliveries(world) == []
    monkeypatch.undo()
    await one_pass(producer)
    assert [row.state for row in world.rows()] == ["queued"] * 5
    assert len(_deliveries(world)) == 5


async def test_stop_waits_for_the_batch_in_commit(world: ProducerWorld, store: QueueStore) -> None:
    world.launch()
    producer, _ = world.producer("node-a", store, batch_rows=2)
    producer.start()
    deadline = time.monotonic() + 20
    while not any(row.state == "queued" for row in world.rows()):
        assert time.monotonic() < deadline, "nothing produced"
        await asyncio.sleep(0.01)
    await producer.stop(timeout_s=30)
    rows = world.rows()
    # Whatever was claimed before the stop was stored; nothing is left leased.
    assert all(row.lease_owner is None for row in rows)
    queued = [row for row in rows if row.state == "queued"]
    assert len(_deliveries(world)) == len(queued)


async def test_a_restarted_node_takes_back_its_leases(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    crashed, _ = world.producer("host/w0", batch_rows=3)
    assert len(crashed.claim(world.campaign_id)) == 3
    single, _ = world.producer("host", store)
    assert single.release_own_leases(worker_prefix="host/w") == 3
    await one_pass(single)
    assert [row.state for row in world.rows()] == ["queued"] * 5


async def test_a_bounce_of_a_campaign_message_names_the_campaign(
    world: ProducerWorld, store: QueueStore
) -> None:
    world.launch()
    producer, _ = world.producer("node-a", store)
    await one_pass(producer)
    row = world.rows()[0]
    rated = Contacts(world.engine, Rules(world.config.rating))
    observer = RatingObserver(rated, Classifier.load([]).classify)
    failed = FailedDelivery(
        recipient=row.address,
        status="5.1.1",
        diagnostic="smtp; 550 5.1.1 no such user",
        remote_mta="mx.dest.test",
        updated_at=time.time(),
        expired=False,
        stage="rcpt",
    )
    with world.engine.begin() as conn:
        observer.deliveries_failed(conn, {row.message_id: [failed]})
    contact = rated.contact("acme", row.address)
    bounced = [event for event in rated.events(contact) if event.kind == "bounced"]
    assert [(e.campaign_id, e.message_id) for e in bounced] == [(world.campaign_id, row.message_id)]
    assert contact.blocked
    with world.engine.connect() as conn:  # other mail's events name no campaign
        assert (
            conn.execute(
                select(contact_events.c.campaign_id).where(contact_events.c.kind == "created")
            )
            .scalars()
            .all()
            == [None] * 5
        )
