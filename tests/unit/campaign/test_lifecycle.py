"""Pause, resume, cancel and an unsubscribe against a launched campaign whose first
messages a stand-in producer queued (`CampaignWorld.produce`), on SQLite: held
deliveries, release times shifted by the pause, waiting messages removed (and their
bytes), those in flight or done untouched; the status counts by SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from tests.unit.campaign.campaign_world import CampaignWorld

from postroom.campaign.lifecycle import LifecycleError, cancel, pause, resume
from postroom.campaign.status import campaign_status, progress_line
from postroom.campaign.unsubscribe import UnsubscribeClaim, unsubscribe
from postroom.db.models import campaign_sends, contact_events, messages
from postroom.mta.queue.admin import QueueAdmin
from postroom.rating.contacts import contact_id_of

CONTACTS = 6


def seeded(world: CampaignWorld) -> CampaignWorld:
    """CONTACTS customers and a blocked one (the PostgreSQL run seeds its world so too)."""
    for index in range(CONTACTS):
        world.contact(f"c{index}@shop.test")
    world.contact("blocked@shop.test", blocked=True)
    return world


@pytest.fixture
def world(tmp_path: Path) -> CampaignWorld:
    return seeded(CampaignWorld(tmp_path))


def launched(world: CampaignWorld) -> tuple[int, list[str]]:
    """A campaign 10 s apart; c0 delivered, c1 in flight, c2 deferred, c3 queued;
    c4 and c5 still pending."""
    campaign_id = world.draft()
    world.launch(campaign_id, interval="10s")
    states = ("delivered", "inflight", "deferred", "queued")
    return campaign_id, [world.produce(campaign_id, seq, state) for seq, state in enumerate(states)]


def states_of(world: CampaignWorld, campaign_id: int) -> list[tuple[str, str]]:
    return [(row.state, row.reason) for row in world.rows(campaign_id)]


def test_pause_holds_what_waits_and_resume_shifts_it_by_the_pause(world: CampaignWorld) -> None:
    campaign_id, queue_ids = launched(world)
    start = world.clock.now
    world.clock.now += 5
    paused = pause(world.engine, campaign_id, clock=world.clock)
    assert paused.held == 2  # deferred and queued; not in flight, not delivered
    assert [world.delivery(q).state for q in queue_ids] == [
        "delivered", "inflight", "held", "held",
    ]  # fmt: skip
    with pytest.raises(LifecycleError, match="is paused: only a scheduled or sending campaign"):
        pause(world.engine, campaign_id)
    world.clock.now += 100  # paused for 100 s
    resumed = resume(world.engine, campaign_id, clock=world.clock)
    assert (resumed.state, resumed.shift_s, resumed.released) == ("sending", 100, 2)
    assert [world.delivery(q).state for q in queue_ids[2:]] == ["queued", "queued"]
    assert [world.delivery(q).next_attempt_at - start for q in queue_ids[2:]] == [120, 130]
    pending = [row.release_at - start for row in world.rows(campaign_id) if row.state == "pending"]
    assert pending == [140, 150]
    with pytest.raises(LifecycleError, match="is sending: only a paused campaign is resumed"):
        resume(world.engine, campaign_id)


def test_resume_releases_only_what_its_pause_held(world: CampaignWorld) -> None:
    campaign_id, queue_ids = launched(world)  # c2 deferred, c3 queued
    operator = QueueAdmin(world.engine)
    assert operator.hold(queue_ids[3]) == 1  # held by hand before the pause
    assert pause(world.engine, campaign_id, clock=world.clock).held == 1
    assert resume(world.engine, campaign_id, clock=world.clock).released == 1
    assert [world.delivery(q).state for q in queue_ids[2:]] == ["queued", "held"]
    # Held by the pause, then by hand: the operator's hold wins over the resume.
    pause(world.engine, campaign_id, clock=world.clock)
    assert operator.hold(queue_ids[2]) == 1
    assert resume(world.engine, campaign_id, clock=world.clock).released == 0
    assert [world.delivery(q).state for q in queue_ids[2:]] == ["held", "held"]
    assert operator.release(queue_ids[2]) == 1
    assert world.delivery(queue_ids[2]).state == "queued"


def test_a_campaign_paused_before_its_start_starts_later(world: CampaignWorld) -> None:
    campaign_id = world.draft()
    start = world.clock.now + 86400
    world.launch(campaign_id, at=datetime.fromtimestamp(start, UTC).isoformat())
    pause(world.engine, campaign_id, clock=world.clock)
    world.clock.now += 60
    assert resume(world.engine, campaign_id, clock=world.clock).state == "scheduled"
    assert campaign_status_of(world, campaign_id)["start_at"] == start + 60
    assert world.rows(campaign_id)[0].release_at == start + 60


def campaign_status_of(world: CampaignWorld, campaign_id: int) -> dict[str, object]:
    with world.engine.connect() as conn:
        return campaign_status(conn, campaign_id).as_json()


def test_cancel_removes_what_waits_and_keeps_what_left(world: CampaignWorld) -> None:
    campaign_id, queue_ids = launched(world)
    with world.engine.begin() as conn:
        for queue_id in queue_ids:
            conn.execute(
                insert(campaign_sends).values(
                    campaign_id=campaign_id, contact_id=None, recipient="x@shop.test",
                    kind="campaign", subject="s", message_id=queue_id, created_at=1.0,
                )
            )  # fmt: skip
    pause(world.engine, campaign_id, clock=world.clock)  # the held ones go too
    done = cancel(world.engine, campaign_id, clock=world.clock)
    assert (done.removed, done.cancelled) == (2, 4)
    assert states_of(world, campaign_id) == [
        ("queued", ""), ("queued", ""), ("cancelled", ""), ("cancelled", ""),
        ("cancelled", ""), ("cancelled", ""), ("skipped", "blocked"),
    ]  # fmt: skip
    assert [world.delivery(q) is not None for q in queue_ids] == [True, True, False, False]
    with world.engine.connect() as conn:
        kept = conn.execute(select(messages.c.id).order_by(messages.c.id)).scalars().all()
        history = conn.execute(select(campaign_sends.c.message_id)).scalars().all()
    assert set(queue_ids[:2]) <= set(kept) and not set(queue_ids[2:]) & set(kept)
    assert sorted(history) == sorted(queue_ids[:2])
    status = campaign_status_of(world, campaign_id)
    assert (status["state"], status["queued"], status["cancelled"], status["pending"]) == (
        "cancelled", 2, 4, 0,
    )  # fmt: skip
    with pytest.raises(LifecycleError, match="is cancelled: only a scheduled, sending or paused"):
        cancel(world.engine, campaign_id)
    with pytest.raises(LifecycleError, match="no campaign 999"):
        cancel(world.engine, 999)
    draft = world.draft()
    with pytest.raises(LifecycleError, match=f"campaign {draft} is draft"):
        pause(world.engine, draft)


def test_the_status_counts_rows_deliveries_and_events(world: CampaignWorld) -> None:
    campaign_id, queue_ids = launched(world)
    with world.engine.begin() as conn:
        project_id = world.project_id("acme", conn)
        c0 = contact_id_of(conn, project_id, "c0@shop.test")
        c1 = contact_id_of(conn, project_id, "c1@shop.test")
        event = {"created_at": 1.0, "new_rating": 1, "blocked": 1, "reason": "",
                 "campaign_id": None, "message_id": None}  # fmt: skip
        conn.execute(
            insert(contact_events),
            [
                # Named by the campaign, or (before the observer names it) by its message.
                {**event, "contact_id": c0, "kind": "bounced", "reason": "baduser",
                 "campaign_id": campaign_id},
                {**event, "contact_id": c1, "kind": "bounced", "reason": "baduser",
                 "message_id": queue_ids[1]},
                {**event, "contact_id": c1, "kind": "bounced", "reason": "mailboxfull",
                 "message_id": queue_ids[1]},
                {**event, "contact_id": c0, "kind": "complained", "campaign_id": campaign_id},
                # Another campaign's or nobody's: not counted.
                {**event, "contact_id": c0, "kind": "bounced", "reason": "baduser",
                 "message_id": "elsewhere"},
                {**event, "contact_id": c0, "kind": "set", "campaign_id": campaign_id},
            ],
        )  # fmt: skip
    status = campaign_status_of(world, campaign_id)
    assert status == status | {
        "id": campaign_id,
        "state": "sending",
        "audience": CONTACTS,
        "skipped": {
            "blocked": 1, "unsubscribed": 0, "invalid": 0, "duplicate": 0,
            "undefined_variable": 0,
        },
        "queued": 4,
        "delivered": 1,
        "deferred": 1,
        "bounced": {"baduser": 2, "mailboxfull": 1},
        "complaints": 1,
        "unsubscribed": 0,
        "pending": 2,
        "waiting": 2,
        "interval_s": 10.0,
    }  # fmt: skip
    with world.engine.connect() as conn:
        line = progress_line(campaign_status(conn, campaign_id), width=12)
    assert line.startswith("[##..........]  17% 1/6 sent · 4 queued, 2 pending, 1 deferred")


def test_an_unsubscribe_stops_the_contacts_mail_not_sent_yet(world: CampaignWorld) -> None:
    campaign_id, queue_ids = launched(world)
    other = world.draft()
    world.launch(other)
    with world.engine.connect() as conn:
        project_id = world.project_id("acme", conn)
        ids = {n: contact_id_of(conn, project_id, f"c{n}@shop.test") for n in (1, 3, 4)}
    for number in (1, 3, 4):  # in flight, queued, pending
        claim = UnsubscribeClaim(project_id, ids[number], campaign_id)
        assert unsubscribe(world.engine, claim, "one-click", now=world.clock.now)
    assert states_of(world, campaign_id)[:6] == [
        ("queued", ""), ("queued", ""), ("queued", ""), ("skipped", "unsubscribed"),
        ("skipped", "unsubscribed"), ("pending", ""),
    ]  # fmt: skip
    assert world.delivery(queue_ids[1]).state == "inflight"  # already being handed over
    assert world.delivery(queue_ids[3]) is None
    # Its pending row in the project's other campaign is skipped too.
    assert [s for s in states_of(world, other) if s[1] == "unsubscribed"] == [
        ("skipped", "unsubscribed")
    ] * 3
    status = campaign_status_of(world, campaign_id)
    assert (status["unsubscribed"], status["skipped"]["unsubscribed"]) == (3, 2)  # type: ignore[index]
    with world.engine.begin() as conn:
        conn.execute(update(contact_events).values(campaign_id=None))
    assert campaign_status_of(world, campaign_id)["unsubscribed"] == 0
