"""Pausing, resuming and cancelling a launched campaign (`campaign pause|resume|cancel`).

Each is ONE write transaction (`db.engine.write_transaction`), safe beside
running serve workers; the producer in `serve` agrees with it because it only
claims pending rows of `scheduled`/`sending` campaigns and queues a row only
while it is still pending and its campaign still sendable.
On PostgreSQL (SQLite runs writers one at a time) two more rules hold:
- the campaign row is locked first (`SELECT ... FOR UPDATE`): the producer
  holds it `FOR SHARE` while it commits a batch, so a pause or cancel either
  waits for that batch and then sees its deliveries, or is seen by it and
  nothing more is queued; its state is read as committed, never stale;
- before recipient rows are marked for a cancel or an unsubscribe, the
  deliveries still waiting are locked in id order (`FOR UPDATE`): a delivery
  engine's claim (`SKIP LOCKED`) passes them by, so the rows marked are exactly
  those whose delivery is then deleted — never a row saying cancelled whose
  message leaves anyway; one a claim took first stays `queued`.
- `pause`: a `scheduled` or `sending` campaign → `paused`, `paused_at` = now;
  its deliveries still waiting in the queue (queued, deferred; not in flight)
  → `held` (never claimed until released), marked `held_by = 'campaign'`.
- `resume`: a `paused` campaign; shift = now − paused_at. Every pending row's
  `release_at` and the `next_attempt_at` of every delivery its pause held move
  by the shift (held → queued), so the pace and the parts' gaps are kept; one
  an operator holds (`queue hold`, before or during the pause) stays held
  until `queue release`; a campaign that had
  not started yet (start_at after the pause) has its start moved too and is
  `scheduled` again while it is ahead, else `sending`.
- `cancel`: a `scheduled`, `sending` or `paused` campaign → `cancelled`,
  `finished_at`; its pending rows → `cancelled`; its deliveries not handed to a
  remote server (queued, deferred, held) are deleted with their messages
  (`mta.queue.admin.remove_waiting`) and their rows become `cancelled` too
  (their `campaign_sends` history row goes: the contact never got it). Those in
  flight or done stay. `Cancelled.removed` says how many were removed.
- `withdraw_contact(conn, project_id, contact_id, now)`: for an unsubscribe, in
  its transaction: the contact's pending rows in every campaign of the project
  → `skipped` (reason `unsubscribed`), and its campaign messages still waiting
  deleted (those rows skipped the same way).
The campaign's deliveries are those of the messages its `queued` rows name.
What a delivery engine already holds in memory is stopped by `campaign.stopped`
with the two pieces these verbs are made of, in the queue's transaction:
`hold_waiting(conn, which, now)` (the pause's hold) and
`cancel_messages(conn, campaign_id, message_ids, now)` (the cancel's removal).
A wrong state or an unknown campaign is a `LifecycleError` (one line, exit 2):
a `launching` campaign (its audience snapshot being written, campaign/launch.py)
is neither paused, resumed nor cancelled; the message says to wait for the launch.

Config keys: none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, func, select, update

from postroom.db.engine import is_postgresql, write_transaction
from postroom.db.models import (
    CampaignState,
    RecipientState,
    campaign_recipients,
    campaign_sends,
    campaigns,
    deliveries,
)
from postroom.db.states import DeliveryState
from postroom.mta.queue.admin import HELD_BY_CAMPAIGN, WAITING_STATES, remove_waiting

_PAUSABLE = (CampaignState.SCHEDULED, CampaignState.SENDING)
_CANCELLABLE = (CampaignState.SCHEDULED, CampaignState.SENDING, CampaignState.PAUSED)
_WAITING = [state.value for state in WAITING_STATES]


class LifecycleError(Exception):
    """Not done (unknown campaign, wrong state): one line, nothing changed."""


@dataclass(frozen=True, slots=True)
class Paused:
    id: int
    held: int  # deliveries put on hold


@dataclass(frozen=True, slots=True)
class Resumed:
    id: int
    state: str
    shift_s: float
    released: int  # deliveries its pause held, back in the queue


@dataclass(frozen=True, slots=True)
class Cancelled:
    id: int
    removed: int  # deliveries deleted from the queue before they were sent
    cancelled: int  # recipient rows that will get nothing


def pause(engine: Engine, campaign_id: int, *, clock: Callable[[], float] = time.time) -> Paused:
    with write_transaction(engine) as conn:
        _in_state(conn, campaign_id, _PAUSABLE, "paused")
        now = clock()
        _set_campaign(conn, campaign_id, state=CampaignState.PAUSED.value, paused_at=now)
        held = hold_waiting(conn, deliveries.c.message_id.in_(campaign_messages(campaign_id)), now)
    return Paused(campaign_id, held)


def resume(engine: Engine, campaign_id: int, *, clock: Callable[[], float] = time.time) -> Resumed:
    with write_transaction(engine) as conn:
        row = _in_state(conn, campaign_id, (CampaignState.PAUSED,), "resumed")
        now = clock()
        paused_at = row.paused_at if row.paused_at is not None else now
        shift = max(now - paused_at, 0.0)
        start_at = row.start_at if row.start_at is not None else now
        if start_at > paused_at:  # it had not started: its start moves with the rest
            start_at += shift
        state = CampaignState.SCHEDULED if start_at > now else CampaignState.SENDING
        _set_campaign(conn, campaign_id, state=state.value, paused_at=None, start_at=start_at)
        conn.execute(
            update(campaign_recipients)
            .where(
                campaign_recipients.c.campaign_id == campaign_id,
                campaign_recipients.c.state == RecipientState.PENDING.value,
            )
            .values(release_at=campaign_recipients.c.release_at + shift, updated_at=now)
        )
        released = conn.execute(
            update(deliveries)
            .where(
                deliveries.c.message_id.in_(campaign_messages(campaign_id)),
                deliveries.c.state == DeliveryState.HELD.value,
                deliveries.c.held_by == HELD_BY_CAMPAIGN,
            )
            .values(
                state=DeliveryState.QUEUED.value,
                held_by=None,
                next_attempt_at=deliveries.c.next_attempt_at + shift,
                updated_at=now,
            )
        ).rowcount
    return Resumed(campaign_id, state.value, shift, int(released))


def cancel(
    engine: Engine, campaign_id: int, *, clock: Callable[[], float] = time.time
) -> Cancelled:
    with write_transaction(engine) as conn:
        _in_state(conn, campaign_id, _CANCELLABLE, "cancelled")
        now = clock()
        _set_campaign(conn, campaign_id, state=CampaignState.CANCELLED.value, finished_at=now)
        cancelled, removed = _cancel_rows(
            conn, campaign_recipients.c.campaign_id == campaign_id, now
        )
    return Cancelled(campaign_id, removed, cancelled)


def hold_waiting(conn: Connection, which: ColumnElement[bool], now: float) -> int:
    """In the caller's transaction: the waiting deliveries (queued, deferred) that
    `which` selects → held by their campaign's pause (its resume releases them)."""
    return int(
        conn.execute(
            update(deliveries)
            .where(
                which,
                deliveries.c.state.in_([DeliveryState.QUEUED.value, DeliveryState.DEFERRED.value]),
            )
            .values(
                state=DeliveryState.HELD.value,
                held_by=HELD_BY_CAMPAIGN,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
            )
        ).rowcount
    )


