"""The launch in chunks, against a real SQLite file (the PostgreSQL flow module runs the
same cases): each chunk of rows is its own committed transaction while the campaign is
`launching`; the launch's cases hold in chunks of two; an error between chunks leaves a
draft with no row; a launch killed mid-way (a forked process, SIGKILL) or whose lease
ran out on another host is started over, one row per recipient; a launch alive is
refused; a launch that lost its campaign writes nothing more; and another writer gets
the write lock while a long launch runs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from tests.unit.campaign import test_launch
from tests.unit.campaign.campaign_world import ELSEWHERE, CampaignWorld

from postroom.campaign import launch as launch_module
from postroom.campaign import launch_lease
from postroom.campaign.launch import Launched, LaunchError
from postroom.campaign.launch_lease import LEASE_S
from postroom.campaign.lifecycle import LifecycleError, cancel, pause, resume
from postroom.campaign.status import campaign_status
from postroom.db.engine import make_engine, write_transaction
from postroom.db.models import campaign_recipients, campaigns

CONTACTS = 7
CHUNK = 3  # 7 contacts: chunks of 3, 3 and 1


def populated(world: CampaignWorld) -> CampaignWorld:
    for index in range(CONTACTS):
        world.contact(f"c{index}@shop.test")
    return world


@pytest.fixture
def world(tmp_path: Path) -> CampaignWorld:
    return populated(CampaignWorld(tmp_path))


def chunked(monkeypatch: pytest.MonkeyPatch, rows: int = CHUNK) -> None:
    monkeypatch.setattr(launch_module, "CHUNK_ROWS", rows)
    monkeypatch.setattr(launch_lease, "DELETE_ROWS", rows)


def campaign_row(world: CampaignWorld, campaign_id: int) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one()


def committed_rows(world: CampaignWorld, campaign_id: int) -> int:
    with world.engine.connect() as conn:  # another connection: only what was committed
        return int(
            conn.execute(
                select(func.count()).where(campaign_recipients.c.campaign_id == campaign_id)
            ).scalar_one()
        )


def assert_one_pending_row_per_contact(world: CampaignWorld, campaign_id: int) -> None:
    rows = world.rows(campaign_id)
    assert [row.seq for row in rows] == list(range(CONTACTS))
    assert [row.address for row in rows] == [f"c{index}@shop.test" for index in range(CONTACTS)]
    assert {row.state for row in rows} == {"pending"}
    stored = campaign_row(world, campaign_id)
    assert (stored.state, stored.launch_owner, stored.launch_lease_until) == ("sending", None, None)


class Chunks:
    """Spies on the launch's chunk writes: `before(n)` runs before chunk n (from 1) is
    written, `after(n)` once it committed; what another connection then sees is kept."""

    def __init__(
        self,
        world: CampaignWorld,
        monkeypatch: pytest.MonkeyPatch,
        before: Callable[[int], None] = lambda n: None,
        after: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.sizes: list[int] = []
        self.seen: list[tuple[int, str, str | None]] = []  # rows, state, owner
        write = launch_module._write

        def spied(lease: Any, chunk: list[dict[str, Any]]) -> None:
            before(len(self.sizes) + 1)
            write(lease, chunk)
            self.sizes.append(len(chunk))
            after(len(self.sizes))
            row = campaign_row(world, lease.campaign_id)
            rows = committed_rows(world, lease.campaign_id)
            self.seen.append((rows, row.state, row.launch_owner))

        monkeypatch.setattr(launch_module, "_write", spied)


def test_each_chunk_is_committed_while_the_campaign_is_launching(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch)
    chunks = Chunks(world, monkeypatch)
    campaign_id = world.draft()
    world.launch(campaign_id)
    assert chunks.sizes == [3, 3, 1]
    assert [(rows, state) for rows, state, _ in chunks.seen] == [
        (3, "launching"), (6, "launching"), (7, "launching"),
    ]  # fmt: skip
    owner = chunks.seen[0][2]
    assert owner is not None and owner.startswith(f"{os.getpid()}.")
    assert owner.endswith(f"@{socket.gethostname()}")
    assert_one_pending_row_per_contact(world, campaign_id)


@pytest.mark.parametrize(
    "case",
    [
        test_launch.test_the_snapshot_has_one_row_per_contact_with_its_reason,
        test_launch.test_release_times_follow_the_interval_and_the_parts,
        test_launch.test_without_parts_every_recipient_is_one_interval_after_the_last,
        test_launch.test_the_gate_refuses_a_low_rated_audience_and_leaves_a_draft,
        test_launch.test_nobody_to_send_to_is_refused,
    ],
    ids=lambda case: case.__name__,
)
def test_the_launch_cases_hold_in_chunks_of_two(
    case: Callable[[CampaignWorld], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch, 2)
    case(CampaignWorld(tmp_path))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_between_chunks_leaves_a_draft_and_a_relaunch_starts_clean(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    error_between_chunks(world, monkeypatch, error)


def error_between_chunks(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch, error: type[BaseException] = RuntimeError
) -> None:
    chunked(monkeypatch)

    def fail(chunk: int) -> None:
        if chunk == 3:
            raise error("injected between chunks")  # a Ctrl-C of the CLI too

    Chunks(world, monkeypatch, before=fail)
    campaign_id = world.draft()
    with pytest.raises(error, match="injected"):
        world.launch(campaign_id)
    stored = campaign_row(world, campaign_id)
    assert (stored.state, stored.launch_owner, stored.launch_lease_until) == ("draft", None, None)
    assert committed_rows(world, campaign_id) == 0
    monkeypatch.undo()
    assert world.launch(campaign_id).recipients == CONTACTS
    assert_one_pending_row_per_contact(world, campaign_id)


def _launch_then_die(world: CampaignWorld, url: str, campaign_id: int) -> None:
    """In a forked child: launch; the spy kills this process after its second chunk."""
    try:
        world.engine = make_engine(url)
        world.launch(campaign_id)
    finally:
        os._exit(3)  # only if the kill did not come: never back into pytest


def test_a_launch_killed_mid_way_is_started_over_by_the_next(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch)
    Chunks(world, monkeypatch, after=lambda n: n == 2 and os.kill(os.getpid(), signal.SIGKILL))
    campaign_id = world.draft()
    url = world.engine.url.render_as_string(hide_password=False)
    world.engine.dispose()  # no pooled connection crosses the fork
    child = multiprocessing.get_context("fork").Process(
        target=_launch_then_die, args=(world, url, campaign_id)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    stored = campaign_row(world, campaign_id)
    assert stored.state == "launching" and stored.launch_owner.startswith(f"{child.pid}.")
    assert committed_rows(world, campaign_id) == 6
    monkeypatch.undo()
    # Its lease still runs, but its process is gone from this host: started over at once.
    launched = world.launch(campaign_id)
    assert launched.interrupted == f"pid {child.pid} on {socket.gethostname()}"
    assert launched.recipients == CONTACTS
    assert_one_pending_row_per_contact(world, campaign_id)


def test_a_launch_alive_elsewhere_is_refused_until_its_lease_runs_out(
    world: CampaignWorld,
) -> None:
    campaign_id = world.launching_elsewhere(world.clock.now + 30)
    with pytest.raises(LaunchError) as refused:
        world.launch(campaign_id)
    assert not refused.value.refused
    assert str(refused.value).startswith(
        f"campaign {campaign_id} is being launched (pid 4242 on other-host.test, lease until "
    )
    assert str(refused.value).endswith("UTC): wait for that launch to end")
    assert committed_rows(world, campaign_id) == 2
    assert campaign_row(world, campaign_id).launch_owner == ELSEWHERE
    world.clock.now += 30  # its lease ran out: that launch is dead
    launched = world.launch(campaign_id)
    assert launched.interrupted == "pid 4242 on other-host.test"
    assert_one_pending_row_per_contact(world, campaign_id)


def test_a_second_launch_while_the_first_runs_is_refused(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch)
    campaign_id = world.draft()
    refusals: list[str] = []

    def launch_again(chunk: int) -> None:
        if chunk == 2:
            with pytest.raises(LaunchError) as refused:
                world.launch(campaign_id)
            refusals.append(str(refused.value))

    Chunks(world, monkeypatch, before=launch_again)
    world.launch(campaign_id)
    [refusal] = refusals
    assert refusal.startswith(
        f"campaign {campaign_id} is being launched (pid {os.getpid()} on {socket.gethostname()}"
    )
    assert_one_pending_row_per_contact(world, campaign_id)


def test_a_launch_that_lost_its_campaign_writes_nothing_more(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch)
    campaign_id = world.draft()

    def taken_over(chunk: int) -> None:
        if chunk == 2:  # it stalled past its lease and another launch claimed the campaign
            with world.engine.begin() as conn:
                conn.execute(
                    update(campaigns)
                    .where(campaigns.c.id == campaign_id)
                    .values(launch_owner=ELSEWHERE, launch_lease_until=world.clock.now + LEASE_S)
                )

    chunks = Chunks(world, monkeypatch, before=taken_over)
    with pytest.raises(LaunchError, match="stalled past its lease and another took it over"):
        world.launch(campaign_id)
    assert chunks.sizes == [3]
    assert committed_rows(world, campaign_id) == 3  # the other launch's to clear, not its own
    stored = campaign_row(world, campaign_id)
    assert (stored.state, stored.launch_owner) == ("launching", ELSEWHERE)


def test_a_launching_campaign_shows_in_status_and_is_not_paused_resumed_or_cancelled(
    world: CampaignWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunked(monkeypatch)
    campaign_id = world.draft()
    seen: list[tuple[str, int]] = []
    refusals: list[str] = []

    def meanwhile(chunk: int) -> None:
        if chunk != 2:
            return
        with world.engine.connect() as conn:
            status = campaign_status(conn, campaign_id)
        seen.append((status.state, status.pending))
        for action in (pause, resume, cancel):
            with pytest.raises(LifecycleError) as refused:
                action(world.engine, campaign_id)
            refusals.append(str(refused.value))

    Chunks(world, monkeypatch, after=meanwhile)
    world.launch(campaign_id)
    assert seen == [("launching", 6)]
    assert refusals == [
        f"campaign {campaign_id} is launching: only a scheduled or sending campaign is paused "
        "(wait for its launch to end)",
        f"campaign {campaign_id} is launching: only a paused campaign is resumed "
        "(wait for its launch to end)",
        f"campaign {campaign_id} is launching: only a scheduled, sending or paused campaign is "
        "cancelled (wait for its launch to end)",
    ]
    assert_one_pending_row_per_contact(world, campaign_id)


def test_of_two_concurrent_launches_one_writes_the_rows(world: CampaignWorld) -> None:
    campaign_id = world.draft()
    start = threading.Barrier(2)

    def launch() -> Launched | LaunchError:
        start.wait(timeout=10)
        try:
            return world.launch(campaign_id)
        except LaunchError as error:
            return error

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(launch) for _ in range(2)]
        outcomes = [future.result(timeout=60) for future in futures]
    launched = [outcome for outcome in outcomes if isinstance(outcome, Launched)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, LaunchError)]
    assert len(launched) == 1 and len(refused) == 1 and not refused[0].refused
    # Refused while the other ran, or after it launched it.
    assert " is being launched " in str(refused[0]) or " is sending: only a draft" in str(
        refused[0]
    )
    assert_one_pending_row_per_contact(world, campaign_id)


class SlowValidator:
    """The world's validator, a pause per address: a launch that takes seconds without
    taking the CPU (the machine may be busy)."""

    def __init__(self, validator: Any, pause_s: float) -> None:
        self.validator = validator
        self.pause_s = pause_s

    def check_with_mailbox(self, address: str) -> Any:
        time.sleep(self.pause_s)
        return self.validator.check_with_mailbox(address)


def test_another_writer_gets_the_write_lock_while_a_long_launch_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = CampaignWorld(tmp_path)
    for index in range(60):
        world.contact(f"c{index}@shop.test")
    chunked(monkeypatch, 5)  # 12 chunks over about 1.5 s
    world.validator = SlowValidator(world.validator, 0.025)  # type: ignore[assignment]
    campaign_id = world.draft()
    waits: list[float] = []
    done = threading.Event()

    def other_writer() -> None:  # as the queue's group commit writes
        while not done.is_set():
            asked = time.monotonic()
            with write_transaction(world.engine) as conn:
                waits.append(time.monotonic() - asked)
                conn.execute(text("UPDATE projects SET created_at = created_at"))
            done.wait(0.01)

    writer = threading.Thread(target=other_writer)
    started = time.monotonic()
    writer.start()
    try:
        world.launch(campaign_id)
    finally:
        launch_s = time.monotonic() - started
        done.set()
        writer.join(timeout=30)
    assert launch_s > 1.0
    assert len(waits) >= 10  # it kept writing during the launch...
    assert max(waits) < launch_s / 3  # ...never held up for a large part of it
