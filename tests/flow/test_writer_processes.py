"""Several writer processes on one database, as the workers of a multi-process `serve`.

Two real OS processes (multiprocessing, spawn), each with its own engine and
`QueueStore` (its own group-commit thread), share one SQLite file (WAL,
synchronous=FULL) or one PostgreSQL database, start at the same moment and:
- claim the due deliveries prepared beforehand while enqueueing their own
  mail: every prepared delivery is claimed exactly once, every enqueue is
  committed with its deliveries leased to the process that enqueued it;
- record rating changes of one contact, each in a transaction of its own: no
  change is lost (the contact's events form one unbroken chain of steps).
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from tests.flow import writer_processes
from tests.peers.postgres import PostgresServer

from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import MessageOrigin, contact_events, contacts, deliveries, messages
from postroom.db.states import DeliveryState
from postroom.mailbox.directory import Directory
from postroom.mta.queue.outbox import store_queued

pytestmark = pytest.mark.flow

WRITERS = 2
PREPARED_MESSAGES = 150  # two recipients each: 300 due deliveries to share out
ENQUEUED_PER_WRITER = 100
CHANGES_PER_WRITER = 150
JOIN_TIMEOUT_S = 180.0


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
