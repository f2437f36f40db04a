"""Launching a campaign: the audience snapshot, the rating gate, the sending settings.

`launch(engine, config, campaign_id, settings, validator)` turns a draft into
a scheduled (start ahead) or sending (start now) campaign, or refuses:
- `LaunchError(refused=False)` (exit 2): no such campaign, not a draft, a
  sender no longer confirmed, a template that no longer compiles;
- `LaunchError(refused=True)` (exit 1, "the answer is no"): nobody to send to
  (every matched contact skipped, or none matched); the audience's average
  rating below `[rating] campaign_minimum` (the message says the average and
  which share — blocked, low-rated — drags it down); a send-only sender whose
  domain publishes DMARC p=reject/quarantine (`sender_reach.dmarc_risk`,
  looked up before anything is written) unless `allow_send_only_dmarc`.
A refusal changes nothing: the campaign stays a draft with no recipient row.

The launch is ONE write transaction (`db.engine.write_transaction`: safe beside
running serve workers on SQLite):
1. the audience is walked as `campaign audience` walks it
   (`audience_report.classified`, contact id order) with the variables the
   compiled template needs without a default; every matched contact becomes one
   `campaign_recipients` row, `seq` 0, 1, 2, ...: `pending`, or `skipped` with
   its reason (blocked, unsubscribed, invalid, duplicate, undefined_variable;
   part 0, released at the start). Rows are inserted `INSERT_BATCH_ROWS` at a
   time as the walk goes: memory does not grow with the audience. A pending row
   holds its pending ordinal k (0, 1, 2 ... over pending rows only) in `part`
   until step 3.
2. the gate (`GateTally`, the rule of `campaign audience`) on that walk;
3. one UPDATE gives each pending row its part and release time from k: with
   parts of P recipients (`--part-size P`, or P = ceil(pending / N) for
   `--parts N`), part(k) = k // P and
   `release_at = start + part(k) * part_gap + (k - part(k) * P) * interval`;
   without parts, part 0 and `release_at = start + k * interval`;
4. the campaign row gets its settings, the template's content as sent
   (`templates.source_snapshot`), `launched_at` and its state — only if it is
   still a draft (a concurrent launch finds it launched and rolls back).
The producer in `serve` takes it from there (pending rows → queued).

Config keys: [rating] campaign_minimum; [dns] (the DMARC lookup); the settings'
keys through `launch_settings.SendingSettings`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, literal, update

from postroom.campaign.addresses.validator import Validator
from postroom.campaign.audience_report import GateTally, classified
from postroom.campaign.compose import campaign_template
from postroom.campaign.drafts import Campaign, CampaignError, load
from postroom.campaign.launch_settings import SendingSettings
from postroom.campaign.sender_reach import SenderMode, dmarc_risk
from postroom.campaign.senders import SenderError, require_confirmed
from postroom.campaign.skip_reasons import SNAPSHOT_SKIP_REASONS
from postroom.campaign.templates import source_snapshot
from postroom.config.schema import Config
from postroom.db.engine import write_transaction
from postroom.db.models import CampaignState, RecipientState, campaign_recipients, campaigns
from postroom.rating.rules import GateResult

INSERT_BATCH_ROWS = 1000
_INSERT_ROW = insert(campaign_recipients)

DmarcCheck = Callable[[Config, str], "str | None"]
"""(config, sender address) → why its mail fails DMARC at receivers, or None."""


class LaunchError(Exception):
    """A launch that did not happen; nothing was written. `refused`: the answer is no
    (exit 1: the gate, DMARC, nobody to send to); otherwise bad input or state (exit 2)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


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
    with engine.connect() as conn:
        campaign = _draft(conn, campaign_id)
        try:
            sender = require_confirmed(conn, campaign.project_id, campaign.sender)
        except SenderError as error:
            raise LaunchError(f"campaign {campaign_id}: {error}") from None
    try:
        template = campaign_template(engine, campaign)
    except CampaignError as error:
        raise LaunchError(str(error)) from None
    if sender.mode is SenderMode.SEND_ONLY and not settings.allow_send_only_dmarc:
        # DNS before the transaction: no lookup ever holds the write lock.
        risk = dmarc_check(config, sender.address)
        if risk is not None:
            raise LaunchError(
                f"campaign {campaign_id} not launched: sender {sender.address} is send-only "
                f"and {risk} (--allow-send-only-dmarc launches it anyway)",
                refused=True,
            )
    now = clock()
    start = max(settings.start_at or now, now)
    skipped = dict.fromkeys(SNAPSHOT_SKIP_REASONS, 0)
    with write_transaction(engine) as conn:
        campaign = _draft(conn, campaign_id)
        tally = GateTally()
        walk = _snapshot(
            conn, campaign, validator, template.contact_variables(), start, now, tally, skipped
        )
        if walk.pending == 0:
            reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.items() if count)
            raise LaunchError(
                f"campaign {campaign_id} not launched: nobody to send to ({walk.matched} "
                f"matched contact(s)" + (f"; skipped: {reasons})" if reasons else ")"),
                refused=True,
            )
        verdict = tally.verdict(config.rating)
        if not verdict.allowed:
            raise LaunchError(
                f"campaign {campaign_id} not launched: {verdict.message}", refused=True
            )
        part_size = settings.part_size
        if settings.parts is not None:
            part_size = math.ceil(walk.pending / settings.parts)
        _release(conn, campaign_id, start, settings, part_size)
        state = CampaignState.SCHEDULED if start > now else CampaignState.SENDING
        launched = conn.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id, campaigns.c.state == CampaignState.DRAFT.value)
            .values(
                state=state.value,
                launched_at=now,
                start_at=start,
                interval_s=settings.interval_s,
                part_size=part_size,
                part_gap_s=settings.part_gap_s,
                pool=settings.pool,
                from_name=settings.from_name,
                history=int(settings.history),
                content=source_snapshot(template.source),
                updated_at=now,
            )
        ).rowcount
        if not launched:
            raise LaunchError(f"campaign {campaign_id} was launched meanwhile")
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
    )


