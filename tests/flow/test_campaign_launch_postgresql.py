"""The launch's SQL on a real PostgreSQL: the snapshot (batched inserts while the
audience is read through a server-side cursor, release times from one UPDATE with
integer division), the gate's rollback, pause/resume/cancel, the status aggregates and
an unsubscribe — the same cases as the SQLite unit tests, each on a fresh database of
the suite's PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from tests.peers.postgres import PostgresServer
from tests.unit.campaign import test_launch, test_lifecycle
from tests.unit.campaign.campaign_world import CampaignWorld

pytestmark = pytest.mark.flow

Case = Callable[[CampaignWorld], None]
LAUNCH_CASES: list[Case] = [
    test_launch.test_the_snapshot_has_one_row_per_contact_with_its_reason,
    test_launch.test_release_times_follow_the_interval_and_the_parts,
    test_launch.test_without_parts_every_recipient_is_one_interval_after_the_last,
    test_launch.test_the_gate_refuses_a_low_rated_audience_and_leaves_a_draft,
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
def test_launch_on_postgresql(case: Case, database_url: str, tmp_path: Path) -> None:
    world = CampaignWorld(tmp_path, database_url)
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
