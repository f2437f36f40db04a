"""Campaigns going out: a real `serve` produces them to the sinks, exactly once.

One serve for the module (private NSD: news.test linked and DKIM-published, its
MX and dest.test's the session's sink, script.test the scripted sink), a pool
"mailings" of two egress sources (127.0.0.3, 127.0.0.4). Every campaign is
launched, paused, resumed, cancelled and watched with the CLI verbs as an
operator would (`campaign launch|pause|resume|cancel|status --json`); the
server's producer does the rest:
- a few hundred contacts each get exactly one personalised, DKIM-signed message
  from the pool's sources, with List-Unsubscribe headers; a `reject-` recipient the
  scripted sink refuses with 550 gets blocked, the event names the campaign and
  `campaign status` counts the bounce by its reason;
- an interval campaign's messages arrive spaced; a campaign in two parts arrives
  in two groups a part gap apart (the sink's timestamps);
- pause holds what is waiting (nothing arrives), resume sends the rest; cancel
  removes what is waiting and says how many;
- the rating gate refuses an audience averaging below 6: exit 1, still a draft,
  no recipient row;
- kill -9 of serve mid-production, restart: every recipient has exactly one
  queued message (1,500 recipients here to stay well under a minute; the issue's
  20,000 are bench scale).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.flow.conftest import SCRIPT_IP, World, with_token
from tests.flow.linking import MAIL_HOST, ApplianceZones
from tests.flow.test_campaign_flow import LINKED, SENDER, TO_SINK, ready_to_send
from tests.peers.dns import NsdServer
from tests.peers.mail_dkim import mail_dkim_verify
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

pytestmark = pytest.mark.flow

TOKEN = uuid.uuid4().hex[:12]
POOL_SOURCES = {"127.0.0.3", "127.0.0.4"}
EXTRA = """
[http]
public_url = "https://links.news.test"

[addresses]
dns = false

[campaign]
pool = "mailings"

[[egress]]
name = "tx-1"
address = "127.0.0.2"
helo = "tx-1.appliance.test"

[[egress]]
name = "bulk-1"
address = "127.0.0.3"
helo = "bulk-1.appliance.test"

[[egress]]
name = "bulk-2"
address = "127.0.0.4"
helo = "bulk-2.appliance.test"

[[pool]]
name = "transactional"
sources = ["tx-1"]