def _draft(conn: Connection, campaign_id: int) -> Campaign:
    try:
        campaign = load(conn, campaign_id)
    except CampaignError as error:
        raise LaunchError(str(error)) from None
    if campaign.state != CampaignState.DRAFT:
        raise LaunchError(
            f"campaign {campaign_id} is {campaign.state}: only a draft is launched "
            "(campaign copy makes a new draft from it)"
        )
    return campaign


def _snapshot(
    conn: Connection,
    campaign: Campaign,
    validator: Validator,
    required_variables: frozenset[str],
    start: float,
    now: float,
    tally: GateTally,
    skipped: dict[str, int],
) -> _Walk:
    """Step 1: one row per matched contact, inserted a batch at a time as the walk goes."""
    walk = _Walk()
    batch: list[dict[str, Any]] = []
    contacts = classified(
        conn, campaign.project_id, campaign.audience, validator,
        required_variables=required_variables,
    )  # fmt: skip
    for seq, (row, reason) in enumerate(contacts):
        tally.count(row.rating, reason)
        if reason is None:
            state, ordinal = RecipientState.PENDING, walk.pending
            walk.pending += 1
        else:
            state, ordinal = RecipientState.SKIPPED, 0
            skipped[reason] += 1
        batch.append(
            {
                "campaign_id": campaign.id,
                "contact_id": row.id,
                "address": row.address,
                "seq": seq,
                "part": ordinal,  # the pending ordinal k until `_release`
                "state": state.value,
                "reason": reason or "",
                "release_at": start,
                "updated_at": now,
            }
        )
        if len(batch) >= INSERT_BATCH_ROWS:
            conn.execute(_INSERT_ROW, batch)
            batch = []
        walk.matched = seq + 1
    if batch:
        conn.execute(_INSERT_ROW, batch)
    return walk


def _release(
    conn: Connection,
    campaign_id: int,
    start: float,
    settings: SendingSettings,
    part_size: int | None,
) -> None:
    """Step 3: every pending row's part and release time from its ordinal (in `part`).
    The SET expressions all read the row as it was: `part` is still k in each."""
    ordinal = campaign_recipients.c.part
    if part_size is None:
        part: Any = literal(0)
        position: Any = ordinal
    else:
        part = ordinal // part_size
        position = ordinal - part * part_size
    conn.execute(
        update(campaign_recipients)
        .where(
            campaign_recipients.c.campaign_id == campaign_id,
            campaign_recipients.c.state == RecipientState.PENDING.value,
        )
        .values(
            part=part,
            release_at=start + part * settings.part_gap_s + position * settings.interval_s,
        )
    )
