"""A campaign paused or cancelled while the delivery engine holds its jobs in memory.

Real parts on SQLite: the launch, the producer (its jobs carry the campaign id),
the queue store, the lifecycle verbs and the real `DeliveryEngine` with
`StoppedCampaigns` as its withholder, sending over loopback to `GatedPeer`, an
SMTP server here that holds its reply to each message's end of data until the
test opens its gate: so one transaction is under way (MAIL FROM sent, body
sent) while the campaign is paused or cancelled, and the engine holds the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, update
from tests.unit.campaign.producer_world import ProducerWorld, one_pass

from postroom.campaign.lifecycle import cancel, pause, resume
from postroom.campaign.status import campaign_status
from postroom.campaign.stopped import StoppedCampaigns
from postroom.config.loader import Duration
from postroom.config.schema import DeliveryConfig
from postroom.db.models import campaign_sends, campaigns, deliveries, messages
from postroom.mta.delivery.engine import DeliveryEngine
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.queue.records import Job
from postroom.mta.queue.store import QueueStore, leases_of, release_leases

NODE = "node-a"
CONTACTS = 5
WAIT_S = 10.0


@dataclass
class GatedPeer:
    """Loopback SMTP (port 0, no PIPELINING). The reply to each end of data waits for
    `gate`; `replies` are those replies in order, then 250."""

    replies: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[str] = field(default_factory=list)  # the recipient of every body received
    accepted: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer.test ESMTP\r\n")
        recipient = ""
        while line := await reader.readline():
            command = line.decode().strip()
            verb = command[:4].upper()
            reply = "250 2.0.0 ok"
            if verb == "EHLO":
                reply = "250 peer.test"
            elif verb == "RCPT":
                recipient = command.partition(":")[2].strip("<> ")
            elif verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                self.bodies.append(recipient)
                await self.gate.wait()
                reply = self.replies.pop(0) if self.replies else "250 2.0.0 queued"
                if reply.startswith("250"):
                    self.accepted.append(recipient)
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                break
            writer.write(reply.encode() + b"\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
def world(tmp_path: Path) -> ProducerWorld:
    return ProducerWorld(f"sqlite:///{tmp_path}/db.sqlite", tmp_path, contacts_count=CONTACTS)


@pytest.fixture
async def store(world: ProducerWorld) -> AsyncIterator[QueueStore]:
    store = world.store(NODE)
    store.start()
    yield store
    await store.close()


@pytest.fixture
async def peer() -> AsyncIterator[GatedPeer]:
    peer = GatedPeer()
    await peer.start()
    yield peer
    peer.gate.set()
    await peer.stop()


@dataclass
class Sending:
    engine: DeliveryEngine
    stopped: StoppedCampaigns
    task: asyncio.Task[None]


@pytest.fixture
async def sending(
    world: ProducerWorld, store: QueueStore, peer: GatedPeer, make_resolver: type
) -> AsyncIterator[Sending]:
    """The real delivery engine, one connection to the peer, campaigns withheld."""
    stopped = StoppedCampaigns(world.engine, store, cancelled_horizon_s=86400, clock=world.clock)
    config = DeliveryConfig(
        port=peer.port,
        starttls="disabled",
        max_connections=1,
        idle_connection_timeout=Duration(30),
    )
    resolver = make_resolver(
        mx={"dest.test": [(10, "mx.dest.test")]}, hosts={"mx.dest.test": ["127.0.0.1"]}
    )
    engine = DeliveryEngine(
        store,
        resolver,
        PoolTable(world.config),
        config,
        claim_interval_s=0.1,
        withholder=stopped,
    )
    task = asyncio.create_task(engine.run())
    yield Sending(engine, stopped, task)
    engine.drain()
    await asyncio.wait_for(task, WAIT_S)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def produced(world: ProducerWorld, store: QueueStore) -> list[Job]:
    """Every recipient's message queued (in flight, leased to NODE): the producer's jobs."""
    producer, sink = world.producer(NODE, store)
    world.launch()
    await one_pass(producer)
    assert len(sink.jobs) == CONTACTS
    return sink.jobs


def delivery_rows(world: ProducerWorld) -> dict[str, tuple[str, str | None, int]]:
    """recipient → (state, held_by, attempts) of the campaign's deliveries."""
    with world.engine.connect() as conn:
        rows = conn.execute(
            select(
                deliveries.c.recipient,
                deliveries.c.state,
                deliveries.c.held_by,
                deliveries.c.attempts,
                deliveries.c.lease_owner,
            )
        ).all()
    assert all(row.lease_owner is None for row in rows if row.state != "inflight")
    return {row.recipient: (row.state, row.held_by, row.attempts) for row in rows}


