"""Launching a campaign against a real SQLite file: the snapshot (every skip reason,
seq, part and release time), the gate and DMARC refusals that leave a draft and no
row, an empty audience, and the launched campaign's settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from tests.unit.campaign.campaign_world import (
    SEND_ONLY,
    STRICT_DMARC,
    CampaignWorld,
)

from postroom.campaign.drafts import Campaigns
from postroom.campaign.launch import LaunchError
from postroom.campaign.templates import source_from_snapshot
from postroom.db.models import campaign_recipients, campaigns


@pytest.fixture
def world(tmp_path: Path) -> CampaignWorld:
    return CampaignWorld(tmp_path)


def recipient_rows(world: CampaignWorld) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(campaign_recipients)).scalar())


def test_the_snapshot_has_one_row_per_contact_with_its_reason(world: CampaignWorld) -> None:
    world.contact("ann@gmail.com")
    world.contact("blocked@shop.test", blocked=True)
    world.contact("gone@shop.test", unsubscribed=True)
    world.contact("bad..dots@shop.test")
    world.contact("a.n.n+tag@gmail.com")  # Ann's mailbox again
    world.contact("nameless@shop.test", first_name=None)  # the template needs first_name
    world.contact("bob@shop.test")
    world.contact("other@shop.test", list_name="elsewhere")  # not in the audience
    campaign_id = world.draft()
    launched = world.launch(campaign_id)
    rows = world.rows(campaign_id)
    assert [(row.seq, row.address, row.state, row.reason) for row in rows] == [
        (0, "ann@gmail.com", "pending", ""),
        (1, "blocked@shop.test", "skipped", "blocked"),
        (2, "gone@shop.test", "skipped", "unsubscribed"),
        (3, "bad..dots@shop.test", "skipped", "invalid"),
        (4, "a.n.n+tag@gmail.com", "skipped", "duplicate"),
        (5, "nameless@shop.test", "skipped", "undefined_variable"),
        (6, "bob@shop.test", "pending", ""),
    ]
    assert all(row.contact_id is not None for row in rows)
    assert {(row.part, row.release_at) for row in rows} == {(0, world.clock.now)}
    assert launched.skipped == {
        "blocked": 1,
        "unsubscribed": 1,
        "invalid": 1,
        "duplicate": 1,
        "undefined_variable": 1,
    }
    assert (launched.recipients, launched.matched, launched.state) == (2, 7, "sending")


def test_a_contact_lacking_a_variable_does_not_hide_a_later_one_of_its_mailbox(
    world: CampaignWorld,
) -> None:
    world.contact("ann@gmail.com", first_name=None)
    world.contact("a.nn@gmail.com")
    campaign_id = world.draft()
    world.launch(campaign_id)
    assert [(row.state, row.reason) for row in world.rows(campaign_id)] == [
        ("skipped", "undefined_variable"),
        ("pending", ""),
    ]


def test_release_times_follow_the_interval_and_the_parts(world: CampaignWorld) -> None:
    world.contact("skipped@shop.test", blocked=True)
    for index in range(7):
        world.contact(f"c{index}@shop.test")
    start = world.clock.now + 3600
    iso = datetime.fromtimestamp(start, UTC).isoformat()
    campaign_id = world.draft()
    launched = world.launch(campaign_id, at=iso, interval="2s", parts=3, part_gap="10m")
    assert (launched.state, launched.part_size, launched.parts) == ("scheduled", 3, 3)
    pending = [row for row in world.rows(campaign_id) if row.state == "pending"]
    # k = 0..6 in parts of 3: part k // 3, release start + part * 600 + (k % 3) * 2.
    assert [(row.part, row.release_at - start) for row in pending] == [
        (0, 0), (0, 2), (0, 4), (1, 600), (1, 602), (1, 604), (2, 1200),
    ]  # fmt: skip
    [skipped] = [row for row in world.rows(campaign_id) if row.state == "skipped"]
    assert (skipped.seq, skipped.part, skipped.release_at) == (0, 0, start)


def test_without_parts_every_recipient_is_one_interval_after_the_last(
    world: CampaignWorld,
) -> None:
    for index in range(4):
        world.contact(f"c{index}@shop.test")
    campaign_id = world.draft()
    launched = world.launch(campaign_id, interval="1.5s", pool="default", from_name="Spring")
    now = world.clock.now
    assert [(row.part, row.release_at - now) for row in world.rows(campaign_id)] == [
        (0, 0), (0, 1.5), (0, 3.0), (0, 4.5),
    ]  # fmt: skip
    assert (launched.parts, launched.part_size) == (1, None)
    with world.engine.connect() as conn:
        stored = conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one()
    assert (stored.state, stored.launched_at, stored.start_at) == ("sending", now, now)
    assert (stored.interval_s, stored.part_size, stored.part_gap_s) == (1.5, None, 0)
    assert (stored.pool, stored.from_name, stored.history) == ("default", "Spring", 1)
    assert source_from_snapshot(stored.content).subject == "Hello {{ contact.first_name }}"
    assert json.loads(stored.content)["html"].startswith("<p>Hi")


def test_the_gate_refuses_a_low_rated_audience_and_leaves_a_draft(world: CampaignWorld) -> None:
    world.contact("good@shop.test")  # 10
    for index in range(3):
        world.contact(f"low{index}@shop.test", rating=3)
    world.contact("blocked@shop.test", blocked=True)
    campaign_id = world.draft()
    with pytest.raises(LaunchError) as refused:
        world.launch(campaign_id)
    message = str(refused.value)
    assert refused.value.refused
    assert message.startswith(
        f"campaign {campaign_id} not launched: average rating 5.80 is below 6"
    )
    assert "1 blocked (20%) and 3 rated below 6 (60%) of 5 drag it down" in message
    assert Campaigns(world.engine).get(campaign_id).state == "draft"
    assert recipient_rows(world) == 0
    # Rated up, the same draft launches.
    for index in range(3):
        world.contacts.set_rating("acme", f"low{index}@shop.test", 8)
    assert world.launch(campaign_id).recipients == 4


def test_nobody_to_send_to_is_refused(world: CampaignWorld) -> None:
    world.contact("blocked@shop.test", blocked=True)
    world.contact("gone@shop.test", unsubscribed=True, rating=9)
    campaign_id = world.draft()
    with pytest.raises(LaunchError) as refused:
        world.launch(campaign_id)
    assert refused.value.refused
    assert str(refused.value) == (
        f"campaign {campaign_id} not launched: nobody to send to (2 matched contact(s); "
        "skipped: 1 blocked, 1 unsubscribed)"
    )
    empty = world.draft(audience=world_list("nobody-here", world))
    with pytest.raises(LaunchError, match=r"nobody to send to \(0 matched contact\(s\)\)"):
        world.launch(empty)
    assert recipient_rows(world) == 0


def world_list(name: str, world: CampaignWorld):  # type: ignore[no-untyped-def]
    from postroom.campaign.audience import AudienceFilter
    from postroom.campaign.lists import create_list

    create_list(world.engine, "acme", name)
    return AudienceFilter(lists=(name,))


def test_a_send_only_sender_under_a_strict_dmarc_policy_needs_the_override(
    world: CampaignWorld,
) -> None:
    world.contact("ann@shop.test")
    campaign_id = world.draft(sender=SEND_ONLY)
    with pytest.raises(LaunchError) as refused:
        world.launch(campaign_id, dmarc_risk=STRICT_DMARC)
    assert refused.value.refused and STRICT_DMARC in str(refused.value)
    assert "--allow-send-only-dmarc" in str(refused.value)
    assert world.dmarc_lookups == [SEND_ONLY]
    assert Campaigns(world.engine).get(campaign_id).state == "draft" and not recipient_rows(world)
    # A lax policy, or the operator's override, lets it go.
    assert world.launch(campaign_id, dmarc_risk=None).recipients == 1
    second = world.draft(sender=SEND_ONLY)
    world.launch(second, dmarc_risk=STRICT_DMARC, allow_send_only_dmarc=True)
    assert world.dmarc_lookups == [SEND_ONLY, SEND_ONLY]  # the override looks nothing up
    # A two-way sender (its domain verified in the project) is never looked up.
    world.launch(world.draft(), dmarc_risk=STRICT_DMARC)
    assert len(world.dmarc_lookups) == 2


def test_only_a_draft_launches(world: CampaignWorld) -> None:
    world.contact("ann@shop.test")
    campaign_id = world.draft()
    world.launch(campaign_id)
    with pytest.raises(LaunchError) as refused:
        world.launch(campaign_id)
    assert not refused.value.refused
    assert str(refused.value).startswith(f"campaign {campaign_id} is sending: only a draft")
    with pytest.raises(LaunchError, match="no campaign 999"):
        world.launch(999)
    with world.engine.begin() as conn:
        conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(state="sent"))
    assert len(world.rows(campaign_id)) == 1
