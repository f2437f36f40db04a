"""What one writer process does in the several-writers tests (run with multiprocessing spawn).

A child process is a worker of a multi-process `serve` reduced to its database
writes: `queue_worker` runs its own `QueueStore` (own engine, own group-commit
thread, node name `<node>/w<index>`) and, at the same moment as its siblings
(a shared barrier), enqueues messages while claiming due deliveries until none
is left; `contact_worker` records rating changes of one contact, each in its
own `engine.begin()` transaction as a feedback thread does. Each puts what it
did on the results queue; the test checks the union. Input: none untrusted.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from postroom.config.schema import RatingConfig
from postroom.db.engine import make_engine
from postroom.db.models import MessageOrigin
from postroom.mta.queue.records import NewMessage
from postroom.mta.queue.store import QueueStore
from postroom.rating.contacts import Cause, Contacts
from postroom.rating.rules import ContactState, Rules

BARRIER_TIMEOUT_S = 120.0
CLAIM_LIMIT = 7
# Far more rounds than the prepared work needs: the loop is bounded, never endless.
MAX_CLAIM_ROUNDS = 10_000
# The two ratings a toggled contact moves between (either way, one step per change).
LOW_RATING, HIGH_RATING = 5, 6


def new_message(queue_id: str) -> NewMessage:
    return NewMessage(
        queue_id=queue_id,
        mail_from="app@src.test",
        recipients=(f"a.{queue_id}@dest.test", f"b.{queue_id}@other.test"),
        body=b"Subject: x\r\n\r\nx\r\n",
        pool="default",
        origin=MessageOrigin.RELAY,
        created_at=time.time(),
    )


def queue_worker(
    url: str, index: int, enqueue_count: int, barrier: Barrier, results: Queue
) -> None:
    """Enqueue `enqueue_count` messages and claim due work until none is left;
    puts (index, claimed delivery ids, {queue id: its jobs' delivery ids})."""
    claimed, enqueued = asyncio.run(_queue_work(url, index, enqueue_count, barrier))
    results.put((index, claimed, enqueued))


async def _queue_work(
    url: str, index: int, enqueue_count: int, barrier: Barrier
) -> tuple[list[int], dict[str, list[int]]]:
    store = QueueStore(make_engine(url), node_name=f"test-node/w{index}", lease_s=600)
    store.start()
    claimed: list[int] = []
    enqueued: dict[str, list[int]] = {}

    async def enqueue(queue_id: str) -> None:
        jobs = await store.enqueue(new_message(queue_id))
        enqueued[queue_id] = [d.delivery_id for job in jobs for d in job.deliveries]

    async def claim_until_empty() -> None:
        for _ in range(MAX_CLAIM_ROUNDS):
            jobs = await store.claim_due(CLAIM_LIMIT)
            if not jobs:
                return
            claimed.extend(d.delivery_id for job in jobs for d in job.deliveries)
        raise AssertionError("claiming did not finish")

    try:
        await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S)
        await asyncio.gather(
            claim_until_empty(),
            *(enqueue(f"W{index}M{number:06d}") for number in range(enqueue_count)),
        )
    finally:
        await store.close()
        store.engine.dispose()
    return claimed, enqueued


def toggle_rating(rating: int) -> int:
    return HIGH_RATING if rating == LOW_RATING else LOW_RATING


def toggle(state: ContactState) -> ContactState:
    """One step between the two ratings: a lost update shows as a repeated step."""
    return ContactState(toggle_rating(state.rating))


def contact_worker(
    url: str, project_id: int, address: str, changes: int, barrier: Barrier, results: Queue
) -> None:
    """Record `changes` toggles of the contact, one transaction each; puts how many
    `record` reported done."""
    engine = make_engine(url)
    contacts = Contacts(engine, Rules(RatingConfig()))
    done = 0
    try:
        barrier.wait(BARRIER_TIMEOUT_S)
        for _ in range(changes):
            with engine.begin() as conn:
                done += contacts.record(conn, project_id, address, toggle, Cause("set"))
    finally:
        engine.dispose()
    results.put(done)