[[pool]]
name = "mailings"
sources = ["bulk-1", "bulk-2"]
"""
HTML = f"<p>Hello {{{{ contact.first_name }}}}!</p><p>{TOKEN}</p>"
REJECTED = "reject-1@script.test"
MAIN_COUNT = 200
PACED_COUNT = 4
PAUSED_COUNT = 6
CANCELLED_COUNT = 5
PARTS_COUNT = 4
KILL_COUNT = 1500
# `campaign status --json`: the contract (ARCHITECTURE.md), plus keys it may add.
STATUS_KEYS = {
    "id", "state", "audience", "skipped", "queued", "delivered", "deferred", "bounced",
    "complaints", "unsubscribed",
}  # fmt: skip


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    zones.records.update(
        {
            "dest.test": TO_SINK,
            "script.test": ["@ IN MX 10 mx", f"mx IN A {SCRIPT_IP}"],
            LINKED: [],
        }
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
    directory = tmp_path_factory.mktemp("campaign-send")
    port = free_tcp_port()
    text = flow_config(
        state_dir=directory / "state",
        smtp_port=port,
        nameserver=nsd.nameserver(),
        delivery_port=world.sink_port,
        hostname=MAIL_HOST,
        extra=EXTRA,
        delivery='default_pool = "transactional"',
    )
    with PostroomServer(directory, text, port) as server:
        ready_to_send(server, nsd, zones, world)
        (directory / "news.html").write_text(HTML)
        server.cli(
            "template", "add", "hello", "--project", "acme",
            "--subject", "News for {{ contact.first_name }}",
            "--html", str(directory / "news.html"),
        )  # fmt: skip
        yield server


def _address(prefix: str, index: int) -> str:
    return f"{prefix}{index:05d}-{TOKEN}@dest.test"


def _campaign(server: PostroomServer, list_name: str, addresses: list[str]) -> int:
    """Import `addresses` (first_name = "F" + the local part's number) into a new list and
    make a draft campaign of it; its id."""
    csv = server.directory / f"{list_name}.csv"
    lines = [f"{address},F{address.split('-')[0][1:]}" for address in addresses]
    csv.write_text("email,first_name\r\n" + "\r\n".join(lines) + "\r\n")
    server.cli("contact", "import", str(csv), "--project", "acme", "--list", list_name)
    created = server.cli(
        "campaign", "create", "--project", "acme", "--name", list_name, "--sender", SENDER,
        "--template", "hello", "--list", list_name,
    )  # fmt: skip
    return int(created.stdout.splitlines()[-1])


def _launch(server: PostroomServer, campaign_id: int, *flags: str) -> int:
    """`campaign launch ID FLAGS...`: the number of recipients it snapshotted."""
    launched = server.cli_json("campaign", "launch", str(campaign_id), *flags)
    assert launched["id"] == campaign_id
    return int(launched["audience"])


def _status(server: PostroomServer, campaign_id: int) -> dict[str, Any]:
    status = server.cli_json("campaign", "status", str(campaign_id))
    assert status.keys() >= STATUS_KEYS
    return status  # type: ignore[no-any-return]


def _db(server: PostroomServer) -> sqlite3.Connection:
    return sqlite3.connect(server.directory / "state" / "postroom.db", timeout=30)


def _wait(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _campaign_state(server: PostroomServer, campaign_id: int) -> str:
    return str(_status(server, campaign_id)["state"])


def _arrived(world: World, prefix: str) -> int:
    return len(_received(world, prefix))


def _received(world: World, prefix: str) -> list:  # type: ignore[type-arg]
    return [
        message
        for message in with_token(world.dest.messages(), TOKEN)
        if message.rcpt_tos and message.rcpt_tos[0].startswith(prefix)
    ]


def test_every_contact_gets_one_personal_signed_message_through_the_pool(
    postroom: PostroomServer, nsd: NsdServer, world: World
) -> None:
    addresses = [_address("m", index) for index in range(MAIN_COUNT)]
    world.script.set_script({"rcpt": {REJECTED: [550, "5.1.1 no such user here"]}})
    try:
        campaign_id = _campaign(postroom, "main", [*addresses, REJECTED])
        recipients = _launch(postroom, campaign_id)
        assert recipients == MAIN_COUNT + 1
        _wait(lambda: _arrived(world, "m") >= MAIN_COUNT, 60, "the campaign at the sink")
        _wait(
            lambda: postroom.cli_json("contact", "show", REJECTED, "--project", "acme")["blocked"],
            20,
            "the rejected contact blocked",
        )
    finally:
        world.script.set_script({})
    _wait(lambda: _status(postroom, campaign_id)["delivered"] == MAIN_COUNT, 20, "all delivered")
    status = _status(postroom, campaign_id)
    assert (status["state"], status["audience"], status["queued"]) == (
        "sent",
        recipients,
        recipients,
    )
    assert (status["deferred"], status["complaints"], status["unsubscribed"]) == (0, 0, 0)
    received = _received(world, "m")
    assert Counter(m.rcpt_tos[0] for m in received) == Counter(addresses)  # one each
    assert {m.peer_ip for m in received} == POOL_SOURCES
    for message in received:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        number = message.rcpt_tos[0].split("-")[0][1:]
        assert parsed["To"].addresses[0].addr_spec == message.rcpt_tos[0]
        assert str(parsed["Subject"]) == f"News for F{number}"
        assert parsed["List-Unsubscribe"] and parsed["List-Unsubscribe-Post"]
        assert parsed["DKIM-Signature"] and f"d={LINKED}" in str(parsed["DKIM-Signature"])
        # VERP: a per-delivery return path on the bounce domain
        assert message.mail_from.startswith("bounce+"), message.mail_from
    for message in received[:2]:
        report = mail_dkim_verify(nsd, message.data)
        assert [(v.domain, v.result) for v in report.signatures] == [(LINKED, "pass")]
    shown = postroom.cli_json("contact", "show", REJECTED, "--project", "acme")
    bounced = [event for event in shown["events"] if event["kind"] == "bounced"]
    assert bounced and bounced[-1]["campaign_id"] == campaign_id
    assert status["bounced"] == {bounced[-1]["reason"]: 1}
    text = postroom.cli("contact", "show", REJECTED, "--project", "acme").stdout
    assert f"campaign {campaign_id}" in text


def test_an_interval_campaign_arrives_spaced(postroom: PostroomServer, world: World) -> None:
    addresses = [_address("p", index) for index in range(PACED_COUNT)]
    campaign_id = _campaign(postroom, "paced", addresses)
    _launch(postroom, campaign_id, "--interval", "1.5s")
    _wait(lambda: _arrived(world, "p") >= PACED_COUNT, 30, "the paced campaign")
    arrivals = sorted(m.extra["received_at"] for m in _received(world, "p"))
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Released 1.5 s apart; the delivery engine's claim loop looks once a second.
    assert all(gap >= 0.4 for gap in gaps), gaps
    assert arrivals[-1] - arrivals[0] >= 3.5, arrivals


def test_a_campaign_in_parts_arrives_in_groups_a_part_gap_apart(
    postroom: PostroomServer, world: World
) -> None:
    addresses = [_address("s", index) for index in range(PARTS_COUNT)]
    campaign_id = _campaign(postroom, "parts", addresses)
    _launch(postroom, campaign_id, "--parts", "2", "--part-gap", "3s")
    _wait(lambda: _arrived(world, "s") >= PARTS_COUNT, 30, "both parts")
    arrivals = sorted(m.extra["received_at"] for m in _received(world, "s"))
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Part 1 is released 3 s after part 0; each part's two messages go together.
    assert gaps[1] >= 2.0 and max(gaps[0], gaps[2]) < 1.5, gaps


def test_pause_holds_what_waits_and_resume_sends_the_rest(
    postroom: PostroomServer, world: World
) -> None:
    addresses = [_address("h", index) for index in range(PAUSED_COUNT)]
    campaign_id = _campaign(postroom, "paused", addresses)
    _launch(postroom, campaign_id, "--interval", "1s")
    _wait(lambda: _arrived(world, "h") >= 2, 20, "the first messages")
    paused = postroom.cli("campaign", "pause", str(campaign_id)).stdout
    held = int(paused.split(": ")[1].split()[0])
    assert held >= PAUSED_COUNT - 4, paused  # at most one more was handed over meanwhile
    # A message in flight when paused still goes; then everything else is held.
    _wait(lambda: _arrived(world, "h") + held == PAUSED_COUNT, 10, "what was in flight")
    before = _arrived(world, "h")
    time.sleep(2.5)  # unpaused, two or three more would arrive 1 s apart
    assert _arrived(world, "h") == before < PAUSED_COUNT
    status = _status(postroom, campaign_id)
    assert (status["state"], status["held"]) == ("paused", held)
    resumed = postroom.cli("campaign", "resume", str(campaign_id)).stdout
    assert f"{held} message(s) released" in resumed, resumed
    _wait(lambda: _arrived(world, "h") >= PAUSED_COUNT, 20, "the rest after resume")
    assert Counter(m.rcpt_tos[0] for m in _received(world, "h")) == Counter(addresses)


def test_cancel_removes_what_waits_and_says_how_many(
    postroom: PostroomServer, world: World
) -> None:
    addresses = [_address("x", index) for index in range(CANCELLED_COUNT)]
    campaign_id = _campaign(postroom, "cancelled", addresses)
    _launch(postroom, campaign_id, "--interval", "1s")
    _wait(lambda: _arrived(world, "x") >= 1, 20, "the first message")
    cancelled = postroom.cli("campaign", "cancel", str(campaign_id)).stdout
    removed = int(cancelled.split(": ")[1].split()[0])
    assert removed >= 1, cancelled
    # One in flight when cancelled may still arrive; then nothing more does.
    _wait(lambda: _arrived(world, "x") + removed == CANCELLED_COUNT, 10, "what was in flight")
    time.sleep(2.0)
    assert _arrived(world, "x") + removed == CANCELLED_COUNT
    status = _status(postroom, campaign_id)
    assert (status["state"], status["cancelled"]) == ("cancelled", removed)


def test_the_gate_refuses_an_audience_rated_below_6_and_queues_nothing(
    postroom: PostroomServer,
) -> None:
    addresses = [_address("g", index) for index in range(2)]
    campaign_id = _campaign(postroom, "gated", addresses)
    for address in addresses:
        postroom.cli("contact", "set-rating", address, "3", "--project", "acme")
    refused = postroom.cli("campaign", "launch", str(campaign_id), check=False)
    assert refused.returncode == 1, refused
    assert "average rating 3.00 is below 6" in refused.stderr, refused.stderr
    status = _status(postroom, campaign_id)
    assert (status["state"], status["audience"], status["queued"]) == ("draft", 0, 0)
    with _db(postroom) as db:
        rows = db.execute(
            "SELECT count(*) FROM campaign_recipients WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()[0]
        queued = db.execute(
            "SELECT count(*) FROM deliveries WHERE recipient IN (?, ?)", tuple(addresses)
        ).fetchone()[0]
    assert (rows, queued) == (0, 0)


def test_kill_9_mid_production_then_restart_queues_each_recipient_once(
    postroom: PostroomServer, world: World
) -> None:
    addresses = [_address("k", index) for index in range(KILL_COUNT)]
    campaign_id = _campaign(postroom, "killed", addresses)
    _launch(postroom, campaign_id)

    def queued() -> int:
        with _db(postroom) as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM campaign_recipients WHERE campaign_id = ? "
                    "AND state = 'queued'",
                    (campaign_id,),
                ).fetchone()[0]
            )

    _wait(lambda: queued() >= 200, 60, "production under way")
    postroom.kill()  # SIGKILL: no drain, leases and in-flight deliveries left behind
    assert queued() < KILL_COUNT, "production finished before the kill: make it bigger"
    postroom.start()
    _wait(lambda: _campaign_state(postroom, campaign_id) == "sent", 60, "the campaign sent")
    with _db(postroom) as db:
        states = dict(
            db.execute(
                "SELECT state, count(*) FROM campaign_recipients WHERE campaign_id = ? "
                "GROUP BY state",
                (campaign_id,),
            ).fetchall()
        )
        per_recipient = db.execute(
            "SELECT d.recipient, count(*) FROM deliveries d JOIN campaign_recipients r "
            "ON r.message_id = d.message_id WHERE r.campaign_id = ? GROUP BY d.recipient",
            (campaign_id,),
        ).fetchall()
        campaign_messages = db.execute(
            "SELECT count(*) FROM deliveries WHERE recipient LIKE ?", (f"k%-{TOKEN}@dest.test",)
        ).fetchone()[0]
    assert states == {"queued": KILL_COUNT}
    assert sorted(per_recipient) == sorted((address, 1) for address in addresses)
    assert campaign_messages == KILL_COUNT  # no orphan message of a rolled-back row
    _wait(lambda: len({m.rcpt_tos[0] for m in _received(world, "k")}) == KILL_COUNT, 60, "all")
