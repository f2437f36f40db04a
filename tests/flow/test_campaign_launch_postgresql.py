"""The launch's SQL on a real PostgreSQL: the snapshot (chunks of two rows, each its
own transaction, while the audience is read through a server-side cursor on another
connection; `--parts` placed by chunked UPDATEs with integer division), the gate's
refusal deleting the rows, pause/resume/cancel, the status aggregates and an
unsubscribe — the same cases as the SQLite unit tests, each on a fresh database of the
suite's PostgreSQL; the launch's lease (test_launch_chunks: killed mid-way and started
over, alive elsewhere, taken over, two launches at once). And the races SQLite cannot
have (it runs writers one at a time): a cancel racing a delivery engine's claim, a
pause racing a producer's commit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, select, text, update
from tests.peers.postgres import PostgresServer
from tests.unit.campaign import test_launch, test_launch_chunks, test_lifecycle
from tests.unit.campaign.campaign_world import SENDER, CampaignWorld

from postroom.campaign.lifecycle import cancel, pause
from postroom.db.models import MessageOrigin, campaign_recipients, campaigns, deliveries
from postroom.mta.queue.outbox import store_queued

pytestmark = pytest.mark.flow

Case = Callable[[CampaignWorld], None]
LAUNCH_CASES: list[Case] = [
    test_launch.test_the_snapshot_has_one_row_per_contact_with_its_reason,
    test_launch.test_release_times_follow_the_interval_and_the_parts,
    test_launch.test_without_parts_every_recipient_is_one_interval_after_the_last,
    test_launch.test_the_gate_refuses_a_low_rated_audience_and_leaves_a_draft,
]
LEASE_CASES: list[Callable[[CampaignWorld, pytest.MonkeyPatch], None]] = [
    test_launch_chunks.test_each_chunk_is_committed_while_the_campaign_is_launching,
    test_launch_chunks.error_between_chunks,
    test_launch_chunks.test_a_launch_killed_mid_way_is_started_over_by_the_next,
    test_launch_chunks.test_a_second_launch_while_the_first_runs_is_refused,
    test_launch_chunks.test_a_launch_that_lost_its_campaign_writes_nothing_more,
]
LIFECYCLE_CASES: list[Case] = [
    test_lifecycle.test_pause_holds_what_waits_and_resume_shifts_it_by_the_pause,
    test_lifecycle.test_cancel_removes_what_waits_and_keeps_what_left,
    test_lifecycle.test_the_status_counts_rows_deliveries_and_events,
    test_lifecycle.test_an_unsubscribe_stops_the_contacts_mail_not_sent_yet,
]


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"launch_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    yield make_url(postgres_server.url).set(database=name).render_as_string(hide_password=False)


@pytest.mark.parametrize("case", LAUNCH_CASES, ids=lambda case: case.__name__)
def test_launch_on_postgresql(
    case: Case, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_launch_chunks.chunked(monkeypatch, 2)
    world = CampaignWorld(tmp_path, database_url)
    try:
        case(world)
    finally:
        world.engine.dispose()


@pytest.mark.parametrize("case", LEASE_CASES, ids=lambda case: case.__name__)
def test_launch_lease_on_postgresql(
    case: Callable[[CampaignWorld, pytest.MonkeyPatch], None],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = test_launch_chunks.populated(CampaignWorld(tmp_path, database_url))
    try:
        case(world, monkeypatch)
    finally:
        world.engine.dispose()


@pytest.mark.parametrize(
    "case",
    [
        test_launch_chunks.test_a_launch_alive_elsewhere_is_refused_until_its_lease_runs_out,
        test_launch_chunks.test_of_two_concurrent_launches_one_writes_the_rows,
    ],
    ids=lambda case: case.__name__,
)
def test_launch_claims_on_postgresql(case: Case, database_url: str, tmp_path: Path) -> None:
    world = test_launch_chunks.populated(CampaignWorld(tmp_path, database_url))
    try:
        case(world)
    finally:
        world.engine.dispose()


@pytest.mark.parametrize("case", LIFECYCLE_CASES, ids=lambda case: case.__name__)
def test_lifecycle_on_postgresql(case: Case, database_url: str, tmp_path: Path) -> None:
    world = test_lifecycle.seeded(CampaignWorld(tmp_path, database_url))
    try:
        case(world)
    finally:
        world.engine.dispose()


BLOCKED_S = 0.5  # long enough for the other transaction to reach the lock it waits on


def test_a_cancel_never_marks_a_row_whose_delivery_a_claim_took(
    database_url: str, tmp_path: Path
) -> None:
    world = test_lifecycle.seeded(CampaignWorld(tmp_path, database_url))
    try:
        campaign_id, queue_ids = test_lifecycle.launched(world)  # c2 deferred, c3 queued
        # The pool outlives the connection: its thread waits for that commit (or rollback).
        with ThreadPoolExecutor(1) as pool, world.engine.connect() as claim:
            claiming = claim.begin()
            # A delivery engine mid-claim of c3's delivery: locked, in flight, not committed.
            claim.execute(
                select(deliveries.c.id)
                .where(deliveries.c.message_id == queue_ids[3])
                .with_for_update()
            )
            claim.execute(
                update(deliveries)
                .where(deliveries.c.message_id == queue_ids[3])
                .values(state="inflight")
            )
            cancelling = pool.submit(cancel, world.engine, campaign_id)
            time.sleep(BLOCKED_S)
            assert not cancelling.done()  # it waits for the claim...
            claiming.commit()  # ...which commits: c3's message leaves
            done = cancelling.result(timeout=10)
        assert done.removed == 1
        assert [state for state, _ in test_lifecycle.states_of(world, campaign_id)[2:4]] == [
            "cancelled",
            "queued",
        ]
        assert world.delivery(queue_ids[3]).state == "inflight"
    finally:
        world.engine.dispose()


def test_a_pause_waits_for_a_producer_commit_and_holds_what_it_queued(
    database_url: str, tmp_path: Path
) -> None:
    world = test_lifecycle.seeded(CampaignWorld(tmp_path, database_url))
    try:
        campaign_id, _ = test_lifecycle.launched(world)  # c2 deferred, c3 queued, c4 pending
        with ThreadPoolExecutor(1) as pool, world.engine.connect() as producer:
            producing = producer.begin()
            # The producer's commit: the campaign FOR SHARE, then c4's message queued.
            producer.execute(
                select(campaigns.c.state)
                .where(campaigns.c.id == campaign_id)
                .with_for_update(read=True)
            )
            queue_id = store_queued(
                producer, SENDER, ["c4@shop.test"], b"Subject: x\r\n\r\nhi\r\n", "default",
                MessageOrigin.CAMPAIGN,
            )  # fmt: skip
            producer.execute(
                update(campaign_recipients)
                .where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.seq == 4,
                )
                .values(state="queued", message_id=queue_id)
            )
            pausing = pool.submit(pause, world.engine, campaign_id)
            time.sleep(BLOCKED_S)
            assert not pausing.done()
            producing.commit()
            assert pausing.result(timeout=10).held == 3  # c2, c3 and the one just committed
        assert world.delivery(queue_id).state == "held"
    finally:
        world.engine.dispose()
