"""The durable queue against a real SQLite file: enqueue, claim with leases,
outcomes, retries, expiry, DSNs, and the operator's queue commands."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import MessageOrigin, deliveries, messages
from postroom.db.readonly import sqlite_rows
from postroom.db.states import DeliveryState
from postroom.mta.queue.admin import NoSuchMessage, QueueAdmin
from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.records import (
    DeliveryResult,
    FailedDelivery,
    Job,
    NewMessage,
    OriginalMessage,
)
from postroom.mta.queue.stats import queue_stats
from postroom.mta.queue.store import KEEP_IN_MEMORY_BYTES, QueueStore, RetryPolicy

LEASE_S = 600.0
LIFETIME_S = 5 * 86400.0
RETRY = RetryPolicy(min_backoff_s=300, max_backoff_s=4000, max_queue_lifetime_s=LIFETIME_S)
BODY = b"From: a@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"


class FakeClock:
    def __init__(self) -> None:
        # Near the real time, so that QueueAdmin (which reads time.time()) agrees.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingBounces:
    """A bounce builder: remembers what it was asked and answers a DSN (or None)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[tuple[OriginalMessage, list[FailedDelivery]]] = []
        self.answer = True

    def __call__(
        self, original: OriginalMessage, failed: list[FailedDelivery]
    ) -> NewMessage | None:
        self.calls.append((original, failed))
        if not self.answer:
            return None
        return NewMessage(
            queue_id=new_queue_id(self.clock()),
            mail_from="",
            recipients=(original.mail_from,),
            body=b"Subject: Undelivered Mail\r\n\r\n" + original.body,
            pool="transactional",
            origin=MessageOrigin.DSN,
            created_at=self.clock(),
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/queue.db")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def bounces(clock: FakeClock) -> RecordingBounces:
    return RecordingBounces(clock)


def make_store(engine: Engine, clock: FakeClock, node: str, bounces: Any = None) -> QueueStore:
    return QueueStore(
        engine,
        node_name=node,
        lease_s=LEASE_S,
        retry=RETRY,
        batch_max=16,
        bounce_builder=bounces,
        clock=clock,
    )


@pytest.fixture
async def store(
    engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> AsyncIterator[QueueStore]:
    store = make_store(engine, clock, "node-a", bounces)
    store.start()
    yield store
    await store.close()


@pytest.fixture
async def other_node(engine: Engine, clock: FakeClock) -> AsyncIterator[QueueStore]:
    store = make_store(engine, clock, "node-b")
    store.start()
    yield store
    await store.close()


def new_message(
    clock: FakeClock,
    *recipients: str,
    body: bytes = BODY,
    created_at: float | None = None,
    pool: str = "transactional",
) -> NewMessage:
    return NewMessage(
        queue_id=new_queue_id(clock()),
        mail_from="a@sender.test",
        recipients=recipients or ("r@dest.test",),
        body=body,
        pool=pool,
        origin=MessageOrigin.RELAY,
        created_at=clock() if created_at is None else created_at,
        client_ip="127.0.0.1",
    )


def result(delivery_id: int, verdict: str, status: str = "") -> DeliveryResult:
    default_status = {"delivered": "2.0.0", "deferred": "4.4.1", "failed": "5.1.1"}[verdict]
    status = status or default_status
    return DeliveryResult(
        delivery_id=delivery_id,
        verdict=verdict,
        status=status,
        diagnostic=f"smtp; {status[0]}50 {status} reply",
        stage="rcpt",
        remote_mta="mx.dest.test",
        source="tx-1",
    )


def delivery_rows(engine: Engine, message_id: str | None = None) -> list[Any]:
    query = select(deliveries).order_by(deliveries.c.id)
    if message_id is not None:
        query = query.where(deliveries.c.message_id == message_id)
    with engine.connect() as conn:
        return list(conn.execute(query))


def message_row(engine: Engine, message_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(messages).where(messages.c.id == message_id)).one_or_none()


def ids_of(jobs: list[Job]) -> list[int]:
    return sorted(d.delivery_id for job in jobs for d in job.deliveries)


def only_delivery(jobs: list[Job]) -> int:
    (job,) = jobs
    (claimed,) = job.deliveries
    return claimed.delivery_id


# -- enqueue ----------------------------------------------------------------------------


async def test_enqueue_returns_claimed_jobs_grouped_by_domain(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    message = new_message(clock, "a@x.test", "b@X.Test", "c@y.test")
    jobs = await store.enqueue(message)

    by_domain = {job.domain: job for job in jobs}
    assert set(by_domain) == {"x.test", "y.test"}
    assert [d.recipient for d in by_domain["x.test"].deliveries] == ["a@x.test", "b@X.Test"]
    assert [d.recipient for d in by_domain["y.test"].deliveries] == ["c@y.test"]
    for job in jobs:
        assert job.message_id == message.queue_id
        assert job.mail_from == "a@sender.test"
        assert job.pool == "transactional"
        assert job.size_bytes == len(BODY)
        assert job.body == BODY
        assert all(d.attempts == 0 for d in job.deliveries)

    rows = delivery_rows(engine)
    assert ids_of(jobs) == [row.id for row in rows]
    for row in rows:
        assert row.state == DeliveryState.INFLIGHT
        assert row.lease_owner == "node-a"
        assert row.lease_until == pytest.approx(clock() + LEASE_S)
        assert row.attempts == 0
    stored = message_row(engine, message.queue_id)
    assert stored.body == BODY
    assert stored.origin == "relay"
    assert stored.completed_at is None


async def test_a_batch_of_messages_gets_each_delivery_its_own_row(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    batch = [
        new_message(clock, "a@x.test", "b@y.test"),
        new_message(clock, "a@x.test", "twice@x.test", "twice@x.test"),
        new_message(clock, "c@z.test"),
    ]
    jobs = [job for jobs in await asyncio.gather(*map(store.enqueue, batch)) for job in jobs]

    rows = {row.id: row for row in delivery_rows(engine)}
    handed_out = [
        (job.message_id, delivery.recipient, delivery.delivery_id)
        for job in jobs
        for delivery in job.deliveries
    ]
    assert len(handed_out) == len(rows) == 6
    assert {delivery_id for _, _, delivery_id in handed_out} == set(rows)
    for message_id, recipient, delivery_id in handed_out:
        assert (rows[delivery_id].message_id, rows[delivery_id].recipient) == (
            message_id,
            recipient,
        )


async def test_large_bodies_are_not_kept_in_memory(store: QueueStore, clock: FakeClock) -> None:
    body = b"Subject: big\r\n\r\n" + b"x" * KEEP_IN_MEMORY_BYTES
    (job,) = await store.enqueue(new_message(clock, body=body))
    assert job.body is None
    assert job.size_bytes == len(body)
    assert await store.load_body(job.message_id) == body


async def test_concurrent_enqueues_all_commit(store: QueueStore, clock: FakeClock) -> None:
    batches = await asyncio.gather(
        *(store.enqueue(new_message(clock, f"r{i}@d{i % 3}.test")) for i in range(40))
    )
    assert sum(len(jobs) for jobs in batches) == 40
    assert await store.pending_count() == 40


# -- record --------------------------------------------------------------------------------


async def test_delivered(store: QueueStore, engine: Engine, clock: FakeClock) -> None:
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    clock.advance(2)
    assert await store.record([result(delivery_id, "delivered")]) == []

    (row,) = delivery_rows(engine)
    assert row.state == DeliveryState.DELIVERED
    assert row.attempts == 1
    assert (row.lease_owner, row.lease_until) == (None, None)
    assert (row.last_status, row.last_stage, row.remote_mta, row.source) == (
        "2.0.0",
        "rcpt",
        "mx.dest.test",
        "tx-1",
    )
    assert row.updated_at == clock()
    stored = message_row(engine, message.queue_id)
    assert stored.body is None
    assert stored.completed_at == clock()
    assert await store.pending_count() == 0


async def test_deferred_follows_the_backoff(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    assert await store.record([result(delivery_id, "deferred")]) == []
    (row,) = delivery_rows(engine)
    assert row.state == DeliveryState.DEFERRED
    assert row.attempts == 1
    assert clock() + 300 <= row.next_attempt_at <= clock() + 330
    assert row.last_reply == "smtp; 450 4.4.1 reply"
    assert message_row(engine, message.queue_id).body == BODY

    # Not due yet; due after the delay; the second failure waits twice as long.
    assert await store.claim_due(10) == []
    clock.now = row.next_attempt_at
    (job,) = await store.claim_due(10)
    assert job.deliveries[0].attempts == 1
    assert job.body is None  # read back from the store when needed
    await store.record([result(delivery_id, "deferred")])
    (row,) = delivery_rows(engine)
    assert row.attempts == 2
    assert clock() + 600 <= row.next_attempt_at <= clock() + 660


async def test_failed_produces_a_dsn_job(
    store: QueueStore, engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> None:
    message = new_message(clock, "gone@dest.test", "ok@dest.test")
    (job,) = await store.enqueue(message)
    gone, ok = (d.delivery_id for d in job.deliveries)

    clock.advance(1)
    dsn_jobs = await store.record([result(gone, "failed"), result(ok, "delivered")])

    (original, failed), *more = bounces.calls
    assert more == []
    assert original.queue_id == message.queue_id
    assert original.mail_from == "a@sender.test"
    assert original.body == BODY
    assert original.origin == "relay"
    assert failed == [
        FailedDelivery(
            recipient="gone@dest.test",
            status="5.1.1",
            diagnostic="smtp; 550 5.1.1 reply",
            remote_mta="mx.dest.test",
            updated_at=clock(),
            expired=False,
            delivery_id=gone,
            stage=failed[0].stage,
        )
    ]
    assert failed[0].stage  # the stage of the attempt travels with the failure
    (dsn_job,) = dsn_jobs
    assert dsn_job.mail_from == ""
    assert dsn_job.domain == "sender.test"
    assert [d.recipient for d in dsn_job.deliveries] == ["a@sender.test"]
    dsn_row = message_row(engine, dsn_job.message_id)
    assert dsn_row.origin == "dsn"
    assert dsn_row.body.endswith(BODY)
    (dsn_delivery,) = delivery_rows(engine, dsn_job.message_id)
    assert dsn_delivery.state == DeliveryState.INFLIGHT
    assert dsn_delivery.lease_owner == "node-a"

    states = {row.recipient: row.state for row in delivery_rows(engine, message.queue_id)}
    assert states == {"gone@dest.test": "failed", "ok@dest.test": "delivered"}
    assert message_row(engine, message.queue_id).body is None  # all final


async def test_deferred_past_the_lifetime_fails_as_expired(
    store: QueueStore, engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> None:
    message = new_message(clock, created_at=clock() - LIFETIME_S - 1)
    delivery_id = only_delivery(await store.enqueue(message))

    dsn_jobs = await store.record([result(delivery_id, "deferred")])

    (row,) = delivery_rows(engine, message.queue_id)
    assert row.state == DeliveryState.FAILED
    assert row.last_status == "4.4.1"
    ((_, failed),) = bounces.calls
    assert [f.expired for f in failed] == [True]
    assert len(dsn_jobs) == 1


async def test_deferred_within_the_lifetime_is_not_expired(
    store: QueueStore, engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> None:
    message = new_message(clock, created_at=clock() - LIFETIME_S + 60)
    delivery_id = only_delivery(await store.enqueue(message))
    assert await store.record([result(delivery_id, "deferred")]) == []
    assert delivery_rows(engine)[0].state == DeliveryState.DEFERRED
    assert bounces.calls == []


async def test_no_dsn_when_the_builder_declines(
    store: QueueStore, engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> None:
    bounces.answer = False
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    assert await store.record([result(delivery_id, "failed")]) == []
    assert len(bounces.calls) == 1
    with engine.connect() as conn:
        assert conn.execute(select(messages.c.id)).scalars().all() == [message.queue_id]


async def test_without_a_builder_failures_are_just_recorded(
    engine: Engine, clock: FakeClock
) -> None:
    store = make_store(engine, clock, "node-a", bounces=None)
    store.start()
    try:
        delivery_id = only_delivery(await store.enqueue(new_message(clock)))
        assert await store.record([result(delivery_id, "failed")]) == []
        assert delivery_rows(engine)[0].state == DeliveryState.FAILED
    finally:
        await store.close()


async def test_one_dsn_per_message_for_several_failed_recipients(
    store: QueueStore, clock: FakeClock, bounces: RecordingBounces
) -> None:
    jobs = await store.enqueue(new_message(clock, "a@x.test", "b@y.test", "c@y.test"))
    dsn_jobs = await store.record([result(i, "failed") for i in ids_of(jobs)])
    ((_, failed),) = bounces.calls
    assert sorted(f.recipient for f in failed) == ["a@x.test", "b@y.test", "c@y.test"]
    assert len(dsn_jobs) == 1


async def test_record_nothing(store: QueueStore) -> None:
    assert await store.record([]) == []


async def test_body_is_kept_until_every_delivery_is_final(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    message = new_message(clock, "a@x.test", "b@x.test", "c@y.test")
    first, second, third = ids_of(await store.enqueue(message))
    await store.record([result(first, "delivered")])
    assert message_row(engine, message.queue_id).body == BODY
    await store.record([result(second, "deferred")])
    assert message_row(engine, message.queue_id).body == BODY
    await store.record([result(third, "failed")])
    assert message_row(engine, message.queue_id).body == BODY  # second still deferred

    clock.advance(400)
    (job,) = await store.claim_due(10)
    assert ids_of([job]) == [second]
    assert await store.load_body(message.queue_id) == BODY
    await store.record([result(second, "delivered")])
    stored = message_row(engine, message.queue_id)
    assert stored.body is None
    assert stored.completed_at == clock()
    with pytest.raises(LookupError):
        await store.load_body(message.queue_id)


async def test_a_result_for_a_held_delivery_is_ignored(
    store: QueueStore, engine: Engine, clock: FakeClock, bounces: RecordingBounces
) -> None:
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    assert QueueAdmin(engine).hold(message.queue_id) == 1

    assert await store.record([result(delivery_id, "failed")]) == []
    (row,) = delivery_rows(engine)
    assert row.state == DeliveryState.HELD
    assert row.attempts == 0
    assert bounces.calls == []
    assert message_row(engine, message.queue_id).body == BODY


async def test_a_result_for_a_deleted_message_is_ignored(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    QueueAdmin(engine).delete(message.queue_id)
    assert await store.record([result(delivery_id, "delivered")]) == []
    assert delivery_rows(engine) == []


async def test_a_result_recorded_twice_counts_once(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    delivery_id = only_delivery(await store.enqueue(new_message(clock)))
    await store.record([result(delivery_id, "delivered")])
    await store.record([result(delivery_id, "failed")])
    (row,) = delivery_rows(engine)
    assert (row.state, row.attempts) == (DeliveryState.DELIVERED, 1)


async def test_a_delivered_result_for_a_held_delivery_or_recorded_twice_changes_nothing(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    held = new_message(clock, "held@x.test")
    held_id = only_delivery(await store.enqueue(held))
    QueueAdmin(engine).hold(held.queue_id)
    twice = new_message(clock, "twice@x.test")
    twice_id = only_delivery(await store.enqueue(twice))
    await store.record([result(twice_id, "delivered")])
    clock.advance(5)
    await store.record([result(held_id, "delivered"), result(twice_id, "delivered")])

    rows = {row.id: row for row in delivery_rows(engine)}
    assert (rows[held_id].state, rows[held_id].attempts) == (DeliveryState.HELD, 0)
    assert (rows[twice_id].state, rows[twice_id].attempts) == (DeliveryState.DELIVERED, 1)
    assert rows[twice_id].updated_at == clock() - 5
    assert message_row(engine, held.queue_id).completed_at is None


# -- claiming and leases ----------------------------------------------------------------------


async def test_claim_due_picks_due_and_expired_leases_only(
    store: QueueStore, other_node: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    admin = QueueAdmin(engine)
    start = clock()
    # Other node's work whose lease will expire (a crashed node).
    crashed = only_delivery(await other_node.enqueue(new_message(clock, "crashed@a.test")))
    # Deferred and due by the time we claim.
    due_id = only_delivery(await store.enqueue(new_message(clock, "due@b.test")))
    await store.record([result(due_id, "deferred")])
    # Held by an operator.
    held_message = new_message(clock, "held@c.test")
    await store.enqueue(held_message)
    admin.hold(held_message.queue_id)

    clock.now = start + LEASE_S + 1
    # Deferred again just now: its next attempt is in the future.
    future_id = only_delivery(await store.enqueue(new_message(clock, "future@d.test")))
    await store.record([result(future_id, "deferred")])
    # Claimed just now by the other node: its lease is valid.
    busy = only_delivery(await other_node.enqueue(new_message(clock, "busy@e.test")))
    # Final ones are never claimed.
    done = only_delivery(await store.enqueue(new_message(clock, "done@f.test")))
    await store.record([result(done, "delivered")])

    jobs = await store.claim_due(100)
    assert ids_of(jobs) == sorted([crashed, due_id])
    states = {row.id: row for row in delivery_rows(engine)}
    for delivery_id in (crashed, due_id):
        assert states[delivery_id].state == DeliveryState.INFLIGHT
        assert states[delivery_id].lease_owner == "node-a"
        assert states[delivery_id].lease_until == pytest.approx(clock() + LEASE_S)
    assert states[busy].lease_owner == "node-b"
    assert states[future_id].state == DeliveryState.DEFERRED
    held_rows = delivery_rows(engine, held_message.queue_id)
    assert [row.state for row in held_rows] == ["held"]

    # Claimed work is not claimed again while the lease runs.
    assert await other_node.claim_due(100) == []


async def test_claim_due_groups_by_message_and_domain_and_respects_limit(
    store: QueueStore, clock: FakeClock
) -> None:
    message = new_message(clock, "a@x.test", "b@x.test", "c@y.test")
    jobs = await store.enqueue(message)
    await store.record([result(i, "deferred") for i in ids_of(jobs)])
    clock.advance(400)

    claimed = await store.claim_due(100)
    assert sorted((job.domain, len(job.deliveries)) for job in claimed) == [
        ("x.test", 2),
        ("y.test", 1),
    ]
    for job in claimed:
        assert job.message_id == message.queue_id
        assert job.mail_from == "a@sender.test"
        assert job.size_bytes == len(BODY)
        assert job.created_at == message.created_at

    jobs = await store.enqueue(new_message(clock, "1@z.test", "2@z.test", "3@z.test"))
    await store.record([result(i, "deferred") for i in ids_of(jobs)])
    clock.advance(400)
    assert len(ids_of(await store.claim_due(2))) == 2
    assert len(ids_of(await store.claim_due(2))) == 1
    assert await store.claim_due(2) == []


async def test_release_own_leases(
    store: QueueStore, other_node: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    mine = ids_of(await store.enqueue(new_message(clock, "a@x.test", "b@y.test")))
    theirs = only_delivery(await other_node.enqueue(new_message(clock, "c@z.test")))

    assert await store.release_own_leases() == 2
    rows = {row.id: row for row in delivery_rows(engine)}
    for delivery_id in mine:
        assert rows[delivery_id].state == DeliveryState.QUEUED
        assert (rows[delivery_id].lease_owner, rows[delivery_id].lease_until) == (None, None)
    assert rows[theirs].state == DeliveryState.INFLIGHT
    assert rows[theirs].lease_owner == "node-b"

    # Released work is due at once, no lease expiry needed.
    assert ids_of(await store.claim_due(10)) == mine
    assert await store.release_own_leases() == 2


async def test_renew_leases_keeps_claims_alive(
    store: QueueStore, other_node: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    mine = only_delivery(await store.enqueue(new_message(clock, "a@x.test")))
    theirs = only_delivery(await other_node.enqueue(new_message(clock, "b@y.test")))
    done = only_delivery(await store.enqueue(new_message(clock, "c@z.test")))
    await store.record([result(done, "delivered")])

    clock.advance(LEASE_S - 100)
    assert await store.renew_leases() == 1
    rows = {row.id: row for row in delivery_rows(engine)}
    assert rows[mine].lease_until == pytest.approx(clock() + LEASE_S)
    assert rows[theirs].lease_until == pytest.approx(clock() + 100)
    assert rows[done].lease_until is None

    clock.advance(200)  # past the original lease, within the renewed one
    # Only the unrenewed claim expired: another node may take that one, not ours.
    assert ids_of(await other_node.claim_due(10)) == [theirs]
    assert await store.claim_due(10) == []


# -- the operator's queue commands --------------------------------------------------------------


@pytest.fixture
def admin(engine: Engine) -> QueueAdmin:
    return QueueAdmin(engine)


async def test_admin_list_and_show(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    first = new_message(clock, "a@x.test", "b@y.test")
    first_ids = ids_of(await store.enqueue(first))
    clock.advance(1)
    second = new_message(clock, "c@z.test", pool="mailings")
    second_id = only_delivery(await store.enqueue(second))
    await store.record([result(first_ids[0], "delivered"), result(second_id, "deferred")])

    listed = admin.list()
    assert [row["id"] for row in listed] == [first.queue_id, second.queue_id]
    assert listed[0]["recipients"] == 1  # pending ones only
    assert listed[0]["pending"] == 1
    assert listed[1]["pool"] == "mailings"
    assert listed[1]["size_bytes"] == len(BODY)
    assert [row["id"] for row in admin.list(state="deferred")] == [second.queue_id]
    assert [row["id"] for row in admin.list(state="delivered")] == [first.queue_id]
    assert admin.list(state="held") == []
    assert len(admin.list(limit=1)) == 1

    shown = admin.show(first.queue_id)
    assert "body" not in shown
    assert shown["mail_from"] == "a@sender.test"
    assert shown["headers"] == "From: a@sender.test\r\nSubject: hi"
    assert [(d["recipient"], d["state"]) for d in shown["deliveries"]] == [
        ("a@x.test", "delivered"),
        ("b@y.test", "inflight"),
    ]
    with pytest.raises(NoSuchMessage):
        admin.show("NOSUCHID")


async def test_admin_show_after_the_body_is_dropped(
    store: QueueStore, admin: QueueAdmin, clock: FakeClock
) -> None:
    message = new_message(clock)
    await store.record([result(only_delivery(await store.enqueue(message)), "delivered")])
    shown = admin.show(message.queue_id)
    assert "headers" not in shown
    assert shown["completed_at"] is not None


async def test_admin_retry(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    first, second = new_message(clock, "a@x.test"), new_message(clock, "b@y.test")
    first_id = only_delivery(await store.enqueue(first))
    second_id = only_delivery(await store.enqueue(second))
    await store.record([result(first_id, "deferred"), result(second_id, "deferred")])
    clock.advance(5)
    assert await store.claim_due(10) == []

    assert admin.retry(first.queue_id) == 1
    assert ids_of(await store.claim_due(10)) == [first_id]
    assert admin.retry(None) == 1  # the other one; the claimed one is in flight
    assert ids_of(await store.claim_due(10)) == [second_id]
    with pytest.raises(NoSuchMessage):
        admin.retry("NOSUCHID")


async def test_admin_hold_and_release(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    message = new_message(clock, "a@x.test", "b@x.test")
    first, second = ids_of(await store.enqueue(message))
    await store.record([result(first, "delivered")])

    assert admin.hold(message.queue_id) == 1  # the final one stays as it is
    assert admin.hold(message.queue_id) == 0
    rows = {row.id: row for row in delivery_rows(engine)}
    assert rows[first].state == DeliveryState.DELIVERED
    assert (rows[second].state, rows[second].lease_owner) == (DeliveryState.HELD, None)
    clock.advance(LEASE_S * 10)
    assert await store.claim_due(10) == []

    assert admin.release(message.queue_id) == 1
    assert admin.release(message.queue_id) == 0
    assert delivery_rows(engine)[1].state == DeliveryState.QUEUED
    assert ids_of(await store.claim_due(10)) == [second]
    for action in (admin.hold, admin.release):
        with pytest.raises(NoSuchMessage):
            action("NOSUCHID")


async def test_admin_delete(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    kept, deleted = new_message(clock, "a@x.test"), new_message(clock, "b@x.test", "c@y.test")
    await store.enqueue(kept)
    await store.enqueue(deleted)
    assert admin.delete(deleted.queue_id) == 2
    assert message_row(engine, deleted.queue_id) is None
    assert delivery_rows(engine, deleted.queue_id) == []
    assert len(delivery_rows(engine, kept.queue_id)) == 1
    with pytest.raises(NoSuchMessage):
        admin.delete(deleted.queue_id)


async def test_admin_stats(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    empty = admin.stats()
    assert empty["by_state"] == {state.value: 0 for state in DeliveryState}
    assert empty["oldest_age_s"] is None

    old = new_message(clock, "a@x.test", "b@x.test", "c@y.test", created_at=time.time() - 3600)
    ids = ids_of(await store.enqueue(old))
    bulk = new_message(clock, "d@y.test", pool="mailings")
    bulk_id = only_delivery(await store.enqueue(bulk))
    await store.record(
        [result(ids[0], "delivered"), result(ids[1], "deferred"), result(bulk_id, "failed")]
    )
    stats = admin.stats()
    counts = {state: count for state, count in stats["by_state"].items() if count}
    # The failed one produced a DSN, in flight to the sender's domain.
    assert counts == {"delivered": 1, "deferred": 1, "inflight": 2, "failed": 1}
    assert stats["by_pool"] == {"transactional": 3}
    assert stats["by_destination"] == {"x.test": 1, "y.test": 1, "sender.test": 1}
    assert 3595 < stats["oldest_age_s"] < 3700
    # The CLI's fast path reads the same file without SQLAlchemy, with the same answer.
    rows = sqlite_rows(engine.url.render_as_string())
    assert rows is not None
    fast = queue_stats(rows, time.time())
    assert fast["oldest_age_s"] == pytest.approx(stats["oldest_age_s"], abs=5)
    assert {**fast, "oldest_age_s": None} == {**stats, "oldest_age_s": None}


def test_the_read_only_path_declines_what_it_cannot_read_as_it_is(
    tmp_path: Path, engine: Engine
) -> None:
    url = engine.url.render_as_string()
    assert sqlite_rows(url) is not None
    assert sqlite_rows(f"sqlite:///{tmp_path}/missing.db") is None  # nothing is created
    assert not (tmp_path / "missing.db").exists()
    assert sqlite_rows(url + "?timeout=5") is None  # options: SQLAlchemy's business
    assert sqlite_rows("postgresql://db.test/postroom") is None
    with engine.begin() as conn:  # behind the code: the full path migrates it
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert sqlite_rows(url) is None


async def test_admin_sees_writes_of_the_store_and_the_store_sees_the_admins(
    store: QueueStore, admin: QueueAdmin, engine: Engine, clock: FakeClock
) -> None:
    # The admin's short transactions and the store's group commits share one WAL database.
    message = new_message(clock)
    delivery_id = only_delivery(await store.enqueue(message))
    with engine.begin() as conn:
        conn.execute(
            update(deliveries).where(deliveries.c.id == delivery_id).values(lease_until=0.0)
        )
    assert ids_of(await store.claim_due(10)) == [delivery_id]
    assert admin.show(message.queue_id)["deliveries"][0]["lease_until"] == pytest.approx(
        clock() + LEASE_S
    )


async def test_purge_history_deletes_only_messages_finished_before_the_cutoff(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/q.db")
    upgrade(engine)
    now = [1_000_000.0]
    store = QueueStore(engine, node_name="n", clock=lambda: now[0])
    store.start()
    try:
        jobs = []
        for index in range(3):
            jobs += await store.enqueue(
                NewMessage(
                    f"PURGE{index:011d}",
                    "a@s.test",
                    (f"u{index}@d.test",),
                    b"x",
                    "p",
                    MessageOrigin.RELAY,
                    now[0],
                )
            )
        done = [job.deliveries[0].delivery_id for job in jobs[:2]]
        await store.record(
            [DeliveryResult(i, "delivered", "2.0.0", "smtp; 250 ok", "data") for i in done]
        )
        now[0] += 100
        assert await store.purge_history(200) == 0  # finished 100 s ago: kept
        assert await store.purge_history(50) == 2
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == 1
            assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 1
    finally:
        await store.close()


async def test_held_recipients_are_stored_held_and_not_handed_out(
    store: QueueStore, engine: Engine, clock: FakeClock
) -> None:
    message = replace(
        new_message(clock, "ok@x.test", "blocked@x.test", "other@y.test"),
        held=frozenset({"blocked@x.test", "other@y.test"}),
    )
    jobs = await store.enqueue(message)
    assert [(job.domain, [d.recipient for d in job.deliveries]) for job in jobs] == [
        ("x.test", ["ok@x.test"])
    ]
    states = {row.recipient: (row.state, row.lease_owner) for row in delivery_rows(engine)}
    assert states == {
        "ok@x.test": (DeliveryState.INFLIGHT, store.node_name),
        "blocked@x.test": (DeliveryState.HELD, None),
        "other@y.test": (DeliveryState.HELD, None),
    }
    assert await store.claim_due(10) == []  # held stays held until an operator releases it


class BrokenObserver:
    """Writes, then fails: like a rating bug or a constraint error half-way."""

    def messages_queued(self, conn: Any, new_messages: Any) -> None:
        conn.execute(update(messages).values(envelope_id="touched-by-observer"))
        raise RuntimeError("observer bug")

    def deliveries_failed(self, conn: Any, failed: Any) -> None:
        conn.execute(update(messages).values(envelope_id="touched-by-observer"))
        raise RuntimeError("observer bug")


async def test_a_failing_observer_never_costs_the_queue_its_change(
    engine: Engine, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(engine, clock, "node-a")
    store.observer = BrokenObserver()
    store.start()
    try:
        message = replace(new_message(clock, "gone@dest.test"), project_id=1)
        (job,) = await store.enqueue(message)
        await store.record([result(job.deliveries[0].delivery_id, "failed")])
    finally:
        await store.close()
    (row,) = delivery_rows(engine)
    assert row.state == DeliveryState.FAILED  # the outcome committed
    assert message_row(engine, message.queue_id).envelope_id == ""  # its writes undone
    assert caplog.text.count("queue observer failed") == 2


class QueuedMessages:
    """An observer that remembers the messages it was told were queued."""

    def __init__(self) -> None:
        self.queued: list[str] = []

    def messages_queued(self, conn: Any, new_messages: list[NewMessage]) -> None:
        self.queued += [message.queue_id for message in new_messages]

    def deliveries_failed(self, conn: Any, failed: Any) -> None:
        pass


async def test_the_observer_hears_only_of_mail_of_a_project(
    engine: Engine, clock: FakeClock
) -> None:
    store = make_store(engine, clock, "node-a")
    observer = QueuedMessages()
    store.observer = observer
    store.start()
    try:
        relayed = new_message(clock, "a@dest.test")
        of_project = replace(new_message(clock, "b@dest.test"), project_id=1)
        await asyncio.gather(store.enqueue(relayed), store.enqueue(of_project))
        await store.enqueue(new_message(clock, "c@dest.test"))
    finally:
        await store.close()
    assert observer.queued == [of_project.queue_id]
    assert len(delivery_rows(engine)) == 3


async def test_mail_queued_outside_serve_is_claimed_by_the_engine(
    engine: Engine, store: QueueStore, clock: FakeClock
) -> None:
    from postroom.mta.queue.outbox import store_queued

    with engine.begin() as conn:
        queue_id = store_queued(
            conn,
            "bot@sender.test",
            ["a@dest.test", "b@dest.test"],
            BODY,
            "default",
            MessageOrigin.CAMPAIGN,
        )
    shown = QueueAdmin(engine).show(queue_id)
    assert [row["state"] for row in shown["deliveries"]] == ["queued", "queued"]
    clock.advance(1)  # the fake clock was read before the message was queued
    jobs = await store.claim_due(10)
    assert [job.message_id for job in jobs] == [queue_id]
    assert sorted(d.recipient for d in jobs[0].deliveries) == ["a@dest.test", "b@dest.test"]
    assert jobs[0].origin == "campaign"


def test_a_message_without_recipients_is_not_queued(engine: Engine) -> None:
    from postroom.mta.queue.outbox import store_queued

    with engine.begin() as conn, pytest.raises(ValueError):
        store_queued(conn, "bot@sender.test", [], BODY, "default", MessageOrigin.CAMPAIGN)
