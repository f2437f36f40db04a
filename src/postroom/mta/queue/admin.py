"""Operator actions on the queue (`postroom queue ...`): list, show, retry, hold,
release, delete, stats; and `remove_waiting(conn, message_ids)`, the delete of
producers that withdraw their own mail (a cancelled campaign, an unsubscribe).

Each action is one short transaction, safe while `serve` runs: the server
picks up retried and released deliveries at its next claim (about a second).
Held deliveries are never claimed; a delivery already in flight when it is held
or deleted may still complete that attempt, but its outcome is then ignored:
the operator's word stands. A campaign's pause holds deliveries too
(`held_by = HELD_BY_CAMPAIGN`, released by its resume); `hold` takes such a
delivery over (`held_by` NULL: the resume leaves it), `release` frees either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Select, case, delete, exists, func, select, update

from postroom.db.models import deliveries, messages
from postroom.db.states import FINAL_STATES, DeliveryState
from postroom.mta.queue.stats import queue_stats

_NOT_FINAL = deliveries.c.state.not_in([state.value for state in FINAL_STATES])
WAITING_STATES = (DeliveryState.QUEUED, DeliveryState.DEFERRED, DeliveryState.HELD)
"""Not handed to a remote server yet, nor being handed (in flight), nor final."""
HELD_BY_CAMPAIGN = "campaign"
"""`deliveries.held_by` of a delivery a campaign's pause held (NULL: an operator)."""


class NoSuchMessage(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class QueueAdmin:
    engine: Engine

    def list(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        pending = func.sum(case((_NOT_FINAL, 1), else_=0))
        query = (
            select(
                messages.c.id,
                messages.c.created_at,
                messages.c.mail_from,
                messages.c.size_bytes,
                messages.c.pool,
                func.count(deliveries.c.id).label("recipients"),
                pending.label("pending"),
                func.min(deliveries.c.next_attempt_at).label("next_attempt_at"),
            )
            .join(deliveries, deliveries.c.message_id == messages.c.id)
            .group_by(messages.c.id)
            .order_by(messages.c.created_at)
            .limit(limit)
        )
        query = query.where(deliveries.c.state == state if state else _NOT_FINAL)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def show(self, queue_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            message = conn.execute(
                select(*[c for c in messages.c if c.name != "body"]).where(
                    messages.c.id == queue_id
                )
            ).first()
            if message is None:
                raise NoSuchMessage(queue_id)
            rows = conn.execute(
                select(deliveries)
                .where(deliveries.c.message_id == queue_id)
                .order_by(deliveries.c.id)
            ).all()
            headers = conn.execute(
                select(func.substr(messages.c.body, 1, 8192)).where(messages.c.id == queue_id)
            ).scalar_one_or_none()
        result = dict(message._mapping)
        result["deliveries"] = [dict(row._mapping) for row in rows]
        if headers is not None:
            head = bytes(headers).split(b"\r\n\r\n", 1)[0]
            result["headers"] = head.decode("utf-8", "replace")
        return result

    def _set(self, where: Any, **values: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(update(deliveries).where(where).values(**values)).rowcount

    def retry(self, queue_id: str | None) -> int:
        """Deferred (and queued) deliveries become due now; `None` means all."""
        where = deliveries.c.state.in_([DeliveryState.DEFERRED, DeliveryState.QUEUED])
        if queue_id is not None:
            self._require(queue_id)
            where = where & (deliveries.c.message_id == queue_id)
        return self._set(where, next_attempt_at=time.time(), state=DeliveryState.QUEUED)

    def hold(self, queue_id: str) -> int:
        self._require(queue_id)
        return self._set(
            (deliveries.c.message_id == queue_id)
            & _NOT_FINAL
            & ((deliveries.c.state != DeliveryState.HELD) | deliveries.c.held_by.is_not(None)),
            state=DeliveryState.HELD,
            held_by=None,
            lease_owner=None,
            lease_until=None,
            updated_at=time.time(),
        )

    def release(self, queue_id: str) -> int:
        self._require(queue_id)
        now = time.time()
        return self._set(
            (deliveries.c.message_id == queue_id) & (deliveries.c.state == DeliveryState.HELD),
            state=DeliveryState.QUEUED,
            held_by=None,
            next_attempt_at=now,
            updated_at=now,
        )

    def delete(self, queue_id: str) -> int:
        self._require(queue_id)
        with self.engine.begin() as conn:
            count = conn.execute(
                delete(deliveries).where(deliveries.c.message_id == queue_id)
            ).rowcount
            conn.execute(delete(messages).where(messages.c.id == queue_id))
        return count

    def stats(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return queue_stats(lambda sql: conn.exec_driver_sql(sql).all(), time.time())

    def _require(self, queue_id: str) -> None:
        with self.engine.connect() as conn:
            found = conn.execute(select(messages.c.id).where(messages.c.id == queue_id)).first()
        if found is None:
            raise NoSuchMessage(queue_id)


def remove_waiting(conn: Connection, message_ids: Select[Any], now: float) -> int:
    """In the caller's transaction: delete the waiting deliveries (`WAITING_STATES`) of
    the messages `message_ids` selects, then release those messages' bytes as the
    queue does: a message with no delivery left is deleted (as `queue delete` does),
    one whose remaining deliveries are all final is completed (body dropped). Those
    in flight or done stay as they are. The number of deliveries deleted."""
    removed = conn.execute(
        delete(deliveries).where(
            deliveries.c.message_id.in_(message_ids),
            deliveries.c.state.in_([state.value for state in WAITING_STATES]),
        )
    ).rowcount
    if not removed:
        return 0
    conn.execute(
        delete(messages).where(
            messages.c.id.in_(message_ids),
            ~exists().where(deliveries.c.message_id == messages.c.id),
        )
    )
    conn.execute(
        update(messages)
        .where(
            messages.c.id.in_(message_ids),
            messages.c.completed_at.is_(None),
            ~exists().where(deliveries.c.message_id == messages.c.id, _NOT_FINAL),
        )
        .values(body=None, completed_at=now)
    )
    return int(removed)
