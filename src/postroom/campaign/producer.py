"""The campaign producer: launched campaigns' recipient rows → signed messages in the queue.

`CampaignProducer(engine, config, store, delivery, signer)` runs in every `serve`
node (app.py starts it with the delivery engine and stops it before the engine
drains). Its loop, a batch at a time:
- claim: pending `campaign_recipients` rows of a campaign in state `scheduled` or
  `sending` whose `release_at <= now + LOOKAHEAD_S`, in release (= seq) order, at
  most `BATCH_ROWS`, leased to this node (`lease_owner` = the node name,
  `lease_until`); an expired lease is claimable again. On PostgreSQL the rows are
  read `FOR UPDATE SKIP LOCKED`, on SQLite in a write transaction
  (`write_transaction`): two nodes never claim one row.
- render (in a thread, off the event loop): the contacts read again, a contact
  now blocked or unsubscribed skipped with that reason (erased: `erased`); each
  other message composed by part 1's `Composer` (template snapshot compiled once
  per campaign; From display name = `campaigns.from_name` or the sender's) and
  DKIM-signed. A contact whose render fails is skipped (`undefined_variable`,
  `render_error`), logged once per campaign and reason.
- commit, ONE transaction through the queue's group commit
  (`QueueStore.enqueue_produced`): only rows still pending, leased by this node,
  of a campaign still scheduled/sending become `queued` with their message id
  (or `skipped`: blocked/unsubscribed are checked again under the write); their
  messages are inserted with origin `campaign`, the campaign's pool and project
  (the rating observer), due at `release_at`; a `campaign_sends` row each when
  the campaign keeps `history`; the project's message limit is reserved
  (`ProjectUsage.reserve_batch`): over it, nothing is queued, the rows stay
  pending and the campaign waits (`LIMIT_RETRY_S`, logged once per project).
  The first production moves a `scheduled` campaign to `sending`. Due-now
  deliveries come back as claimed jobs for the delivery engine, marked with the
  campaign's id (a pause or cancel takes them back: `campaign.stopped`); later
  ones wait `queued` for its claim loop (an interval campaign is paced by
  release times).
- finish: a campaign with no pending row left and no message of it still due
  later (a paced campaign's `queued` deliveries wait for their release time)
  becomes `sent` (`finished_at`); until then it can be paused or cancelled.

Pipelined: a batch's commit runs while the next batch is claimed and rendered
(at most one batch committing, one rendering), so the rendering thread and the
queue's commit thread work at once.

Exactly once: a row changes state and its message is stored in one transaction;
a crash loses both or neither, and a restarted node first returns the leases it
held (`release_own_leases`). Bounded memory: two batches at most, and no new one
while the delivery engine holds `BACKLOG_MAX` deliveries or more. Idle cost: one query
a second (the active campaigns). `stop()` finishes the batches in hand.

Config keys: [campaign] (through the composer), [secrets] key_file, node name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, bindparam, exists, insert, or_, select, update

from postroom.campaign.audience_report import recipient_from_row
from postroom.campaign.compose import Composer, Copy, RenderRefused
from postroom.campaign.drafts import Campaign, CampaignError, load
from postroom.config import Config
from postroom.db.engine import is_postgresql, write_transaction
from postroom.db.models import (
    CampaignState,
    MessageOrigin,
    RecipientState,
    campaign_recipients,
    campaign_sends,
    campaigns,
    contacts,
    deliveries,
)
from postroom.db.states import DeliveryState
from postroom.mailbox.usage import ProjectUsage
from postroom.mta.delivery.engine import DeliveryEngine
from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.outbox import Outbox
from postroom.mta.queue.records import NewMessage
from postroom.mta.queue.store import QueueStore
from postroom.mta.signing.outbound import OutboundSigner

log = logging.getLogger("postroom.campaign")

BATCH_ROWS = 250  # per batch: a claim, a settle, a commit; 250 spend 2 % less CPU than 100
LOOKAHEAD_S = 60.0  # rows released this soon are produced now, due at their release time
LEASE_S = 300.0  # a claimed batch takes a second or two; a dead node's rows wait this long
IDLE_S = 1.0  # at least one look a second while nothing is claimable
BACKPRESSURE_S = 0.1
BACKLOG_MAX = 2000  # deliveries in the engine's memory: produce no more until below
LIMIT_RETRY_S = 60.0  # a campaign whose project reached its limit looks again after this

SENDABLE = (CampaignState.SCHEDULED.value, CampaignState.SENDING.value)
_R = campaign_recipients.c
# A produced row, queued (with its message) or skipped (with why), in one statement
# built once: it runs in the production transaction, under the database's write lock.
_SETTLE_ROWS = (
    update(campaign_recipients)
    .where(_R.id == bindparam("row_id"))
    .values(
        state=bindparam("settled"),
        reason=bindparam("why"),
        message_id=bindparam("queue_id"),
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("now"),
    )
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """One recipient row leased to this node."""

    row_id: int
    contact_id: int | None
    address: str
    release_at: float


@dataclass(frozen=True, slots=True)
class Launched:
    """A campaign as its launch set it: what it sends, through which pool, history on/off."""

    campaign: Campaign  # sender_name is the From display name it sends with
    pool: str
    history: bool


@dataclass(frozen=True, slots=True)
class Made:
    """A claimed row after rendering: its message, or why it is skipped."""

    row: Claimed
    message: NewMessage | None
    subject: str = ""
    skip_reason: str = ""


@dataclass(slots=True)
class Committed:
    """What the production transaction found (set afresh by each try of it)."""

    over_limit: bool = False


class CampaignProducer:
    def __init__(
        self,
        engine: Engine,
        config: Config,
        store: QueueStore,
        delivery: DeliveryEngine,
        signer: OutboundSigner | None = None,
        *,
        batch_rows: int = BATCH_ROWS,
        backlog_max: int = BACKLOG_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config
        self.store = store
        self.delivery = delivery
        self.signer = signer
        self.owner = config.node_name
        self.batch_rows = batch_rows
        self.backlog_max = backlog_max
        self.clock = clock
        self.usage = ProjectUsage(engine, clock)
        self._postgresql = is_postgresql(engine)
        self._composer: Composer | None = None
        self._launched: dict[int, Launched] = {}
        self._resting: dict[int, float] = {}  # campaign id → when to look at it again
        self._limit_logged: set[int] = set()  # projects whose full limit was logged
        self._render_failures: dict[int, Counter[str]] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None  # the batch being stored

    # -- lifecycle ----------------------------------------------------------------

    def start(self, worker_prefix: str | None = None) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.run(worker_prefix), name="campaign-producer"
        )

    async def stop(self, timeout_s: float) -> None:
        """Finish the batch in hand (its rows end queued or released), then stop."""
        self._stopping.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, timeout_s)
        except TimeoutError:
            # Its leases return at this node's next start (release_own_leases).
            log.warning("campaign producer did not finish its batch within the drain timeout")

    async def run(self, worker_prefix: str | None = None) -> None:
        released = await asyncio.to_thread(self.release_own_leases, worker_prefix)
        if released:
            log.info("returned %d campaign recipients this node held before it stopped", released)
        while not self._stopping.is_set():
            try:
                pause = await self.produce_once()
            except Exception:  # a database hiccup must not end production for good
                log.exception("campaign production failed; trying again")
                pause = IDLE_S
            if pause:
                await self.settled()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
        await self.settled()

    # -- one pass -----------------------------------------------------------------

    async def produce_once(self) -> float:
        """Produce one batch if any is claimable; how long to wait before the next pass
        (0: go on at once). The batch may still be committing on return (`settled()`
        waits for it): the next pass claims and renders meanwhile."""
        if self.delivery.backlog >= self.backlog_max:
            return BACKPRESSURE_S
        active = await asyncio.to_thread(self._active_campaigns)
        if not active:
            # Nothing to send: let compiled templates and key caches go.
            self._composer = None
            self._launched.clear()
            return IDLE_S
        now = self.clock()
        for campaign_id in active:
            if self._resting.get(campaign_id, 0.0) > now:
                continue
            rows = await asyncio.to_thread(self.claim, campaign_id)
            if rows:
                await self._produce(campaign_id, rows)
                return 0.0
            await self.settled()  # its last rows may be in that commit
            await asyncio.to_thread(self._finish_if_done, campaign_id)
        return IDLE_S

    def _active_campaigns(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(campaigns.c.id)
                    .where(campaigns.c.state.in_(SENDABLE))
                    .order_by(campaigns.c.id)
                ).scalars()
            )

    def claim(self, campaign_id: int) -> list[Claimed]:
        """Lease up to `batch_rows` of the campaign's released pending rows to this node."""
        now = self.clock()
        free = or_(_R.lease_until.is_(None), _R.lease_until < now)
        candidates = (
            select(_R.id)
            .where(
                _R.campaign_id == campaign_id,
                _R.state == RecipientState.PENDING.value,
                _R.release_at <= now + LOOKAHEAD_S,
                free,
            )
            # The claim index's order: release time, then insertion (= seq) order.
            .order_by(_R.release_at)
            .limit(self.batch_rows)
        )
        if self._postgresql:
            candidates = candidates.with_for_update(skip_locked=True)
        sendable = exists().where(campaigns.c.id == campaign_id, campaigns.c.state.in_(SENDABLE))
        with write_transaction(self.engine) as conn:
            ids = list(conn.execute(candidates).scalars())
            if not ids:
                return []
            # Only rows still free: exact whatever the isolation of the SELECT above.
            taken = conn.execute(
                update(campaign_recipients)
                .where(_R.id.in_(ids), _R.state == RecipientState.PENDING.value, free, sendable)
                .values(lease_owner=self.owner, lease_until=now + LEASE_S, updated_at=now)
                .returning(_R.id, _R.contact_id, _R.address, _R.release_at)
            ).all()
        rows = [Claimed(row.id, row.contact_id, row.address, row.release_at) for row in taken]
        return sorted(rows, key=lambda row: (row.release_at, row.row_id))

    async def _produce(self, campaign_id: int, rows: list[Claimed]) -> None:
        """Render the batch, then hand it to the queue's commit without waiting for it:
        the next batch is claimed and rendered while this one commits (one in flight)."""
        try:
            launched = await asyncio.to_thread(self._launch, campaign_id)
            made = await asyncio.to_thread(self._render, launched, rows)
        except CampaignError as error:  # its template is gone or no longer compiles
            log.error("campaign %d cannot be produced: %s", campaign_id, error)
            self._resting[campaign_id] = self.clock() + LIMIT_RETRY_S
            await asyncio.to_thread(self.release, rows)
            return
        except Exception:
            await asyncio.to_thread(self.release, rows)
            raise
        await self.settled()
        self._committing = asyncio.get_running_loop().create_task(
            self._store(launched, rows, made), name="campaign-commit"
        )

    async def settled(self) -> None:
        """The batch in commit, if any, stored (or released)."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            await committing

    async def _store(self, launched: Launched, rows: list[Claimed], made: list[Made]) -> None:
        committed = Committed()
        campaign_id = launched.campaign.id
        try:
            jobs = await self.store.enqueue_produced(
                lambda conn: self._commit(conn, launched, made, committed)
            )
        except Exception:  # a database hiccup: the rows go back, the next pass retries them
            log.exception("campaign %d: storing a batch failed; its rows are released", campaign_id)
            await self._release_quietly(rows)
            return
        project_id = launched.campaign.project_id
        if committed.over_limit:
            self._resting[campaign_id] = self.clock() + LIMIT_RETRY_S
            if project_id not in self._limit_logged:
                self._limit_logged.add(project_id)
                log.warning(
                    "project %s reached its message limit: campaign %d waits (rows stay pending)",
                    launched.campaign.project,
                    campaign_id,
                )
            await self._release_quietly(rows)
            return
        self._limit_logged.discard(project_id)
        self.delivery.submit(jobs)

    async def _release_quietly(self, rows: list[Claimed]) -> None:
        """Release, logging a failure: the leases then expire by themselves (LEASE_S)."""
        try:
            await asyncio.to_thread(self.release, rows)
        except Exception:
            log.exception("returning %d campaign recipients failed", len(rows))

    # -- rendering (a worker thread) ------------------------------------------------

    def _launch(self, campaign_id: int) -> Launched:
        launched = self._launched.get(campaign_id)
        if launched is None:
            with self.engine.connect() as conn:
                campaign = load(conn, campaign_id)
                settings = conn.execute(
                    select(campaigns.c.pool, campaigns.c.from_name, campaigns.c.history).where(
                        campaigns.c.id == campaign_id
                    )
                ).one()
            if settings.from_name:
                campaign = replace(campaign, sender_name=settings.from_name)
            launched = self._launched[campaign_id] = Launched(
                campaign, settings.pool or self.config.campaign_pool, bool(settings.history)
            )
        return launched

    def _render(self, launched: Launched, rows: list[Claimed]) -> list[Made]:
        campaign = launched.campaign
        wanted = [row.contact_id for row in rows if row.contact_id is not None]
        with self.engine.connect() as conn:
            found = {
                row.id: row
                for row in conn.execute(
                    select(contacts).where(
                        contacts.c.id.in_(wanted), contacts.c.project_id == campaign.project_id
                    )
                )
            }
        composer = self._composer_ready()
        composer.template(campaign)  # a template that cannot compile fails the whole batch
        made = []
        for row in rows:
            contact = found.get(row.contact_id) if row.contact_id is not None else None
            reason = _refusal(contact)
            if reason:
                made.append(Made(row, None, skip_reason=reason))
                continue
            try:
                composed = composer.compose(
                    campaign, Copy(row.address, recipient_from_row(contact))
                )
            except RenderRefused as error:
                self._render_failed(campaign.id, error)
                made.append(Made(row, None, skip_reason=error.reason))
                continue
            now = self.clock()
            message = NewMessage(
                queue_id=new_queue_id(now),
                mail_from=campaign.sender,
                recipients=(row.address,),
                body=composed.body,
                pool=launched.pool,
                origin=MessageOrigin.CAMPAIGN,
                created_at=now,
                project_id=campaign.project_id,
                release_at=row.release_at,
                campaign_id=campaign.id,  # its jobs can be stopped in the engine's memory
            )
            made.append(Made(row, message, composed.subject))
        return made

    def _composer_ready(self) -> Composer:
        if self._composer is None:
            outbox = Outbox(self.engine, self.config, self.signer)
            self._composer = Composer(self.engine, self.config, outbox)
        return self._composer

    def _render_failed(self, campaign_id: int, error: RenderRefused) -> None:
        seen = self._render_failures.setdefault(campaign_id, Counter())
        if not seen[error.reason]:
            log.warning(
                "campaign %d: %s (such contacts are skipped: %s)", campaign_id, error, error.reason
            )
        seen[error.reason] += 1

    # -- the production transaction (the queue's commit thread) -------------------------

    def _commit(
        self, conn: Connection, launched: Launched, made: list[Made], committed: Committed
    ) -> list[NewMessage]:
        """The rows still ours → queued or skipped, and the messages to store with them."""
        committed.over_limit = False
        campaign = launched.campaign
        state_query = select(campaigns.c.state).where(campaigns.c.id == campaign.id)
        if self._postgresql:  # a pause or cancel waits for this transaction, and sees it
            state_query = state_query.with_for_update(read=True)
        if conn.execute(state_query).scalar() not in SENDABLE:
            # Paused or cancelled meanwhile: the rows go back now, not when their lease
            # ends (a resume within LEASE_S would wait for them).
            self._release(conn, [entry.row for entry in made])
            return []
        mine_query = select(_R.id).where(
            _R.id.in_([entry.row.row_id for entry in made]),
            _R.state == RecipientState.PENDING.value,
            _R.lease_owner == self.owner,
        )
        if self._postgresql:
            mine_query = mine_query.with_for_update()
        mine = set(conn.execute(mine_query).scalars())
        ours = [entry for entry in made if entry.row.row_id in mine]
        refused = _refused_now(conn, [e.row.contact_id for e in ours if e.message is not None])
        to_queue: list[Made] = []
        to_skip: list[tuple[Made, str]] = []
        for entry in ours:
            reason = entry.skip_reason or refused.get(entry.row.contact_id or 0, "")
            if reason:
                to_skip.append((entry, reason))
            else:
                to_queue.append(entry)
        if to_queue:
            reservation = self.usage.reserve_batch(conn, [(campaign.project_id, len(to_queue))])
            if reservation[0] is None:
                committed.over_limit = True
                to_queue = []
        now = self.clock()
        messages = [entry.message for entry in to_queue if entry.message is not None]
        skipped = RecipientState.SKIPPED.value
        queued = RecipientState.QUEUED.value
        settled = [
            {"row_id": entry.row.row_id, "settled": skipped, "why": why, "queue_id": None}
            for entry, why in to_skip
        ] + [
            {"row_id": entry.row.row_id, "settled": queued, "why": "", "queue_id": message.queue_id}
            for entry, message in zip(to_queue, messages, strict=True)
        ]
        for row in settled:
            row["now"] = now
        if settled:
            conn.execute(_SETTLE_ROWS, settled)
        if not to_queue:
            return []
        if launched.history:
            conn.execute(
                insert(campaign_sends),
                [
                    {
                        "campaign_id": campaign.id,
                        "contact_id": entry.row.contact_id,
                        "recipient": entry.row.address,
                        "kind": "campaign",
                        "subject": entry.subject,
                        "message_id": message.queue_id,
                        "created_at": now,
                    }
                    for entry, message in zip(to_queue, messages, strict=True)
                ],
            )
        conn.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign.id, campaigns.c.state == CampaignState.SCHEDULED)
            .values(state=CampaignState.SENDING.value, updated_at=now)
        )
        return messages

    # -- leases and the end of a campaign ------------------------------------------------

    def release(self, rows: Sequence[Claimed]) -> int:
        """Rows of a batch that was not produced go back, claimable at once."""
        with write_transaction(self.engine) as conn:
            return self._release(conn, rows)

    def _release(self, conn: Connection, rows: Sequence[Claimed]) -> int:
        return int(
            conn.execute(
                update(campaign_recipients)
                .where(
                    _R.id.in_([row.row_id for row in rows]),
                    _R.state == RecipientState.PENDING.value,
                    _R.lease_owner == self.owner,
                )
                .values(lease_owner=None, lease_until=None)
            ).rowcount
        )

    def release_own_leases(self, worker_prefix: str | None = None) -> int:
        """At start: the pending rows of active campaigns this node (with `worker_prefix`,
        or any of its workers) leased before it stopped are claimable again."""
        owned = _R.lease_owner == self.owner
        if worker_prefix is not None:
            owned = owned | _R.lease_owner.startswith(worker_prefix, autoescape=True)
        active = select(campaigns.c.id).where(campaigns.c.state.in_(SENDABLE))
        with write_transaction(self.engine) as conn:
            return conn.execute(
                update(campaign_recipients)
                .where(
                    _R.campaign_id.in_(active),
                    _R.state == RecipientState.PENDING.value,
                    owned,
                )
                .values(lease_owner=None, lease_until=None)
            ).rowcount

    def _finish_if_done(self, campaign_id: int) -> None:
        now = self.clock()
        pending = exists().where(
            _R.campaign_id == campaign_id, _R.state == RecipientState.PENDING.value
        )
        # Released later: the few deliveries due in the future (ix_deliveries_due) first.
        released_later = exists().where(
            deliveries.c.state == DeliveryState.QUEUED.value,
            deliveries.c.next_attempt_at > now,
            deliveries.c.message_id == _R.message_id,
            _R.campaign_id == campaign_id,
        )
        unfinished = or_(pending, released_later)
        with self.engine.connect() as conn:  # a read first: the common answer is "not yet"
            if conn.execute(select(unfinished)).scalar():
                return
        with write_transaction(self.engine) as conn:
            finished = conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.state.in_(SENDABLE), ~unfinished)
                .values(state=CampaignState.SENT.value, finished_at=now, updated_at=now)
            ).rowcount
        if finished:
            failures = self._render_failures.pop(campaign_id, Counter())
            detail = ", ".join(f"{n} {reason}" for reason, n in sorted(failures.items()))
            log.info(
                "campaign %d sent%s", campaign_id, f" (skipped here: {detail})" if detail else ""
            )
            self._launched.pop(campaign_id, None)
            self._resting.pop(campaign_id, None)


def _refusal(contact) -> str:  # type: ignore[no-untyped-def]
    """Why a contact (a `contacts` row, None when erased) gets no message now; "" if it does."""
    if contact is None:
        return "erased"
    if contact.blocked:
        return "blocked"
    if contact.unsubscribed_at is not None:
        return "unsubscribed"
    return ""


def _refused_now(conn: Connection, contact_ids: list[int | None]) -> dict[int, str]:
    """Of these contacts, those blocked or unsubscribed (or erased) as the write sees them."""
    wanted = {contact_id for contact_id in contact_ids if contact_id is not None}
    if not wanted:
        return {}
    found = {
        row.id: _refusal(row)
        for row in conn.execute(
            select(contacts.c.id, contacts.c.blocked, contacts.c.unsubscribed_at).where(
                contacts.c.id.in_(wanted)
            )
        )
    }
    reasons = {contact_id: found.get(contact_id, "erased") for contact_id in wanted}
    return {contact_id: reason for contact_id, reason in reasons.items() if reason}
