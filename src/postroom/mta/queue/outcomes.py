"""Recording delivery outcomes: the queue store's half that runs after each attempt.

`OutcomeRecording.record(results)` stores outcomes through the store's group
commit, in one transaction per batch: the delivery rows' new state (delivered,
deferred with the next attempt time from the backoff, failed — or expired after
`max_queue_lifetime_s`), the DSNs that failures produce (`bounce_builder`,
inserted as new messages in the same transaction, so a crash loses neither),
the observer's view of final failures (the rating engine; in a savepoint, so
its failure never costs the outcome), and the release of the bytes of messages
whose every delivery is final (also when two nodes record the last deliveries
of one message at once). An outcome for a delivery an operator held or
deleted meanwhile is ignored: the operator's word stands. The statements are
built once and a delivered outcome does not read its row first: this runs under
the database's write lock, which every worker process of a node waits for.

A mixin of `QueueStore` (it uses the store's committer, statements, policy and
clock), split out to keep each module to one concern.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.engine import Connection

from postroom.db.models import deliveries, messages
from postroom.db.states import FINAL_STATES, DeliveryState
from postroom.mta.queue.records import DeliveryResult, FailedDelivery, Job, OriginalMessage
from postroom.mta.queue.retry import is_expired, next_attempt_at

log = logging.getLogger("postroom.queue")

# The statements of every batch, built once: executing a ready statement skips
# SQLAlchemy's expression building, coercion and cache-key walk, which cost more
# CPU than SQLite's own work, under the database's write lock.
_OUTCOME_ROWS = (
    select(
        deliveries.c.id,
        deliveries.c.message_id,
        deliveries.c.recipient,
        deliveries.c.attempts,
        deliveries.c.state,
        messages.c.created_at,
    )
    .join(messages, messages.c.id == deliveries.c.message_id)
    .where(deliveries.c.id.in_(bindparam("delivery_ids", expanding=True)))
)
_ORIGINALS = select(
    messages.c.id,
    messages.c.mail_from,
    messages.c.origin,
    messages.c.created_at,
    messages.c.envelope_id,
    messages.c.body,
).where(messages.c.id.in_(bindparam("message_ids", expanding=True)))
# A delivered outcome needs nothing of its row: one conditional UPDATE (the row is
# still in flight, else an operator held or deleted it and their word stands).
_RECORD_DELIVERED = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.state == DeliveryState.INFLIGHT.value,
    )
    .values(
        state=DeliveryState.DELIVERED.value,
        attempts=deliveries.c.attempts + 1,
        next_attempt_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
        lease_owner=None,
        lease_until=None,
        last_status=bindparam("b_last_status"),
        last_reply=bindparam("b_last_reply"),
        last_stage=bindparam("b_last_stage"),
        remote_mta=bindparam("b_remote_mta"),
        source=bindparam("b_source"),
    )
)
_MESSAGES_OF_DELIVERIES = select(deliveries.c.message_id).where(
    deliveries.c.id.in_(bindparam("delivery_ids", expanding=True))
)
_LOCK_MESSAGES = (
    select(messages.c.id)
    .where(messages.c.id.in_(_MESSAGES_OF_DELIVERIES))
    .order_by(messages.c.id)
    .with_for_update()
)
# One statement: the candidates none of whose deliveries is still pending.
_COMPLETE_MESSAGES = (
    update(messages)
    .where(
        messages.c.id.in_(_MESSAGES_OF_DELIVERIES),
        ~exists().where(
            deliveries.c.message_id == messages.c.id,
            # Not `not_in`: a constant list would still be expanded at every execution.
            *(deliveries.c.state != state.value for state in FINAL_STATES),
        ),
    )
    .values(body=None, completed_at=bindparam("now"))
)


class OutcomeRecording:
    async def record(self, results: list[DeliveryResult]) -> list[Job]:
        """Store outcomes; return the jobs of any DSNs they produced."""
        if not results:
            return []
        return await self._committer.submit(lambda conn: self._record(conn, results))

    def _record(self, conn: Connection, results: list[DeliveryResult]) -> list[Job]:
        now = self.clock()
        delivered = [result for result in results if result.verdict == DeliveryState.DELIVERED]
        if delivered:
            conn.execute(
                _RECORD_DELIVERED,
                [
                    {
                        "b_id": result.delivery_id,
                        "b_now": now,
                        "b_last_status": result.status,
                        "b_last_reply": result.diagnostic,
                        "b_last_stage": result.stage,
                        "b_remote_mta": result.remote_mta,
                        "b_source": result.source,
                    }
                    for result in delivered
                ],
            )
        others = [result for result in results if result.verdict != DeliveryState.DELIVERED]
        jobs = self._record_unsuccessful(conn, others, now) if others else []
        self._complete_messages(conn, [result.delivery_id for result in results], now)
        return jobs

    def _record_unsuccessful(
        self, conn: Connection, results: list[DeliveryResult], now: float
    ) -> list[Job]:
        """Deferred and failed outcomes: the next attempt, the expiry, the DSNs and the
        observer depend on what the rows hold."""
        rows = {
            row.id: row
            for row in conn.execute(
                _OUTCOME_ROWS, {"delivery_ids": [result.delivery_id for result in results]}
            )
        }
        updates: list[dict[str, object]] = []
        failed: dict[str, list[FailedDelivery]] = defaultdict(list)
        for result in results:
            row = rows.get(result.delivery_id)
            # Deleted or held by an operator meanwhile: the operator's word stands.
            if row is None or row.state != DeliveryState.INFLIGHT:
                continue
            attempts = row.attempts + 1
            state = DeliveryState(result.verdict)
            expired = False
            next_attempt = now
            if state is DeliveryState.DEFERRED:
                if is_expired(
                    row.created_at, now, max_queue_lifetime_s=self.retry.max_queue_lifetime_s
                ):
                    state, expired = DeliveryState.FAILED, True
                else:
                    next_attempt = next_attempt_at(
                        now,
                        attempts,
                        min_backoff_s=self.retry.min_backoff_s,
                        max_backoff_s=self.retry.max_backoff_s,
                    )
            updates.append(
                {
                    "b_id": row.id,
                    "b_state": state.value,
                    "b_attempts": attempts,
                    "b_next_attempt_at": next_attempt,
                    "b_updated_at": now,
                    "b_lease_owner": None,
                    "b_lease_until": None,
                    "b_last_status": result.status,
                    "b_last_reply": result.diagnostic,
                    "b_last_stage": result.stage,
                    "b_remote_mta": result.remote_mta,
                    "b_source": result.source,
                }
            )
            if state is DeliveryState.FAILED:
                failed[row.message_id].append(
                    FailedDelivery(
                        recipient=row.recipient,
                        status=result.status,
                        diagnostic=result.diagnostic,
                        remote_mta=result.remote_mta,
                        updated_at=now,
                        expired=expired,
                        delivery_id=row.id,
                        stage=result.stage,
                    )
                )
        if updates:
            conn.execute(self._update_outcome, updates)
        jobs = self._bounce(conn, failed)
        if failed and self.observer is not None:
            self._observe(conn, self.observer.deliveries_failed, failed)
        return jobs

    @staticmethod
    def _observe(conn: Connection, tell: Callable[[Connection, Any], None], what: Any) -> None:
        """The observer's writes in a savepoint: its failure is logged and undone, never
        the queue's (a lost outcome would send the mail again when its lease expires)."""
        try:
            with conn.begin_nested():
                tell(conn, what)
        except Exception:
            log.exception("queue observer failed; the queue change stands without it")

    def _bounce(self, conn: Connection, failed: dict[str, list[FailedDelivery]]) -> list[Job]:
        if not failed or self.bounce_builder is None:
            return []
        jobs: list[Job] = []
        for original in conn.execute(_ORIGINALS, {"message_ids": list(failed)}):
            dsn = self.bounce_builder(
                OriginalMessage(
                    queue_id=original.id,
                    mail_from=original.mail_from,
                    origin=original.origin,
                    created_at=original.created_at,
                    envelope_id=original.envelope_id,
                    body=bytes(original.body or b""),
                ),
                failed[original.id],
            )
            if dsn is not None:
                jobs.extend(self._jobs_for(dsn, self._insert_many(conn, [dsn])[0]))
        return jobs

    def _complete_messages(self, conn: Connection, delivery_ids: list[int], now: float) -> None:
        """Drop the bytes of the messages of these deliveries whose every delivery is final."""
        if conn.dialect.name == "postgresql":
            # Two nodes recording the last two deliveries of one message at once would
            # each see the other's still in flight (READ COMMITTED) and neither would
            # complete it: the message row lock makes the second wait, and its UPDATE
            # (a statement started after the wait) then sees the first's. (On SQLite
            # the group commit's transaction holds the write lock.)
            conn.execute(_LOCK_MESSAGES, {"delivery_ids": delivery_ids}).all()
        conn.execute(_COMPLETE_MESSAGES, {"delivery_ids": delivery_ids, "now": now})
