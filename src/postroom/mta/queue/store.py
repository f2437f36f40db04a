"""The durable queue: enqueue, claim with a lease, record outcomes.

Contract:
- `enqueue(message)` returns only after the message and one delivery row per
  recipient are committed (fsync, group commit). The deliveries are created
  already claimed by this node (`inflight`, leased), so fresh mail goes straight
  to the delivery engine without a round trip through the database.
- `enqueue_produced(produce)` runs `produce(conn)` (a campaign's recipient rows
  changing state) in the queue's next transaction and stores the messages it
  returns in that same transaction: the producer's state change and the queue
  insert commit together or not at all. Messages due now come back as claimed
  jobs; a message released later waits `queued` until `next_attempt_at`.
- `claim_due(limit)` claims due `queued`/`deferred` deliveries and those whose
  lease expired (a crashed node's). Several nodes (the worker processes of
  one `serve`, or machines) can share one database and never claim one
  delivery twice: on PostgreSQL rows are locked with SKIP LOCKED, on SQLite
  the group commit's transaction holds the write lock from its start, and the
  UPDATE claims only rows that are still due.
- `record(results)` stores outcomes: delivered; deferred with the next attempt
  from the retry schedule, or failed once the queue lifetime is over; failed.
  Failures produce a DSN in the same transaction (through `bounce_builder`), so
  a crash can neither lose the bounce nor send it twice.
- `renew_leases()` keeps this node's claims alive; `release_own_leases()` at
  start returns what a previous run of this node held; `purge_history()`
  deletes finished messages past `[delivery] history`.
Config keys read (through the caller): [delivery] lease, min_backoff,
max_backoff, max_queue_lifetime; [database] commit_batch_max.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from postroom.db.engine import is_postgresql
from postroom.db.models import deliveries, messages
from postroom.db.states import FINAL_STATES, DeliveryState
from postroom.mta.queue.groupcommit import BatchOperation, GroupCommitter
from postroom.mta.queue.outcomes import OutcomeRecording
from postroom.mta.queue.records import (
    BounceBuilder,
    ClaimedDelivery,
    Job,
    NewMessage,
    QueueObserver,
    recipient_domain,
)

# Bodies up to this size stay in memory with a fresh job; larger ones are read
# back from the store when a lane is ready to send them.
log = logging.getLogger("postroom.queue")

KEEP_IN_MEMORY_BYTES = 256 * 1024


def leases_of(node_name: str, worker_prefix: str | None = None) -> ColumnElement[bool]:
    """Deliveries leased by `node_name`, and with `worker_prefix` by any of its workers."""
    owned = deliveries.c.lease_owner == node_name
    if worker_prefix is None:
        return owned
    return owned | deliveries.c.lease_owner.startswith(worker_prefix, autoescape=True)


def release_leases(conn: Connection, owned_by: ColumnElement[bool]) -> int:
    """Deliveries in flight whose lease owner matches `owned_by` go back to the queue."""
    return conn.execute(
        update(deliveries)
        .where(owned_by, deliveries.c.state == DeliveryState.INFLIGHT)
        .values(state=DeliveryState.QUEUED, lease_owner=None, lease_until=None)
    ).rowcount


# What recording an outcome writes, as one executemany UPDATE per batch.
_OUTCOME_COLUMNS = (
    "state",
    "attempts",
    "next_attempt_at",
    "updated_at",
    "lease_owner",
    "lease_until",
    "last_status",
    "last_reply",
    "last_stage",
    "remote_mta",
    "source",
)


# Claiming, built once (see `_claim`): due, and the leases of crashed nodes.
_DUE = or_(
    and_(
        deliveries.c.state.in_([DeliveryState.QUEUED.value, DeliveryState.DEFERRED.value]),
        deliveries.c.next_attempt_at <= bindparam("now"),
    ),
    and_(
        deliveries.c.state == DeliveryState.INFLIGHT.value,
        deliveries.c.lease_until < bindparam("now"),
    ),
)
_DUE_DELIVERIES = (
    select(
        deliveries.c.id,
        deliveries.c.message_id,
        deliveries.c.recipient,
        deliveries.c.domain,
        deliveries.c.attempts,
    )
    .where(_DUE)
    .order_by(deliveries.c.next_attempt_at)
    .limit(bindparam("limit"))
)
_CLAIM = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("delivery_ids", expanding=True)), _DUE)
    .values(
        state=DeliveryState.INFLIGHT.value,
        lease_owner=bindparam("owner"),
        lease_until=bindparam("claimed_until"),
        updated_at=bindparam("now"),
    )
    .returning(deliveries.c.id)
)
_ENVELOPES = select(
    messages.c.id,
    messages.c.mail_from,
    messages.c.pool,
    messages.c.origin,
    messages.c.created_at,
    messages.c.size_bytes,
).where(messages.c.id.in_(bindparam("message_ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    min_backoff_s: float = 300
    max_backoff_s: float = 4000
    max_queue_lifetime_s: float = 5 * 86400


class QueueStore(OutcomeRecording):
    def __init__(
        self,
        engine: Engine,
        *,
        node_name: str,
        lease_s: float = 600,
        retry: RetryPolicy | None = None,
        batch_max: int = 256,
        bounce_builder: BounceBuilder | None = None,
        observer: QueueObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.observer = observer
        self.engine = engine
        self.node_name = node_name
        self.lease_s = lease_s
        self.retry = retry or RetryPolicy()
        self.bounce_builder = bounce_builder
        self.clock = clock
        self._committer = GroupCommitter(engine, batch_max=batch_max)
        # Built once: the same statement objects keep SQLAlchemy's compiled cache warm.
        self._insert_messages = insert(messages)
        # Without `sort_by_parameter_order` SQLAlchemy sends one multi-row INSERT
        # ... RETURNING (with it, SQLite gets one INSERT per row); the ids are matched
        # to their rows by (message, recipient) instead.
        self._insert_deliveries = insert(deliveries).returning(
            deliveries.c.id, deliveries.c.message_id, deliveries.c.recipient
        )
        self._due_deliveries = (
            _DUE_DELIVERIES.with_for_update(skip_locked=True)
            if is_postgresql(engine)
            else _DUE_DELIVERIES
        )
        self._update_outcome = (
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values({column: bindparam(f"b_{column}") for column in _OUTCOME_COLUMNS})
        )

    def start(self) -> None:
        self._committer.start()

    async def close(self) -> None:
        await self._committer.close()

    # -- producers -----------------------------------------------------------

    async def transact(self, batch_operation: BatchOperation, item: Any) -> Any:
        """Another writer's batch operation in the queue's next transaction: a write the
        SMTP session needs durable before it answers (a project's message reservation)
        shares the queue's single writer and fsync instead of paying its own."""
        return await self._committer.submit_item(batch_operation, item)

    async def enqueue(self, message: NewMessage) -> list[Job]:
        """Store `message` durably; return its deliveries as claimed jobs."""
        delivery_ids: list[int] = await self._committer.submit_item(self._insert_many, message)
        # Built after the commit: not under the database's write lock.
        return self._jobs_for(message, delivery_ids)

    async def enqueue_produced(
        self, produce: Callable[[Connection], list[NewMessage]]
    ) -> list[Job]:
        """`produce(conn)` in the queue's next transaction, then the messages it returned
        stored in that transaction; the jobs of those due now (claimed by this node).
        `produce` may run twice (its batch failed, it is retried alone): it must decide
        from what `conn` reads, not from what an earlier call did."""

        def operation(conn: Connection) -> list[Job]:
            new_messages = produce(conn)
            if not new_messages:
                return []
            now = self.clock()
            delivery_ids = self._insert_many(conn, new_messages, now)
            return [
                job
                for message, ids in zip(new_messages, delivery_ids, strict=True)
                if message.release_at <= now
                for job in self._jobs_for(message, ids)
            ]

        return await self._committer.submit(operation)

    def _insert_many(
        self, conn: Connection, new_messages: list[NewMessage], now: float | None = None
    ) -> list[list[int]]:
        """Every message of a group commit in two multi-row INSERTs; each message's
        delivery ids, in the order of its recipients."""
        if now is None:
            now = self.clock()
        conn.execute(
            self._insert_messages,
            [
                {
                    "id": message.queue_id,
                    "created_at": message.created_at,
                    "mail_from": message.mail_from,
                    "pool": message.pool,
                    "origin": message.origin.value,
                    "client_ip": message.client_ip,
                    "size_bytes": len(message.body),
                    "envelope_id": message.envelope_id,
                    "body": message.body,
                }
                for message in new_messages
            ],
        )
        rows = [
            {
                "message_id": message.queue_id,
                "recipient": recipient,
                "domain": recipient_domain(recipient),
                "state": DeliveryState.INFLIGHT.value,
                "attempts": 0,
                "next_attempt_at": now,
                "lease_owner": self.node_name,
                "lease_until": now + self.lease_s,
                "updated_at": now,
            }
            if recipient not in message.held and message.release_at <= now
            else {
                "message_id": message.queue_id,
                "recipient": recipient,
                "domain": recipient_domain(recipient),
                "state": DeliveryState.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": message.release_at,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            if recipient not in message.held
            else {
                "message_id": message.queue_id,
                "recipient": recipient,
                "domain": recipient_domain(recipient),
                "state": DeliveryState.HELD.value,
                "attempts": 0,
                "next_attempt_at": now,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            for message in new_messages
            for recipient in message.recipients
        ]
        ids: dict[tuple[str, str], list[int]] = defaultdict(list)
        for row in conn.execute(self._insert_deliveries, rows):
            ids[(row.message_id, row.recipient)].append(row.id)
        # A recipient given twice has two rows that differ only by id: either id serves.
        delivery_ids = [
            [ids[(message.queue_id, recipient)].pop() for recipient in message.recipients]
            for message in new_messages
        ]
        # Mail of no project moves no contact: most relayed batches skip the observer
        # and its savepoint (two more statements under the write lock).
        projects_mail = [message for message in new_messages if message.project_id is not None]
        if self.observer is not None and projects_mail:
            self._observe(conn, self.observer.messages_queued, projects_mail)
        return delivery_ids

    @staticmethod
    def _jobs_for(message: NewMessage, delivery_ids: list[int]) -> list[Job]:
        """The jobs of a message just stored, given its recipients' delivery ids."""
        body = message.body if len(message.body) <= KEEP_IN_MEMORY_BYTES else None
        by_domain: dict[str, list[ClaimedDelivery]] = defaultdict(list)
        for recipient, delivery_id in zip(message.recipients, delivery_ids, strict=True):
            if recipient not in message.held:  # held ones wait for `queue release`
                by_domain[recipient_domain(recipient)].append(
                    ClaimedDelivery(delivery_id, recipient, 0)
                )
        return [
            Job(
                message_id=message.queue_id,
                mail_from=message.mail_from,
                origin=message.origin.value,
                domain=domain,
                pool=message.pool,
                created_at=message.created_at,
                size_bytes=len(message.body),
                deliveries=claimed,
                body=body,
                campaign_id=message.campaign_id,
            )
            for domain, claimed in by_domain.items()
        ]

    # -- the delivery engine ---------------------------------------------------

    async def claim_due(self, limit: int) -> list[Job]:
        return await self._committer.submit(lambda conn: self._claim(conn, limit))

    def _claim(self, conn: Connection, limit: int) -> list[Job]:
        now = self.clock()
        candidates = conn.execute(self._due_deliveries, {"now": now, "limit": limit}).all()
        if not candidates:
            return []
        # The UPDATE claims only what is still due: a row another node claimed since
        # the SELECT is left to it. (The group commit's BEGIN IMMEDIATE on SQLite and
        # SKIP LOCKED on PostgreSQL already keep that from happening; this keeps the
        # claim exact whatever transaction it runs in.)
        taken = set(
            conn.execute(
                _CLAIM,
                {
                    "delivery_ids": [row.id for row in candidates],
                    "now": now,
                    "owner": self.node_name,
                    "claimed_until": now + self.lease_s,
                },
            ).scalars()
        )
        claimed = [row for row in candidates if row.id in taken]
        if not claimed:
            return []
        message_ids = {row.message_id for row in claimed}
        envelopes = {
            row.id: row for row in conn.execute(_ENVELOPES, {"message_ids": list(message_ids)})
        }
        jobs: dict[tuple[str, str], Job] = {}
        for row in claimed:
            envelope = envelopes[row.message_id]
            key = (row.message_id, row.domain)
            if key not in jobs:
                jobs[key] = Job(
                    message_id=row.message_id,
                    mail_from=envelope.mail_from,
                    origin=envelope.origin,
                    domain=row.domain,
                    pool=envelope.pool,
                    created_at=envelope.created_at,
                    size_bytes=envelope.size_bytes,
                    deliveries=[],
                )
            jobs[key].deliveries.append(ClaimedDelivery(row.id, row.recipient, row.attempts))
        return list(jobs.values())

    async def load_body(self, message_id: str) -> bytes:
        def read() -> bytes:
            with self.engine.connect() as conn:
                body = conn.execute(
                    select(messages.c.body).where(messages.c.id == message_id)
                ).scalar_one_or_none()
            if body is None:
                raise LookupError(f"message {message_id} has no stored body")
            return bytes(body)

        return await asyncio.to_thread(read)

    async def purge_history(self, keep_s: float) -> int:
        """Delete messages finished more than `keep_s` ago, with their deliveries."""

        def purge(conn: Connection) -> int:
            cutoff = self.clock() - keep_s
            finished = select(messages.c.id).where(messages.c.completed_at < cutoff)
            conn.execute(delete(deliveries).where(deliveries.c.message_id.in_(finished)))
            return conn.execute(delete(messages).where(messages.c.completed_at < cutoff)).rowcount

        return await self._committer.submit(purge)

    async def renew_leases(self) -> int:
        def renew(conn: Connection) -> int:
            now = self.clock()
            return conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.lease_owner == self.node_name,
                    deliveries.c.state == DeliveryState.INFLIGHT,
                )
                .values(lease_until=now + self.lease_s)
            ).rowcount

        return await self._committer.submit(renew)

    async def release_own_leases(self, worker_prefix: str | None = None) -> int:
        """At start: whatever this node held when it stopped goes back to the queue
        (with `worker_prefix`, also what its workers held when it last ran as several)."""
        return await self._committer.submit(
            lambda conn: release_leases(conn, leases_of(self.node_name, worker_prefix))
        )

    async def pending_count(self) -> int:
        def count() -> int:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(func.count()).where(
                        deliveries.c.state.not_in([state.value for state in FINAL_STATES])
                    )
                ).scalar_one()

        return await asyncio.to_thread(count)
