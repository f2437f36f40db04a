"""The same code on PostgreSQL: a real server started by the suite, postroom serving
from it, and two nodes claiming from one queue without taking the same delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from tests.flow.conftest import World, start_postroom
from tests.flow.test_relay_flow import message, send, wait_token
from tests.flow.test_retry_dsn_flow import wait_delivery_state
from tests.peers.postgres import PostgresServer

from postroom.config.schema import RatingConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import MessageOrigin
from postroom.mailbox.directory import Directory
from postroom.mta.queue.records import NewMessage
from postroom.mta.queue.store import QueueStore
from postroom.rating.bulk import ImportedContact, import_contacts
from postroom.rating.contacts import Cause, Contacts
from postroom.rating.rules import Rules

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def test_postroom_serves_from_postgresql(
    postgres: PostgresServer, world: World, tmp_path, token: str
) -> None:
    server = start_postroom(tmp_path, world, database_url=postgres.url)
    try:
        queue_id = send(server, "app@sender.test", ["user@dest.test"], message(token))
        [got] = wait_token(world.dest, token)
        assert got.rcpt_tos == ("user@dest.test",)
        wait_delivery_state(server, queue_id, "delivered")
        send(server, "app@sender.test", ["user@nullmx.test"], message(f"{token}n"))
        [dsn] = wait_token(world.dsn, f"{token}n")
        assert b"5.1.10" in dsn.data
    finally:
        server.stop()


def new_message(index: int) -> NewMessage:
    return NewMessage(
        queue_id=f"PGNODE{index:010d}",
        mail_from="app@src.test",
        recipients=(f"user{index}@dest.test",),
        body=b"Subject: x\r\n\r\nx\r\n",
        pool="default",
        origin=MessageOrigin.RELAY,
        created_at=time.time(),
    )


async def test_two_nodes_claim_disjoint_work_with_skip_locked(postgres: PostgresServer) -> None:
    engine = make_engine(postgres.url)
    upgrade(engine)
    node_a = QueueStore(engine, node_name="node-a", lease_s=30)
    node_b = QueueStore(make_engine(postgres.url), node_name="node-b", lease_s=30)
    node_a.start()
    node_b.start()
    try:
        for index in range(300):
            await node_a.enqueue(new_message(index))
        # node-a "restarts": what it held returns to the queue for anyone to claim.
        assert await node_a.release_own_leases() >= 300
        claimed: dict[str, set[int]] = {"a": set(), "b": set()}

        async def claim_all(name: str, store: QueueStore) -> None:
            for _ in range(100):
                jobs = await store.claim_due(7)
                if not jobs:
                    return
                for job in jobs:
                    claimed[name].update(d.delivery_id for d in job.deliveries)

        await asyncio.gather(claim_all("a", node_a), claim_all("b", node_b))
        assert not claimed["a"] & claimed["b"]
        assert len(claimed["a"] | claimed["b"]) >= 300
        assert claimed["a"] and claimed["b"]
    finally:
        await node_a.close()
        await node_b.close()


async def test_a_dead_nodes_expired_lease_is_claimed_by_another(postgres: PostgresServer) -> None:
    clock = [time.time()]
    dead = QueueStore(
        make_engine(postgres.url), node_name="dead-node", lease_s=5, clock=lambda: clock[0]
    )
    alive = QueueStore(
        make_engine(postgres.url), node_name="alive-node", lease_s=5, clock=lambda: clock[0] + 6
    )
    dead.start()
    alive.start()
    try:
        [job] = await dead.enqueue(new_message(10_000))
        [taken] = [j for j in await alive.claim_due(1000) if j.message_id == job.message_id]
        assert [d.delivery_id for d in taken.deliveries] == [d.delivery_id for d in job.deliveries]
    finally:
        await dead.close()
        await alive.close()


def test_contacts_on_postgresql(postgres: PostgresServer) -> None:
    """The multi-row upserts of contacts (ON CONFLICT DO NOTHING ... RETURNING, run as
    executemany) and the rating rules behave on PostgreSQL as on SQLite."""
    engine = make_engine(postgres.url)
    upgrade(engine)
    directory = Directory(engine)
    directory.add_project("pg-shop")
    contacts = Contacts(engine, Rules(RatingConfig()))
    rows = [ImportedContact(f"u{i}@x.test", f"U {i}", {"n": str(i)}, i + 2) for i in range(2500)]
    assert import_contacts(contacts, "pg-shop", rows, list_name="all", detail="d") == (2500, 0)
    assert import_contacts(contacts, "pg-shop", rows[:10], list_name="all", detail="d") == (0, 10)
    project_id = directory.project("pg-shop").id
    with engine.begin() as conn:
        contacts.ensure_many(
            conn, [(project_id, "U1@x.test", "Q"), (project_id, "new@x.test", "Q")], "sent"
        )
        contacts.record(
            conn,
            project_id,
            "u1@x.test",
            lambda state: contacts.rules.bounced(state, "userunknown"),
            Cause("bounced", reason="userunknown"),
        )
    gate = contacts.gate("pg-shop", "all")
    assert (gate.audience, gate.blocked) == (2500, 1)
    assert contacts.contact("pg-shop", "new@x.test").rating == 7
    assert [e.kind for e in contacts.events(contacts.contact("pg-shop", "u1@x.test"))] == [
        "created",
        "bounced",
    ]
