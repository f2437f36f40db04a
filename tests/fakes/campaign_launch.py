"""A stand-in for `campaign launch` in the producer's tests: the audience snapshot of design15.

`snapshot_launch(engine, campaign_id, start_at=..., ...)` writes what launch writes,
in one transaction: one `campaign_recipients` row per contact the audience matches,
in contact id order, `seq` 0, 1, 2 ... over all rows; blocked and unsubscribed
contacts `skipped` with that reason (part 0, release = start); the others `pending`,
numbered k = 0, 1, ... among themselves, part(k) = k // part_size and
release_at(k) = start + part(k) * part_gap + (k - part(k) * part_size) * interval;
and the campaign's launch columns (state `scheduled` when start is ahead, else
`sending`; the template's content snapshot). No gate, no address validation: the
producer's tests are about what happens after launch. Returns the pending count.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, update

from postroom.campaign.audience import audience_query
from postroom.campaign.drafts import load
from postroom.campaign.templates import Templates, source_snapshot
from postroom.db.models import CampaignState, RecipientState, campaign_recipients, campaigns


def snapshot_launch(
    engine: Engine,
    campaign_id: int,
    *,
    start_at: float | None = None,
    interval_s: float = 0.0,
    part_size: int | None = None,
    part_gap_s: float = 0.0,
    pool: str = "mailings",
    from_name: str | None = None,
    history: bool = True,
) -> int:
    now = time.time()
    start = now if start_at is None else start_at
    with engine.begin() as conn:
        campaign = load(conn, campaign_id)
        assert campaign.template_id is not None
        source = Templates(engine).get_by_id(campaign.template_id).source
        rows = []
        pending = 0
        for seq, contact in enumerate(
            conn.execute(
                audience_query(conn, campaign.project_id, campaign.audience).order_by("id")
            )
        ):
            row = {
                "campaign_id": campaign_id,
                "contact_id": contact.id,
                "address": contact.address,
                "seq": seq,
                "part": 0,
                "release_at": start,
                "updated_at": now,
            }
            if contact.blocked or contact.unsubscribed_at is not None:
                reason = "blocked" if contact.blocked else "unsubscribed"
                rows.append({**row, "state": RecipientState.SKIPPED.value, "reason": reason})
                continue
            size = part_size or 1 << 62
            part = pending // size
            release = start + part * part_gap_s + (pending - part * size) * interval_s
            rows.append(
                {**row, "state": RecipientState.PENDING.value, "part": part, "release_at": release}
            )
            pending += 1
        if rows:
            conn.execute(insert(campaign_recipients), rows)
        conn.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id)
            .values(
                state=CampaignState.SCHEDULED.value if start > now else CampaignState.SENDING.value,
                launched_at=now,
                start_at=start,
                interval_s=interval_s,
                part_size=part_size,
                part_gap_s=part_gap_s,
                pool=pool,
                from_name=from_name,
                history=int(history),
                content=source_snapshot(source),
                updated_at=now,
            )
        )
    return pending
