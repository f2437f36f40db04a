"""Several writer processes on one database, as the workers of a multi-process `serve`.

Two real OS processes (multiprocessing, spawn), each with its own engine and
`QueueStore` (its own group-commit thread), share one SQLite file (WAL,
synchronous=FULL) or one PostgreSQL database, start at the same moment and:
- claim the due deliveries prepared beforehand while enqueueing their own
  mail: every prepared delivery is claimed exactly once, every enqueue is
  committed with its deliveries leased to the process that enqueued it;
- record rating changes of one contact, each in a transaction of its own: no
  change is lost (the contact's events form one unbroken chain of steps).
And two threads (own connections, as two workers' feedback threads) process
the same bounce at once: it counts once (the "already counted" check and the
change it guards are serialised per delivery).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from tests.flow import writer_processes
from tests.flow.test_bounce_rating import dsn
from tests.peers.postgres import PostgresServer

from postroom.config.schema import RatingConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import MessageOrigin, contact_events, contacts, deliveries, messages
from postroom.db.states import DeliveryState
from postroom.mailbox.directory import Directory
from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.inbox import BounceInbox
from postroom.mta.bounce.verp import Verp
from postroom.mta.queue.outbox import store_queued
from postroom.mta.queue.records import DeliveryResult
from postroom.mta.queue.store import QueueStore
from postroom.rating.contacts import Contacts
from postroom.rating.rules import Rules

pytestmark = pytest.mark.flow

WRITERS = 2
PREPARED_MESSAGES = 150  # two recipients each: 300 due deliveries to share out
ENQUEUED_PER_WRITER = 100
CHANGES_PER_WRITER = 150
JOIN_TIMEOUT_S = 180.0
BOUNCED_RECIPIENTS = 30
BOUNCE_COPIES = 2
SPLIT_MESSAGES = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh, migrated database: a SQLite file, or a new database on the suite's
    PostgreSQL (the shared one may hold other tests' queue)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/writers.sqlite"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = f"writers_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = make_url(server.url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url


def run_writers(
    target: Callable[..., None], args_of: Callable[[int], tuple[Any, ...]]
) -> list[Any]:
    """Start WRITERS processes of `target(*args_of(index), barrier, results)` at once;
    what each put on `results`."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    results = context.Queue()
    processes = [
        context.Process(target=target, args=(*args_of(index), barrier, results), daemon=True)
        for index in range(WRITERS)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=JOIN_TIMEOUT_S) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * WRITERS
    return outcomes


def test_every_delivery_is_claimed_once_and_every_enqueue_commits(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        for number in range(PREPARED_MESSAGES):
            store_queued(
                conn,
                "app@src.test",
                [f"a{number}@dest.test", f"b{number}@other.test"],
                b"Subject: prepared\r\n\r\nx\r\n",
                "default",
                MessageOrigin.RELAY,
            )
        prepared = set(conn.execute(select(deliveries.c.id)).scalars())

    outcomes = run_writers(
        writer_processes.queue_worker,
        lambda index: (database_url, index, ENQUEUED_PER_WRITER),
    )

    claims = [claimed for _, claimed, _ in outcomes]
    for claimed in claims:
        assert len(claimed) == len(set(claimed)), "one process claimed a delivery twice"
    assert not set(claims[0]) & set(claims[1]), "two processes claimed the same delivery"
    assert set(claims[0]) | set(claims[1]) == prepared
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(deliveries))}
        assert conn.execute(select(func.count()).select_from(messages)).scalar_one() == (
            PREPARED_MESSAGES + WRITERS * ENQUEUED_PER_WRITER
        )
    for index, _, enqueued in outcomes:
        assert len(enqueued) == ENQUEUED_PER_WRITER
        for delivery_ids in enqueued.values():
            assert len(delivery_ids) == 2
            for delivery_id in delivery_ids:
                assert rows[delivery_id].state == DeliveryState.INFLIGHT
                assert rows[delivery_id].lease_owner == f"test-node/w{index}"
    engine.dispose()