def cancel_messages(conn: Connection, campaign_id: int, message_ids: list[str], now: float) -> int:
    """In the caller's transaction: of a cancelled campaign, these messages' waiting
    deliveries removed and their rows cancelled, as `cancel` does to every waiting
    one; the number of deliveries removed."""
    rows = (
        campaign_recipients.c.campaign_id == campaign_id
    ) & campaign_recipients.c.message_id.in_(message_ids)
    return _cancel_rows(conn, rows, now)[1]


def _cancel_rows(conn: Connection, rows: Any, now: float) -> tuple[int, int]:
    """These rows that get nothing now → cancelled, their waiting messages out of the
    queue: (rows cancelled, deliveries removed)."""
    cancelled = _stop_rows(conn, rows, RecipientState.CANCELLED, "", now)
    return cancelled, _withdraw_messages(conn, rows, RecipientState.CANCELLED, now)


def withdraw_contact(conn: Connection, project_id: int, contact_id: int, now: float) -> int:
    """An unsubscribed contact's campaign mail not sent yet stops (see the module
    docstring); the number of its queued deliveries removed."""
    rows = (campaign_recipients.c.contact_id == contact_id) & campaign_recipients.c.campaign_id.in_(
        select(campaigns.c.id).where(campaigns.c.project_id == project_id)
    )
    _stop_rows(conn, rows, RecipientState.SKIPPED, "unsubscribed", now)
    return _withdraw_messages(conn, rows, RecipientState.SKIPPED, now, reason="unsubscribed")


