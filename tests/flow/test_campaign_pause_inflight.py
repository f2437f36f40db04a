"""Pause and cancel stop what serve's delivery engine already holds in memory.

One serve for the module (private NSD: news.test linked, script.test's MX the
session's scripted sink), at most `CONNECTIONS` connections to a site, and a
sink that waits `SLOW_S` before it answers each message: a campaign of
`AUDIENCE` recipients with no interval is produced into the engine (about
2,000 jobs in memory, leased, `inflight` in the database) far faster than it
drains. Then, with the CLI verbs as an operator would:
- pause → only the messages already in an SMTP transaction, and those a
  connection took before serve's once-a-second look at the paused campaigns,
  still arrive; every other produced message is held (`campaign status`);
  resume → every recipient gets exactly one message;
- cancel → the same few arrive, then nothing more; every other row is
  cancelled and nothing of the campaign is left waiting in the queue.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.flow.conftest import SCRIPT_IP, World
from tests.flow.linking import ApplianceZones
from tests.flow.test_campaign_flow import LINKED, TO_SINK, add_hello_template, campaign_server
from tests.flow.test_campaign_send import _campaign, _db, _status, _wait
from tests.peers.dns import NsdServer
from tests.peers.postroom import PostroomServer

pytestmark = pytest.mark.flow

TOKEN = uuid.uuid4().hex[:12]
AUDIENCE = 3000
CONNECTIONS = 4
SLOW_S = 1.0
# Sent after the pause: each connection's transaction under way, plus what a connection
# takes before serve's next look at the paused campaigns (about a second, one SLOW_S).
AT_MOST_AFTER_STOP = 3 * CONNECTIONS
ENGINE_HOLDS = 1500  # produced (queued rows) before the pause: in the engine's memory


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    zones.records.update(
        {"script.test": ["@ IN MX 10 mx", f"mx IN A {SCRIPT_IP}"], "dest.test": TO_SINK, LINKED: []}
    )
    return zones


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    with NsdServer(zones.texts()) as server:
        yield server


@pytest.fixture(scope="module")
def postroom(
    tmp_path_factory: pytest.TempPathFactory, nsd: NsdServer, zones: ApplianceZones, world: World
) -> Iterator[PostroomServer]:
    directory = tmp_path_factory.mktemp("campaign-pause-inflight")
    with campaign_server(
        directory, nsd, zones, world, delivery=f"max_connections = {CONNECTIONS}"
    ) as server:
        add_hello_template(server, f"<p>Hello {{{{ contact.first_name }}}}!</p>{TOKEN}")
        yield server


@pytest.fixture
def slow_sink(world: World) -> Iterator[None]:
    world.script.set_script({"data_delay_s": SLOW_S})
    yield
    world.script.set_script({})


def _addresses(prefix: str) -> list[str]:
    return [f"{prefix}{index:05d}-{TOKEN}@script.test" for index in range(AUDIENCE)]


def _arrived(world: World, prefix: str) -> Counter[str]:
    """Recipient → messages the sink accepted for it, of this module's campaign `prefix`."""
    return Counter(
        message.rcpt_tos[0]
        for message in world.script.messages()
        if message.rcpt_tos and message.rcpt_tos[0].startswith(prefix)
        and message.rcpt_tos[0].endswith(f"-{TOKEN}@script.test")
    )  # fmt: skip


def _rows(server: PostroomServer, campaign_id: int) -> dict[str, int]:
    with _db(server) as db:
        return dict(
            db.execute(
                "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = ? "
                "GROUP BY state",
                (campaign_id,),
            ).fetchall()
        )


def _under_way(server: PostroomServer, prefix: str) -> int:
    """Launched into a slow sink: once the engine holds `ENGINE_HOLDS` produced messages."""
    campaign_id = _campaign(server, f"inflight-{prefix}", _addresses(prefix))
    server.cli("campaign", "launch", str(campaign_id))
    _wait(
        lambda: _rows(server, campaign_id).get("queued", 0) >= ENGINE_HOLDS,
        60,
        "the engine to hold many produced messages",
    )
    return campaign_id


def _settled(server: PostroomServer, campaign_id: int) -> dict[str, Any]:
    """`campaign status` once nothing of the campaign is in flight or due any more."""
    _wait(lambda: _status(server, campaign_id)["waiting"] == 0, 20, "the engine to let go")
    return _status(server, campaign_id)


def test_pause_holds_what_the_engine_holds_and_resume_sends_each_once(
    postroom: PostroomServer, world: World, slow_sink: None
) -> None:
    campaign_id = _under_way(postroom, "p")
    paused = postroom.cli("campaign", "pause", str(campaign_id)).stdout
    assert f"paused campaign {campaign_id}: " in paused and "queued message(s) held" in paused
    before = sum(_arrived(world, "p").values())
    status = _settled(postroom, campaign_id)
    time.sleep(2 * SLOW_S)  # unpaused, a few more would arrive meanwhile
    arrived = _arrived(world, "p")
    assert sum(arrived.values()) - before <= AT_MOST_AFTER_STOP, (before, status)
    queued = _rows(postroom, campaign_id)["queued"]  # produced: at least ENGINE_HOLDS
    assert (status["state"], status["delivered"]) == ("paused", sum(arrived.values()))
    assert status["held"] == queued - status["delivered"], status  # every produced one not sent
    assert status["pending"] + queued == AUDIENCE
    world.script.set_script({})  # the rest at full speed
    postroom.cli("campaign", "resume", str(campaign_id))
    _wait(lambda: _status(postroom, campaign_id)["state"] == "sent", 60, "the campaign sent")
    _wait(lambda: _status(postroom, campaign_id)["delivered"] == AUDIENCE, 30, "all delivered")
    assert _arrived(world, "p") == Counter(_addresses("p"))  # each exactly once


def test_cancel_stops_what_the_engine_holds_and_cancels_every_other_row(
    postroom: PostroomServer, world: World, slow_sink: None
) -> None:
    campaign_id = _under_way(postroom, "c")
    cancelled = postroom.cli("campaign", "cancel", str(campaign_id)).stdout
    assert f"cancelled campaign {campaign_id}: " in cancelled, cancelled
    assert "queued message(s) removed" in cancelled, cancelled
    before = sum(_arrived(world, "c").values())
    status = _settled(postroom, campaign_id)
    time.sleep(2 * SLOW_S)
    arrived = _arrived(world, "c")
    assert sum(arrived.values()) - before <= AT_MOST_AFTER_STOP, (before, status)
    assert max(arrived.values()) == 1
    assert (status["state"], status["delivered"], status["held"]) == (
        "cancelled",
        sum(arrived.values()),
        0,
    )
    assert status["cancelled"] == AUDIENCE - status["delivered"], status
    rows = _rows(postroom, campaign_id)
    assert rows == {"queued": status["delivered"], "cancelled": status["cancelled"]}, rows
    with _db(postroom) as db:
        left = db.execute(
            "SELECT count(*) FROM deliveries WHERE recipient LIKE ? AND state != 'delivered'",
            (f"c%-{TOKEN}@script.test",),
        ).fetchone()[0]
    assert left == 0  # nothing of it waits in the queue, nor is in flight