def test_concurrent_rating_changes_of_one_contact_are_not_lost(database_url: str) -> None:
    engine = make_engine(database_url)
    project = Directory(engine).add_project("writers")
    address = "busy@dest.test"
    with engine.begin() as conn:
        conn.execute(
            insert(contacts).values(
                project_id=project.id,
                address=address,
                rating=writer_processes.LOW_RATING,
                blocked=0,
                blocked_cause="",
                source="manual",
                created_at=0,
                updated_at=0,
            )
        )

    done = run_writers(
        writer_processes.contact_worker,
        lambda _index: (database_url, project.id, address, CHANGES_PER_WRITER),
    )

    assert done == [CHANGES_PER_WRITER] * WRITERS
    with engine.connect() as conn:
        steps = conn.execute(
            select(contact_events.c.old_rating, contact_events.c.new_rating).order_by(
                contact_events.c.id
            )
        ).all()
        final = conn.execute(select(contacts.c.rating)).scalar_one()
    assert len(steps) == WRITERS * CHANGES_PER_WRITER
    expected_from = writer_processes.LOW_RATING
    for old, new in steps:
        assert (old, new) == (expected_from, writer_processes.toggle_rating(expected_from))
        expected_from = new
    assert final == expected_from
    engine.dispose()


def test_a_bounce_processed_twice_at_once_counts_once(database_url: str) -> None:
    engine = make_engine(database_url)
    directory = Directory(engine)
    directory.add_project("shop")
    directory.add_domain("shop.test", "shop")
    directory.mark_verified("shop.test", [])
    rated = Contacts(engine, Rules(RatingConfig()))
    recipients = [f"user{number}@far.test" for number in range(BOUNCED_RECIPIENTS)]
    for recipient in recipients:
        rated.add("shop", recipient)  # rating 10
    with engine.begin() as conn:
        body = b"Subject: x\r\n\r\nx\r\n"
        store_queued(conn, "news@shop.test", recipients, body, "bulk", MessageOrigin.SUBMISSION)
        delivery_of = dict(conn.execute(select(deliveries.c.recipient, deliveries.c.id)).all())
    inbox = BounceInbox(engine, rated, Verp(b"k" * 32, "bounces.test"), Classifier.load())
    barrier = threading.Barrier(BOUNCE_COPIES)

    def process(recipient: str) -> None:
        barrier.wait(writer_processes.BARRIER_TIMEOUT_S)
        inbox.process(dsn("bounces@shop.test", recipient), [delivery_of[recipient]], feedback=False)

    with ThreadPoolExecutor(BOUNCE_COPIES) as threads:
        for recipient in recipients:
            list(threads.map(process, [recipient] * BOUNCE_COPIES))

    for recipient in recipients:
        assert rated.contact("shop", recipient).rating == 9, recipient
    with engine.connect() as conn:
        counted = conn.execute(
            select(func.count()).where(contact_events.c.kind == "bounced")
        ).scalar_one()
    assert counted == BOUNCED_RECIPIENTS
    engine.dispose()


async def test_outcomes_recorded_at_once_by_two_nodes_complete_the_message(
    database_url: str,
) -> None:
    """A message whose deliveries were claimed by two workers (after a retry) is
    complete, its body released, when both record their outcome at the same moment."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        queue_ids = [
            store_queued(
                conn,
                "app@src.test",
                [f"a{n}@dest.test", f"b{n}@other.test"],
                b"Subject: x\r\n\r\nx\r\n",
                "default",
                MessageOrigin.RELAY,
            )
            for n in range(SPLIT_MESSAGES)
        ]
    nodes = [QueueStore(make_engine(database_url), node_name=f"node/w{i}") for i in range(2)]
    for node in nodes:
        node.start()
    try:
        for queue_id in queue_ids:
            claimed = [d for job in await nodes[0].claim_due(2) for d in job.deliveries]
            assert {d.delivery_id for d in claimed} == set(delivery_ids_of(engine, queue_id))
            await asyncio.gather(
                *(
                    node.record([DeliveryResult(d.delivery_id, "delivered", "2.0.0", "", "data")])
                    for node, d in zip(nodes, claimed, strict=True)
                )
            )
    finally:
        for node in nodes:
            await node.close()
            node.engine.dispose()
    with engine.connect() as conn:
        incomplete = conn.execute(
            select(messages.c.id).where(messages.c.completed_at.is_(None))
        ).scalars()
        assert list(incomplete) == []
    engine.dispose()


def delivery_ids_of(engine: Engine, queue_id: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(deliveries.c.id).where(deliveries.c.message_id == queue_id)
            ).scalars()
        )