def campaign_messages(campaign_id: int) -> Any:
    """The queue ids of the campaign's messages (a subquery)."""
    return select(campaign_recipients.c.message_id).where(
        campaign_recipients.c.campaign_id == campaign_id,
        campaign_recipients.c.state == RecipientState.QUEUED.value,
    )


def _stop_rows(conn: Connection, rows: Any, state: RecipientState, reason: str, now: float) -> int:
    """Pending rows → `state`; and queued rows whose delivery still waits, marked before
    `_withdraw_messages` deletes it (a row whose message is long delivered and purged
    from the queue must keep saying queued)."""
    stopped = conn.execute(
        update(campaign_recipients)
        .where(rows, campaign_recipients.c.state == RecipientState.PENDING.value)
        .values(
            state=state.value, reason=reason, lease_owner=None, lease_until=None, updated_at=now
        )
    ).rowcount
    waiting = exists().where(
        deliveries.c.message_id == campaign_recipients.c.message_id,
        deliveries.c.state.in_(_WAITING),
    )
    if is_postgresql(conn.engine):
        _lock_waiting(conn, rows)
    stopped += conn.execute(
        update(campaign_recipients)
        .where(rows, campaign_recipients.c.state == RecipientState.QUEUED.value, waiting)
        .values(state=state.value, reason=reason, updated_at=now)
    ).rowcount
    return int(stopped)


def _lock_waiting(conn: Connection, rows: Any) -> None:
    """PostgreSQL: the waiting deliveries of these rows' messages locked, in id order
    (two withdrawals never deadlock); one being claimed is waited for, then seen in
    flight and left out. Counted in SQL: no id travels to Python."""
    locked = (
        select(deliveries.c.id)
        .where(
            deliveries.c.message_id.in_(
                select(campaign_recipients.c.message_id).where(
                    rows, campaign_recipients.c.state == RecipientState.QUEUED.value
                )
            ),
            deliveries.c.state.in_(_WAITING),
        )
        .order_by(deliveries.c.id)
        .with_for_update()
        .subquery()
    )
    conn.execute(select(func.count()).select_from(locked))


def _withdraw_messages(
    conn: Connection, rows: Any, state: RecipientState, now: float, *, reason: str = ""
) -> int:
    """The stopped rows' messages out of the queue, and out of the contacts' history."""
    stopped_messages = select(campaign_recipients.c.message_id).where(
        rows,
        campaign_recipients.c.state == state.value,
        campaign_recipients.c.reason == reason,
        campaign_recipients.c.message_id.is_not(None),
    )
    removed = remove_waiting(conn, stopped_messages, now)
    if removed:
        conn.execute(
            delete(campaign_sends).where(campaign_sends.c.message_id.in_(stopped_messages))
        )
    return removed


def _in_state(
    conn: Connection, campaign_id: int, allowed: tuple[CampaignState, ...], verb: str
) -> Any:
    # FOR UPDATE: first, so the producer's commit (FOR SHARE) and this one are ordered.
    row = conn.execute(
        select(campaigns).where(campaigns.c.id == campaign_id).with_for_update()
    ).first()
    if row is None:
        raise LifecycleError(f"no campaign {campaign_id}")
    if row.state not in allowed:
        names = [state.value for state in allowed]
        states = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        launching = " (wait for its launch to end)" if row.state == CampaignState.LAUNCHING else ""
        raise LifecycleError(
            f"campaign {campaign_id} is {row.state}: only a {states} campaign is {verb}{launching}"
        )
    return row


def _set_campaign(conn: Connection, campaign_id: int, **values: Any) -> None:
    conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))