def status_of(world: ProducerWorld) -> dict[str, object]:
    with world.engine.connect() as conn:
        return campaign_status(conn, world.campaign_id).as_json()


async def first_in_transaction(sending: Sending, peer: GatedPeer, jobs: list[Job]) -> str:
    """The jobs handed to the engine; the first one's body is at the peer, unanswered."""
    sending.engine.submit(jobs)
    await until(lambda: len(peer.bodies) == 1, "the first message's body at the peer")
    return peer.bodies[0]


async def test_a_pause_holds_what_the_engine_holds_and_the_transaction_under_way_ends(
    world: ProducerWorld, store: QueueStore, peer: GatedPeer, sending: Sending
) -> None:
    jobs = await produced(world, store)
    sent = await first_in_transaction(sending, peer, jobs)
    # Every delivery is in flight: the pause itself holds none of them.
    assert pause(world.engine, world.campaign_id, clock=world.clock).held == 0
    sending.stopped.refresh()
    peer.gate.set()
    expected = {world.address(i): ("held", "campaign", 0) for i in range(CONTACTS)}
    expected[sent] = ("delivered", None, 1)
    await until(lambda: delivery_rows(world) == expected, "the rest held")
    assert peer.bodies == peer.accepted == [sent]
    assert sending.engine.backlog == 0
    status = status_of(world)
    assert (status["state"], status["held"], status["delivered"]) == ("paused", CONTACTS - 1, 1)
    # The resume releases them like any the pause held; the claim loop sends them.
    world.clock.now += 60
    assert resume(world.engine, world.campaign_id, clock=world.clock).released == CONTACTS - 1
    sending.stopped.refresh()
    await until(lambda: len(peer.accepted) == CONTACTS, "the rest sent after the resume")
    assert sorted(peer.accepted) == [world.address(i) for i in range(CONTACTS)]


async def test_a_cancel_removes_what_the_engine_holds_as_it_removes_what_waits(
    world: ProducerWorld, store: QueueStore, peer: GatedPeer, sending: Sending
) -> None:
    jobs = await produced(world, store)
    sent = await first_in_transaction(sending, peer, jobs)
    assert cancel(world.engine, world.campaign_id, clock=world.clock).removed == 0
    sending.stopped.refresh()
    peer.gate.set()
    await until(lambda: set(delivery_rows(world)) == {sent}, "the rest removed")
    assert delivery_rows(world)[sent] == ("delivered", None, 1)
    assert peer.accepted == [sent]
    rows = {row.address: (row.state, row.message_id) for row in world.rows()}
    assert {address: state for address, (state, _) in rows.items()} == {
        world.address(i): "queued" if world.address(i) == sent else "cancelled"
        for i in range(CONTACTS)
    }
    with world.engine.connect() as conn:
        kept = set(conn.execute(select(messages.c.id)).scalars())
        history = set(conn.execute(select(campaign_sends.c.message_id)).scalars())
    assert kept == history == {rows[sent][1]}  # the others' messages and history rows gone
    status = status_of(world)
    assert (status["state"], status["cancelled"], status["delivered"]) == ("cancelled", 4, 1)


