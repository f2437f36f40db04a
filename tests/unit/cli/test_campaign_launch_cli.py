"""`campaign launch|pause|resume|cancel|status` through the CLI in-process: exit codes
(0 done, 1 refused by the gate / DMARC / an empty audience, 2 bad input, unknown
campaign or wrong state), one-line errors, the summary and the JSON shapes. The world
(senders, template, contacts) is made with the campaign tests' helpers on the CLI's
own database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.unit.campaign.campaign_world import SEND_ONLY, CampaignWorld
from tests.unit.cli.conftest import Run
from tests.unit.cli.running import NOWHERE_DNS, run_cli, write_config

STATUS_KEYS = {
    "id", "state", "audience", "skipped", "queued", "delivered", "deferred", "bounced",
    "complaints", "unsubscribed",
}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> CampaignWorld:
    state = tmp_path / "state"
    state.mkdir()
    world = CampaignWorld(state, url=f"sqlite:///{state}/postroom.db")
    for index in range(3):
        world.contact(f"c{index}@shop.test")
    world.contact("blocked@shop.test", blocked=True)
    return world


@pytest.fixture
def run(tmp_path: Path, world: CampaignWorld, capsys: pytest.CaptureFixture[str]) -> Run:
    config = write_config(tmp_path, extra=NOWHERE_DNS)
    return lambda *args: run_cli(config, capsys, *args)


def test_launch_status_pause_resume_cancel(world: CampaignWorld, run: Run) -> None:
    campaign_id = str(world.draft())
    status, out, err = run(
        "campaign", "launch", campaign_id, "--interval", "2s", "--parts", "2",
        "--part-gap", "1h", "--from-name", "Spring Team", "--no-history",
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out.startswith(f"launched campaign {campaign_id}: sending\n")
    assert "  recipients  3 of 4 matched\n  skipped     1 blocked\n" in out
    assert "  pace        2 part(s) of 2, 3600s apart; messages 2s apart\n" in out
    assert "  pool        default\n" in out

    status, out, _ = run("campaign", "status", campaign_id, "--json")
    shown = json.loads(out)
    assert status == 0 and set(shown) >= STATUS_KEYS
    assert (shown["state"], shown["audience"], shown["pending"], shown["queued"]) == (
        "sending", 3, 3, 0,
    )  # fmt: skip
    assert (shown["part_size"], shown["from_name"], shown["history"]) == (2, "Spring Team", False)
    assert shown["skipped"]["blocked"] == 1 and shown["bounced"] == {}
    status, out, _ = run("campaign", "status", campaign_id)
    assert status == 0 and out.startswith(f"campaign {campaign_id}: spring (sending)\n  [")

    assert run("campaign", "pause", campaign_id) == (
        0, f"paused campaign {campaign_id}: 0 queued message(s) held\n", "",
    )  # fmt: skip
    status, _, err = run("campaign", "pause", campaign_id)
    assert (status, err) == (
        2, f"postroom: campaign {campaign_id} is paused: only a scheduled or sending campaign "
        "is paused\n",
    )  # fmt: skip
    status, out, _ = run("campaign", "resume", campaign_id, "--json")
    assert status == 0 and json.loads(out)["state"] == "sending"
    status, out, _ = run("campaign", "cancel", campaign_id)
    assert (status, out) == (
        0, f"cancelled campaign {campaign_id}: 0 queued message(s) removed, "
        "3 recipient(s) will get nothing\n",
    )  # fmt: skip
    status, out, _ = run("campaign", "status", campaign_id, "--watch")
    assert status == 0 and out.endswith("· cancelled\n") and out.count("\n") == 1
    status, _, err = run("campaign", "launch", campaign_id)
    assert status == 2 and err.startswith(f"postroom: campaign {campaign_id} is cancelled: only")


def test_refusals_exit_1_and_leave_the_draft(world: CampaignWorld, run: Run) -> None:
    # The send-only sender's DMARC policy cannot be looked up (no name server): a risk.
    send_only = str(world.draft(sender=SEND_ONLY))
    status, out, err = run("campaign", "launch", send_only)
    assert (status, out) == (1, "")
    assert err.startswith(f"postroom: campaign {send_only} not launched: sender {SEND_ONLY} is")
    assert err.endswith("(--allow-send-only-dmarc launches it anyway)\n") and err.count("\n") == 1
    assert json.loads(run("campaign", "status", send_only, "--json")[1])["state"] == "draft"
    status, out, _ = run("campaign", "launch", send_only, "--allow-send-only-dmarc", "--json")
    assert status == 0 and json.loads(out)["audience"] == 3

    for index in range(3):
        world.contacts.set_rating("acme", f"c{index}@shop.test", 2)
    low = str(world.draft())
    status, _, err = run("campaign", "launch", low)
    assert (
        status == 1
        and "average rating 4.00 is below 6: 1 blocked (25%)" in err
        and err.count("\n") == 1
    )
    assert json.loads(run("campaign", "status", low, "--json")[1])["audience"] == 0


def test_a_launch_under_way_is_refused_and_a_dead_one_is_started_over(
    world: CampaignWorld, run: Run
) -> None:
    alive = str(world.launching_elsewhere(time.time() + 60))
    status, out, err = run("campaign", "launch", alive)
    assert (status, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(
        f"postroom: campaign {alive} is being launched (pid 4242 on other-host.test, lease until "
    )
    assert run("campaign", "pause", alive) == (
        2, "", f"postroom: campaign {alive} is launching: only a scheduled or sending campaign is "
        "paused (wait for its launch to end)\n",
    )  # fmt: skip
    shown = json.loads(run("campaign", "status", alive, "--json")[1])
    assert (shown["state"], shown["pending"]) == ("launching", 2)

    dead = str(world.launching_elsewhere(time.time() - 1))  # its lease ran out
    status, out, err = run("campaign", "launch", dead, "--json")
    assert (status, json.loads(out)["audience"]) == (0, 3)
    assert err == (
        f"postroom: campaign {dead}: the interrupted launch (pid 4242 on other-host.test) "
        "was started over\n"
    )
    shown = json.loads(run("campaign", "status", dead, "--json")[1])
    assert (shown["state"], shown["pending"], shown["skipped"]["blocked"]) == ("sending", 3, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("launch", "1", "--interval", "fast"), "--interval: 'fast' is not a duration"),
        (("launch", "1", "--pool", "bulk"), "--pool: no [[pool]] named 'bulk' (known: default)"),
        (("launch", "1", "--at", "noon"), "--at: 'noon' is not an ISO 8601 time"),
        (("launch", "1", "--part-gap", "1h"), "--part-gap: needs --parts or --part-size"),
        (("launch", "77"), "no campaign 77"),
        (("pause", "77"), "no campaign 77"),
        (("resume", "1"), "campaign 1 is draft: only a paused campaign is resumed"),
        (("cancel", "1"), "campaign 1 is draft: only a scheduled, sending or paused campaign"),
        (("status", "77"), "no campaign 77"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    world: CampaignWorld, run: Run, args: tuple[str, ...], message: str
) -> None:
    world.draft()
    status, out, err = run("campaign", *args)
    assert (status, out) == (2, "")
    assert err.startswith(f"postroom: {message}") and err.count("\n") == 1


def test_parts_and_part_size_exclude_each_other(run: Run) -> None:
    with pytest.raises(SystemExit) as usage:
        run("campaign", "launch", "1", "--parts", "2", "--part-size", "5")
    assert usage.value.code == 2
