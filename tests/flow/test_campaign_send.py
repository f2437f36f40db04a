"""Campaigns going out: a real `serve` produces them to the sinks, exactly once.

One serve for the module (private NSD: news.test linked and DKIM-published, its
MX and dest.test's the session's sink, script.test the scripted sink), a pool
"mailings" of two egress sources (127.0.0.3, 127.0.0.4). The audience snapshot is
written by the launch stand-in (`tests/fakes/campaign_launch.py`, design15) into
the server's database while it runs; the server's producer does the rest:
- a few hundred contacts each get exactly one personalised, DKIM-signed message
  from the pool's sources, with List-Unsubscribe headers; a `reject-` recipient the
  scripted sink refuses with 550 gets blocked, and the event names the campaign;
- an interval campaign's messages arrive spaced (the sink's timestamps);
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

import pytest
from tests.fakes.campaign_launch import snapshot_launch
from tests.flow.conftest import SCRIPT_IP, World, with_token
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain
from tests.flow.test_campaign_flow import LINKED, SENDER, TO_SINK, confirm_sender
from tests.peers.dns import NsdServer
from tests.peers.mail_dkim import mail_dkim_verify
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port

from postroom.db.engine import make_engine

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
MAIN_COUNT = 300
PACED_COUNT = 4
KILL_COUNT = 1500


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
    with PostroomServer(directory, text, port).start() as server:
        server.cli("project", "add", "acme")
        proof = link_domain(server, nsd, zones, LINKED)
        generated = server.cli("domain", "dns", LINKED, "--format", "bind").stdout.splitlines()
        kept = [line for line in generated if " MX " not in line]
        zones.publish(nsd, LINKED, [*kept, f'@ IN TXT "{proof}"', *TO_SINK])
        server.cli("mailbox", "add", SENDER, "--password-stdin", stdin="copper-meadow-lantern-61")
        confirm_sender(server, world, SENDER)
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


def _launch(server: PostroomServer, campaign_id: int, **settings: object) -> int:
    engine = make_engine(f"sqlite:///{server.directory / 'state' / 'postroom.db'}")
    try:
        return snapshot_launch(engine, campaign_id, **settings)  # type: ignore[arg-type]
    finally:
        engine.dispose()


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
    with _db(server) as db:
        return str(
            db.execute("SELECT state FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()[0]
        )


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
        assert _launch(postroom, campaign_id) == MAIN_COUNT + 1
        _wait(lambda: len(_received(world, "m")) >= MAIN_COUNT, 60, "the campaign at the sink")
        _wait(lambda: _campaign_state(postroom, campaign_id) == "sent", 10, "the sent state")
        _wait(
            lambda: postroom.cli_json("contact", "show", REJECTED, "--project", "acme")["blocked"],
            20,
            "the rejected contact blocked",
        )
    finally:
        world.script.set_script({})
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
    text = postroom.cli("contact", "show", REJECTED, "--project", "acme").stdout
    assert f"campaign {campaign_id}" in text


def test_an_interval_campaign_arrives_spaced(postroom: PostroomServer, world: World) -> None:
    addresses = [_address("p", index) for index in range(PACED_COUNT)]
    campaign_id = _campaign(postroom, "paced", addresses)
    _launch(postroom, campaign_id, interval_s=1.5)
    _wait(lambda: len(_received(world, "p")) >= PACED_COUNT, 30, "the paced campaign")
    arrivals = sorted(m.extra["received_at"] for m in _received(world, "p"))
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Released 1.5 s apart; the delivery engine's claim loop looks once a second.
    assert all(gap >= 0.4 for gap in gaps), gaps
    assert arrivals[-1] - arrivals[0] >= 3.5, arrivals


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