@pytest.mark.parametrize("verb", ["pause", "cancel"])
async def test_a_deferred_attempt_of_a_stopped_campaign_is_recorded_then_stopped(
    world: ProducerWorld, store: QueueStore, peer: GatedPeer, sending: Sending, verb: str
) -> None:
    peer.replies.append("451 4.3.0 try again later")
    jobs = await produced(world, store)
    deferred = await first_in_transaction(sending, peer, jobs)
    (pause if verb == "pause" else cancel)(world.engine, world.campaign_id, clock=world.clock)
    sending.stopped.refresh()
    peer.gate.set()
    if verb == "pause":
        # Held with its attempt counted (the outcome was recorded first), not retried.
        expected = {world.address(i): ("held", "campaign", 0) for i in range(CONTACTS)}
        expected[deferred] = ("held", "campaign", 1)
        await until(lambda: delivery_rows(world) == expected, "every delivery held")
        with world.engine.connect() as conn:
            status = conn.execute(
                select(deliveries.c.last_status).where(deliveries.c.recipient == deferred)
            ).scalar_one()
        assert status == "4.3.0"
    else:
        await until(lambda: delivery_rows(world) == {}, "every delivery removed")
        assert {row.state for row in world.rows()} == {"cancelled"}
    assert peer.accepted == []


async def test_a_campaign_resumed_before_the_hold_is_written_goes_back_to_the_queue(
    world: ProducerWorld, store: QueueStore
) -> None:
    jobs = await produced(world, store)
    stopped = StoppedCampaigns(world.engine, store, cancelled_horizon_s=60, clock=world.clock)
    pause(world.engine, world.campaign_id, clock=world.clock)
    stopped.refresh()
    assert all(stopped.must_wait(job) for job in jobs)
    resume(world.engine, world.campaign_id, clock=world.clock)  # not seen in memory yet
    await stopped.withhold(jobs)
    # Found sending again in the transaction: back in the queue, due, nobody's lease.
    expected = {world.address(i): ("queued", None, 0) for i in range(CONTACTS)}
    assert delivery_rows(world) == expected
    claimed = await store.claim_due(100)
    assert sorted(d.recipient for job in claimed for d in job.deliveries) == sorted(expected)


async def test_jobs_claimed_from_the_queue_are_marked_with_their_campaign(
    world: ProducerWorld, store: QueueStore
) -> None:
    await produced(world, store)
    with world.engine.begin() as conn:  # as after a restart: back in the queue
        release_leases(conn, leases_of(NODE))
    claimed = await store.claim_due(100)
    assert len(claimed) == CONTACTS and {job.campaign_id for job in claimed} == {None}
    stopped = StoppedCampaigns(world.engine, store, cancelled_horizon_s=60, clock=world.clock)
    other = Job("Q1", "a@b.test", "dest.test", "p", 0.0, 1, [], origin="relay")
    await stopped.claimed([*claimed, other])
    assert {job.campaign_id for job in claimed} == {world.campaign_id}
    assert other.campaign_id is None


def test_the_stopped_set_is_paused_and_recently_cancelled_campaigns(world: ProducerWorld) -> None:
    world.launch()
    stopped = StoppedCampaigns(
        world.engine, world.store(NODE), cancelled_horizon_s=60, clock=world.clock
    )
    job = Job("Q1", "a@b.test", "dest.test", "p", 0.0, 1, [], campaign_id=world.campaign_id)

    def must_wait_in(state: str, finished_at: float | None = None) -> bool:
        with world.engine.begin() as conn:
            conn.execute(update(campaigns).values(state=state, finished_at=finished_at))
        stopped.refresh()
        return stopped.must_wait(job)

    assert not must_wait_in("sending")
    assert must_wait_in("paused")
    assert must_wait_in("cancelled", world.clock.now - 30)
    assert not must_wait_in("cancelled", world.clock.now - 90)  # past the horizon
    assert not stopped.must_wait(Job("Q2", "a@b.test", "dest.test", "p", 0.0, 1, []))
