"""Launching a campaign: the audience snapshot, the rating gate, the sending settings.

`launch(engine, config, campaign_id, settings, validator)` turns a draft into
a scheduled (start ahead) or sending (start now) campaign, or refuses:
- `LaunchError(refused=False)` (exit 2): no such campaign, not a draft, a
  launch of it under way (launch_lease.py), a sender no longer confirmed, a
  template that no longer compiles;
- `LaunchError(refused=True)` (exit 1, "the answer is no"): nobody to send to
  (every matched contact skipped, or none matched); the audience's average
  rating below `[rating] campaign_minimum` (the message says the average and
  which share — blocked, low-rated — drags it down); a send-only sender whose
  domain publishes DMARC p=reject/quarantine (`sender_reach.dmarc_risk`,
  looked up before the snapshot) unless `allow_send_only_dmarc`.
A refusal leaves the campaign a draft with no recipient row.

Other writers keep writing while the snapshot is taken: on SQLite the queue's
group commit (SMTP's 250, delivery results) needs the one write lock, so the
launch never holds it for more than one chunk of rows:
1. claim (one short write transaction, `LaunchLease.claim`): the draft becomes
   `launching`, owned by this process; the producer, pause/resume/cancel and
   edits leave a launching campaign alone. A `launching` campaign whose launch
   died (killed mid-way) is taken over: its rows are deleted, it starts over.
   Then the sender, the template and DMARC are checked, none under a lock.
2. the audience is walked as `campaign audience` walks it
   (`audience_report.classified`, contact id order, ONE read of a consistent
   snapshot of the contacts on its own connection) with the variables the
   compiled template needs without a default; every matched contact becomes one
   `campaign_recipients` row, `seq` 0, 1, 2, ...: `pending`, or `skipped` with
   its reason (blocked, unsubscribed, invalid, duplicate, undefined_variable;
   part 0, released at the start). Rows go in `CHUNK_ROWS` at a time, each
   chunk its own write transaction (`LaunchLease.owned_write`: the lease
   renewed, still ours): memory does not grow with the audience, and no lock
   is held while addresses are validated. The gate (`GateTally`, the rule of
   `campaign audience`) and the count of recipients are taken on the way.
3. each pending row's part and release time from its pending ordinal k (0, 1,
   2 ... over pending rows only): with parts of P recipients part(k) = k // P
   and `release_at = start + part(k) * part_gap + (k - part(k) * P) * interval`;
   without parts, part 0 and `release_at = start + k * interval`. Known as the
   rows are written, except with `--parts N` (P = ceil(recipients / N)): the
   rows then hold k in `part` and are placed afterwards, a chunk of seq per
   write transaction.
4. one short write transaction: the campaign row gets its settings, the
   template's content as sent (`templates.source_snapshot`), `launched_at`
   and its state. A refusal at step 2 (the gate, nobody to send to) or any
   error from step 1 on deletes the rows, a chunk per transaction, the last
   one putting the campaign back to `draft` (`LaunchLease.abandon`).
The producer in `serve` takes it from there (pending rows → queued).
`Launched.interrupted` names the dead launch this one started over, if any.

Config keys: [rating] campaign_minimum; [dns] (the DMARC lookup); the settings'
keys through `launch_settings.SendingSettings`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Engine, insert, update

from postroom.campaign.addresses.validator import Validator
from postroom.campaign.audience_report import GateTally, classified
from postroom.campaign.compose import campaign_template
from postroom.campaign.drafts import Campaign, CampaignError, load
from postroom.campaign.launch_lease import Launcher, LaunchError, LaunchLease
from postroom.campaign.launch_settings import SendingSettings
from postroom.campaign.render import TemplateSource
from postroom.campaign.sender_reach import SenderMode, dmarc_risk
from postroom.campaign.senders import SenderError, require_confirmed
from postroom.campaign.skip_reasons import SNAPSHOT_SKIP_REASONS
from postroom.campaign.templates import source_snapshot
from postroom.config.schema import Config
from postroom.db.models import CampaignState, RecipientState, campaign_recipients, campaigns
from postroom.rating.rules import GateResult

__all__ = ["CHUNK_ROWS", "LaunchError", "Launched", "launch"]

CHUNK_ROWS = 2000  # rows per write transaction: ~10 ms of the write lock on SQLite
_INSERT_ROW = insert(campaign_recipients)

DmarcCheck = Callable[[Config, str], "str | None"]
"""(config, sender address) → why its mail fails DMARC at receivers, or None."""

Placement = Callable[[int], tuple[int, float]]
"""Pending ordinal k → the (part, release_at) its row is written with."""


@dataclass(frozen=True, slots=True)
class Launched:
    id: int
    state: str
    start_at: float
    matched: int
    recipients: int
    skipped: dict[str, int]
    parts: int
    part_size: int | None
    settings: SendingSettings
    gate: GateResult
    interrupted: str | None = None  # the dead launch started over ("pid N on HOST")

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "start_at": self.start_at,
            "matched": self.matched,
            "audience": self.recipients,
            "skipped": dict(self.skipped),
            "parts": self.parts,
            "part_size": self.part_size,
            "part_gap_s": self.settings.part_gap_s,
            "interval_s": self.settings.interval_s,
            "pool": self.settings.pool,
            "from_name": self.settings.from_name,
            "history": self.settings.history,
            "average_rating": round(self.gate.average, 3),
        }


@dataclass(slots=True)
class _Walk:
    matched: int = 0
    pending: int = 0


def launch(
    engine: Engine,
    config: Config,
    campaign_id: int,
    settings: SendingSettings,
    validator: Validator,
    *,
    dmarc_check: DmarcCheck = dmarc_risk,
    clock: Callable[[], float] = time.time,
) -> Launched:
    lease = LaunchLease(engine, campaign_id, Launcher.this_process(), clock)
    interrupted = lease.claim()
    try:
        if interrupted is not None:
            lease.delete_rows()
        return _launch_claimed(engine, config, lease, settings, validator, dmarc_check, interrupted)
    except BaseException:  # Ctrl-C too: never a half-launched campaign left behind
        lease.abandon()
        raise


def _launch_claimed(
    engine: Engine,
    config: Config,
    lease: LaunchLease,
    settings: SendingSettings,
    validator: Validator,
    dmarc_check: DmarcCheck,
    interrupted: str | None,
) -> Launched:
    campaign_id = lease.campaign_id
    with engine.connect() as conn:
        try:
            campaign = load(conn, campaign_id)
        except CampaignError as error:
            raise LaunchError(str(error)) from None
        try:
            sender = require_confirmed(conn, campaign.project_id, campaign.sender)
        except SenderError as error:
            raise LaunchError(f"campaign {campaign_id}: {error}") from None
    try:
        template = campaign_template(engine, campaign)
    except CampaignError as error:
        raise LaunchError(str(error)) from None
    if sender.mode is SenderMode.SEND_ONLY and not settings.allow_send_only_dmarc:
        risk = dmarc_check(config, sender.address)
        if risk is not None:
            raise LaunchError(
                f"campaign {campaign_id} not launched: sender {sender.address} is send-only "
                f"and {risk} (--allow-send-only-dmarc launches it anyway)",
                refused=True,
            )
    now = lease.clock()
    start = max(settings.start_at or now, now)
    part_size = settings.part_size  # with --parts N: known once the recipients are counted
    place: Placement = (
        partial(_placement, start=start, settings=settings, part_size=part_size)
        if settings.parts is None
        else lambda ordinal: (ordinal, start)  # k waits in `part` (step 3)
    )
    tally = GateTally()
    skipped = dict.fromkeys(SNAPSHOT_SKIP_REASONS, 0)
    walk = _snapshot(
        engine, lease, campaign, validator, template.contact_variables(), place, now, tally,
        skipped,
    )  # fmt: skip
    if walk.pending == 0:
        reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
        raise LaunchError(
            f"campaign {campaign_id} not launched: nobody to send to ({walk.matched} "
            f"matched contact(s)" + (f"; skipped: {reasons})" if reasons else ")"),
            refused=True,
        )
    verdict = tally.verdict(config.rating)
    if not verdict.allowed:
        raise LaunchError(f"campaign {campaign_id} not launched: {verdict.message}", refused=True)
    if settings.parts is not None:
        part_size = math.ceil(walk.pending / settings.parts)
        _place_in_parts(lease, start, settings, part_size, walk.matched)
    state = CampaignState.SCHEDULED if start > now else CampaignState.SENDING
    _schedule(lease, state, now, start, settings, part_size, template.source)
    return Launched(
        id=campaign_id,
        state=state.value,
        start_at=start,
        matched=walk.matched,
        recipients=walk.pending,
        skipped=skipped,
        parts=1 if part_size is None else math.ceil(walk.pending / part_size),
        part_size=part_size,
        settings=settings,
        gate=verdict,
        interrupted=interrupted,
    )


def _snapshot(
    engine: Engine,
    lease: LaunchLease,
    campaign: Campaign,
    validator: Validator,
    required_variables: frozenset[str],
    place: Placement,
    now: float,
    tally: GateTally,
    skipped: dict[str, int],
) -> _Walk:
    """Step 2: one row per matched contact, a chunk per write transaction as the walk goes."""
    walk = _Walk()
    chunk: list[dict[str, Any]] = []
    pending, skipped_state = RecipientState.PENDING.value, RecipientState.SKIPPED.value
    skipped_place = place(0)  # a skipped row: part 0, released at the start
    with engine.connect() as reader:
        contacts = classified(
            reader, campaign.project_id, campaign.audience, validator,
            required_variables=required_variables,
        )  # fmt: skip
        for seq, (row, reason) in enumerate(contacts):
            tally.count(row.rating, reason)
            if reason is None:
                state, (part, release_at) = pending, place(walk.pending)
                walk.pending += 1
            else:
                state, (part, release_at) = skipped_state, skipped_place
                skipped[reason] += 1
            chunk.append(
                {
                    "campaign_id": campaign.id,
                    "contact_id": row.id,
                    "address": row.address,
                    "seq": seq,
                    "part": part,
                    "state": state,
                    "reason": reason or "",
                    "release_at": release_at,
                    "updated_at": now,
                }
            )
            if len(chunk) >= CHUNK_ROWS:
                _write(lease, chunk)
                chunk = []
            walk.matched = seq + 1
    if chunk:
        _write(lease, chunk)
    return walk


def _write(lease: LaunchLease, chunk: list[dict[str, Any]]) -> None:
    with lease.owned_write() as conn:
        conn.execute(_INSERT_ROW, chunk)


def _placement(
    ordinal: Any, start: float, settings: SendingSettings, part_size: int | None
) -> tuple[Any, Any]:
    """Step 3's rule for pending ordinal k: a Python int, or the SQL column holding it
    (the same arithmetic; integer division in both)."""
    if part_size is None:
        return 0, start + ordinal * settings.interval_s
    part = ordinal // part_size
    return part, start + part * settings.part_gap_s + (ordinal - part * part_size) * (
        settings.interval_s
    )


def _place_in_parts(
    lease: LaunchLease, start: float, settings: SendingSettings, part_size: int, rows: int
) -> None:
    """Step 3 with `--parts N`: every pending row placed from the ordinal in `part`, a
    chunk of seq per write. The SET expressions all read the row as it was."""
    part, release_at = _placement(campaign_recipients.c.part, start, settings, part_size)
    for first in range(0, rows, CHUNK_ROWS):
        with lease.owned_write() as conn:
            conn.execute(
                update(campaign_recipients)
                .where(
                    campaign_recipients.c.campaign_id == lease.campaign_id,
                    campaign_recipients.c.seq >= first,
                    campaign_recipients.c.seq < first + CHUNK_ROWS,
                    campaign_recipients.c.state == RecipientState.PENDING.value,
                )
                .values(part=part, release_at=release_at)
            )


def _schedule(
    lease: LaunchLease,
    state: CampaignState,
    now: float,
    start: float,
    settings: SendingSettings,
    part_size: int | None,
    source: TemplateSource,
) -> None:
    """Step 4: the campaign is launched, in one short write."""
    with lease.owned_write() as conn:
        conn.execute(
            update(campaigns)
            .where(campaigns.c.id == lease.campaign_id)
            .values(
                state=state.value,
                launch_owner=None,
                launch_lease_until=None,
                launched_at=now,
                start_at=start,
                interval_s=settings.interval_s,
                part_size=part_size,
                part_gap_s=settings.part_gap_s,
                pool=settings.pool,
                from_name=settings.from_name,
                history=int(settings.history),
                content=source_snapshot(source),
                updated_at=now,
            )
        )
