"""Campaigns going out: a real `serve` produces them to the sinks, exactly once.

One serve for the module (private NSD: news.test linked and DKIM-published, its
MX and dest.test's the session's sink, script.test the scripted sink, crowd.test
(and the typo domain company.con) this module's own smtp-sink, so that the big
campaigns neither slow nor swell the session's sink), a pool "mailings" of two
egress sources (127.0.0.3, 127.0.0.4). Every campaign is launched, paused,
resumed, cancelled and watched with the CLI verbs as an operator would
(`campaign launch|pause|resume|cancel|status --json`); the server's producer
does the rest:
- a 2,000-contact campaign: a blocked contact (`contact block`), one who
  unsubscribed through an earlier campaign's List-Unsubscribe mailto, a typo
  address (a contact the mail engine made when the app mailed it; the importer
  would have refused it) and a duplicate (straße- of strasse-: one mailbox by
  Unicode case folding, imported later) are each skipped with its reason; every
  other contact gets exactly one personalised, DKIM-signed message from the
  pool's sources, with List-Unsubscribe headers whose mailto, sent to port 25,
  unsubscribes; a `reject-` recipient the scripted sink refuses with 550 gets
  blocked, the event names the campaign and `campaign status` counts the bounce
  by its reason;
- an interval campaign's messages arrive spaced; a campaign in two parts arrives
  in two groups a part gap apart (the sink's timestamps);
- pause holds what is waiting (nothing arrives), resume sends the rest; cancel
  removes what is waiting and says how many;
- the rating gate refuses an audience averaging below 6: exit 1, still a draft,
  no recipient row;
- 20,000 recipients: kill -9 of `campaign launch` once it has written part of
  its snapshot leaves the campaign `launching` (or still a draft), never
  scheduled; the next launch takes it over and writes one row per recipient;
  then kill -9 of serve twice mid-production
  (after 2,000 and 10,000 queued), restarts: every recipient has exactly one
  queued message, and the sink got every recipient, each only that message
  (a copy twice is an SMTP transaction whose outcome died with the process).
"""

from __future__ import annotations

import email.message
import email.policy
import itertools
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from typing import Any

import pytest
from tests.flow.conftest import SCRIPT_IP, World, with_token
from tests.flow.linking import MAIL_HOST, ApplianceZones
from tests.flow.test_campaign_flow import (
    LINKED,
    SENDER,
    TO_SINK,
    add_hello_template,
    campaign_server,
)
from tests.peers.dns import NsdServer
from tests.peers.lifecycle import die_with_parent
from tests.peers.mail_dkim import mail_dkim_verify
from tests.peers.postroom import PostroomServer
from tests.peers.sinks import ReceivedMessage, SmtpSink

pytestmark = pytest.mark.flow

TOKEN = uuid.uuid4().hex[:12]
POOL_SOURCES = {"127.0.0.3", "127.0.0.4"}
CROWD = "crowd.test"
CROWD_IP = "127.0.0.16"
# A typo the address validator is sure of (unknown TLD, one slip from .com), served
# by the test NSD only: nothing is looked up or sent beyond loopback.
TYPO_DOMAIN = "company.con"
EXTRA = """
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
MAIN_STAGE = "reader"  # the big campaign's audience: every contact at this CRM stage
MAIN_COUNT = 2000  # contacts the big campaign's audience matches, the four skipped included
DKIM_CHECKED = 3  # of its messages, verified by Mail::DKIM (a perl process each)
PACED_COUNT = 4
PAUSED_COUNT = 6
CANCELLED_COUNT = 5
PARTS_COUNT = 4
KILL_COUNT = 20_000
KILL_AT_QUEUED = (2_000, 10_000)  # serve is killed once each count is reached
# The launch of KILL_COUNT recipients spends ~1.2 s of CPU in its transaction (measured
# here): killed a quarter of the way in, thousands of rows written but not committed.
LAUNCH_ROWS_BEFORE_KILL = 4000  # of 20,000, written 2,000 a transaction
# `campaign status --json`: the contract (ARCHITECTURE.md), plus keys it may add.
STATUS_KEYS = {
    "id", "state", "audience", "skipped", "queued", "delivered", "deferred", "bounced",
    "complaints", "unsubscribed",
}  # fmt: skip
# `<https://links.news.test/u/TOKEN>, <mailto:unsubscribe+TOKEN@BOUNCE-DOMAIN>`, the token
# 39 characters of lower-case base32 (campaign/unsubscribe.py); the bounce domain is
# the server's hostname.
LIST_UNSUBSCRIBE = re.compile(
    r"<https://links\.news\.test/u/(?P<link>[a-z2-7]{39})>,\s*"
    rf"<mailto:(?P<mailto>unsubscribe\+(?P<token>[a-z2-7]{{39}})@{re.escape(MAIL_HOST)})>"
)


@pytest.fixture(scope="module")
def zones() -> ApplianceZones:
    zones = ApplianceZones()
    to_crowd = ["@ IN MX 10 mx", f"mx IN A {CROWD_IP}"]
    zones.records.update(
        {
            "dest.test": TO_SINK,
            "script.test": ["@ IN MX 10 mx", f"mx IN A {SCRIPT_IP}"],
            CROWD: to_crowd,
            TYPO_DOMAIN: to_crowd,
            LINKED: [],
        }
    )
    return zones


@pytest.fixture(scope="module")
def nsd(zones: ApplianceZones) -> Iterator[NsdServer]:
    with NsdServer(zones.texts()) as server:
        yield server


@pytest.fixture(scope="module")
def crowd(world: World) -> Iterator[SmtpSink]:
    """Postfix's smtp-sink for the big campaigns, on the port serve delivers to."""
    with SmtpSink(CROWD_IP, world.sink_port, hostname=f"mx.{CROWD}") as sink:
        yield sink


@pytest.fixture(scope="module")
def postroom(
    tmp_path_factory: pytest.TempPathFactory, nsd: NsdServer, zones: ApplianceZones, world: World
) -> Iterator[PostroomServer]:
    directory = tmp_path_factory.mktemp("campaign-send")
    with campaign_server(
        directory, nsd, zones, world, extra=EXTRA, delivery='default_pool = "transactional"'
    ) as server:
        add_hello_template(server, HTML)
        yield server


def _address(prefix: str, index: int, domain: str = "dest.test") -> str:
    return f"{prefix}{index:05d}-{TOKEN}@{domain}"


def _first_name(address: str) -> str:
    """The first_name `_import` gives an address: "F" + its local part's number."""
    return f"F{address.split('-')[0][1:]}"


def _import(server: PostroomServer, list_name: str, addresses: list[str], stage: str = "") -> None:
    """`contact import` of `addresses` (first_name from `_first_name`, at CRM `stage`)
    onto the list `list_name`."""
    csv = server.directory / f"{list_name}.csv"
    lines = [f"{address},{_first_name(address)},{stage}" for address in addresses]
    csv.write_text("email,first_name,stage\r\n" + "\r\n".join(lines) + "\r\n")
    server.cli("contact", "import", str(csv), "--project", "acme", "--list", list_name)


def _create(server: PostroomServer, name: str, *audience: str) -> int:
    """A draft campaign of the template "hello" to `audience` (flags); its id."""
    created = server.cli(
        "campaign", "create", "--project", "acme", "--name", name, "--sender", SENDER,
        "--template", "hello", *audience,
    )  # fmt: skip
    return int(created.stdout.splitlines()[-1])


def _campaign(server: PostroomServer, list_name: str, addresses: list[str], stage: str = "") -> int:
    """Import `addresses` into a new list and make a draft campaign of it; its id."""
    _import(server, list_name, addresses, stage)
    return _create(server, list_name, "--list", list_name)


def _launch(server: PostroomServer, campaign_id: int, *flags: str) -> dict[str, Any]:
    """`campaign launch ID FLAGS... --json`."""
    launched = server.cli_json("campaign", "launch", str(campaign_id), *flags)
    assert launched["id"] == campaign_id
    return launched  # type: ignore[no-any-return]


def _status(server: PostroomServer, campaign_id: int) -> dict[str, Any]:
    status = server.cli_json("campaign", "status", str(campaign_id))
    assert status.keys() >= STATUS_KEYS
    return status  # type: ignore[no-any-return]


def _contact(server: PostroomServer, address: str) -> dict[str, Any]:
    shown = server.cli_json("contact", "show", address, "--project", "acme")
    return shown  # type: ignore[no-any-return]


def _db(server: PostroomServer) -> sqlite3.Connection:
    return sqlite3.connect(server.directory / "state" / "postroom.db", timeout=30)


def _count(server: PostroomServer, sql: str, *parameters: object) -> int:
    with _db(server) as db:
        return int(db.execute(sql, parameters).fetchone()[0])


def _wait(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# Waits poll the database, not `campaign status`: a CLI run a few times a second would
# take a good share of the CPU the server under test needs. The verb is checked after.
def _stored_state(server: PostroomServer, campaign_id: int) -> str:
    with _db(server) as db:
        return str(
            db.execute("SELECT state FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()[0]
        )


def _delivered(server: PostroomServer, campaign_id: int) -> int:
    return _count(
        server,
        "SELECT count(*) FROM deliveries WHERE state = 'delivered' AND message_id IN "
        "(SELECT message_id FROM campaign_recipients WHERE campaign_id = ?)",
        campaign_id,
    )


def _arrived(world: World, prefix: str) -> int:
    return len(_received(world, prefix))


def _received(world: World, prefix: str) -> list[ReceivedMessage]:
    return [
        message
        for message in with_token(world.dest.messages(), TOKEN)
        if message.rcpt_tos and message.rcpt_tos[0].startswith(prefix)
    ]


def _to(sink: SmtpSink, addresses: set[str]) -> list[ReceivedMessage]:
    """What `sink` received for one of `addresses`."""
    return [m for m in sink.messages() if m.rcpt_tos and m.rcpt_tos[0] in addresses]


def _headers(message: ReceivedMessage) -> email.message.EmailMessage:
    """The header of a sink copy, parsed (the body is not: a third of the cost)."""
    parser = BytesHeaderParser(policy=email.policy.default)
    return parser.parsebytes(message.data)  # type: ignore[return-value]


def _unsubscribe_by_mail(server: PostroomServer, message: ReceivedMessage) -> None:
    """Mail the List-Unsubscribe mailto of `message` (as a sink copy) to serve's port 25,
    as a mail client's unsubscribe button does."""
    found = LIST_UNSUBSCRIBE.fullmatch(str(_headers(message)["List-Unsubscribe"]))
    assert found, _headers(message)["List-Unsubscribe"]
    mailto = found["mailto"]
    body = f"From: <{message.rcpt_tos[0]}>\r\nTo: <{mailto}>\r\nSubject: unsubscribe\r\n\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(message.rcpt_tos[0], [mailto], body.encode())


def _unsubscribed_through_an_earlier_campaign(
    server: PostroomServer, crowd: SmtpSink, address: str
) -> None:
    """`address` gets a campaign of its own, and unsubscribes by its mailto."""
    campaign_id = _campaign(server, "earlier", [address], stage=MAIN_STAGE)
    _launch(server, campaign_id)
    _wait(lambda: _to(crowd, {address}), 60, "the earlier campaign's message")
    _unsubscribe_by_mail(server, _to(crowd, {address})[0])
    assert _contact(server, address)["unsubscribed_at"]  # at once, before the 250


def _mailed_by_the_app(server: PostroomServer, crowd: SmtpSink, address: str) -> None:
    """Mail from the project's sender to `address` through port 25: the mail engine makes
    it a contact, unvalidated (the importer would refuse a typo); the operator then puts
    it at the big campaign's stage."""
    body = f"From: <{SENDER}>\r\nTo: <{address}>\r\nSubject: your order\r\n\r\nThanks.\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
        smtp.sendmail(SENDER, [address], body.encode())
    _wait(lambda: _to(crowd, {address}), 60, "the app's mail")
    server.cli(
        "contact", "set", address, f"stage={MAIN_STAGE}", "first_name=Typo", "--project", "acme"
    )


def test_every_contact_gets_one_personal_signed_message_through_the_pool(
    postroom: PostroomServer, nsd: NsdServer, world: World, crowd: SmtpSink
) -> None:
    # The four the launch must skip, in contact id order (a duplicate is the later one).
    unsubscribed = _address("u", 0, CROWD)
    _unsubscribed_through_an_earlier_campaign(postroom, crowd, unsubscribed)
    typo = f"someone-{TOKEN}@{TYPO_DOMAIN}"
    _mailed_by_the_app(postroom, crowd, typo)
    twin = f"strasse-{TOKEN}@{CROWD}"
    others = [_address("m", index, CROWD) for index in range(MAIN_COUNT - 5)]
    _import(postroom, "main", [twin, *others, REJECTED], stage=MAIN_STAGE)
    blocked = others[1]
    postroom.cli("contact", "block", blocked, "--project", "acme")
    duplicate = f"straße-{TOKEN}@{CROWD}"  # the mailbox of `twin` (Unicode case folding)
    _import(postroom, "main-later", [duplicate], stage=MAIN_STAGE)
    skipped = {unsubscribed, typo, blocked, duplicate}
    before = Counter(m.rcpt_tos[0] for m in _to(crowd, skipped))
    assert before == {unsubscribed: 1, typo: 1}  # the earlier campaign, the app's mail

    campaign_id = _create(postroom, "main", "--stage", MAIN_STAGE)
    addresses = [twin, *(address for address in others if address != blocked)]
    world.script.set_script({"rcpt": {REJECTED: [550, "5.1.1 no such user here"]}})
    try:
        launched = _launch(postroom, campaign_id)
        assert (launched["matched"], launched["audience"]) == (MAIN_COUNT, len(addresses) + 1)
        _wait(
            lambda: _delivered(postroom, campaign_id) == len(addresses),
            120,
            "the campaign delivered",
        )
        _wait(lambda: _contact(postroom, REJECTED)["blocked"], 20, "the rejected contact blocked")
    finally:
        world.script.set_script({})
    received = _to(crowd, set(addresses))
    assert Counter(m.rcpt_tos[0] for m in received) == Counter(addresses)  # one each
    assert {m.peer_ip for m in received} == POOL_SOURCES
    assert Counter(m.rcpt_tos[0] for m in _to(crowd, skipped)) == before  # none of them
    tokens = set()
    for message in received:
        parsed = _headers(message)
        name = _first_name(message.rcpt_tos[0])
        assert parsed["To"].addresses[0].addr_spec == message.rcpt_tos[0]
        assert str(parsed["Subject"]) == f"News for {name}"
        assert f"Hello {name}!".encode() in message.data  # the text part
        unsubscribe = LIST_UNSUBSCRIBE.fullmatch(str(parsed["List-Unsubscribe"]))
        assert unsubscribe and unsubscribe["link"] == unsubscribe["token"], unsubscribe
        tokens.add(unsubscribe["token"])
        assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        assert parsed["DKIM-Signature"] and f"d={LINKED}" in str(parsed["DKIM-Signature"])
        # VERP: a per-delivery return path on the bounce domain
        assert message.mail_from.startswith("bounce+"), message.mail_from
    assert len(tokens) == len(received)  # a token per contact
    for message in received[:DKIM_CHECKED]:
        # smtp-sink stores LF line ends; the message went out with CRLF.
        report = mail_dkim_verify(nsd, message.data.replace(b"\n", b"\r\n"))
        assert [(v.domain, v.result) for v in report.signatures] == [(LINKED, "pass")]

    leaving = received[-1]
    _unsubscribe_by_mail(postroom, leaving)
    left = _contact(postroom, leaving.rcpt_tos[0])
    assert left["unsubscribed_at"] and not left["blocked"]
    assert [e["campaign_id"] for e in left["events"] if e["kind"] == "unsubscribed"] == [
        campaign_id
    ]
    status = _status(postroom, campaign_id)
    assert (status["state"], status["audience"], status["queued"]) == (
        "sent",
        len(addresses) + 1,
        len(addresses) + 1,
    )
    assert status["skipped"] == {
        "blocked": 1, "unsubscribed": 1, "invalid": 1, "duplicate": 1, "undefined_variable": 0,
    }  # fmt: skip
    assert (status["deferred"], status["complaints"], status["unsubscribed"]) == (0, 0, 1)
    shown = _contact(postroom, REJECTED)
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


def _queued(server: PostroomServer, campaign_id: int) -> int:
    return _count(
        server,
        "SELECT count(*) FROM campaign_recipients WHERE campaign_id = ? AND state = 'queued'",
        campaign_id,
    )


def _kill_the_launch_midway(server: PostroomServer, campaign_id: int) -> None:
    """`campaign launch` killed -9 once it has committed LAUNCH_ROWS_BEFORE_KILL rows of
    its snapshot (it writes them in chunks), before it has written them all."""
    launching = subprocess.Popen(
        [sys.executable, "-m", "postroom.cli.main", "-c", str(server.config_path),
         "campaign", "launch", str(campaign_id)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    rows = "SELECT count(*) FROM campaign_recipients WHERE campaign_id = ?"
    try:
        deadline = time.monotonic() + 60
        while _count(server, rows, campaign_id) < LAUNCH_ROWS_BEFORE_KILL:
            assert launching.poll() is None, "the launch ended before it could be killed"
            assert time.monotonic() < deadline, "the launch never wrote its first rows"
            time.sleep(0.005)
        launching.send_signal(signal.SIGKILL)
    finally:
        launching.kill()
        launching.wait(10)


def test_kill_9_mid_launch_and_mid_production_then_restart_queues_each_recipient_once(
    postroom: PostroomServer, crowd: SmtpSink
) -> None:
    addresses = [_address("k", index, CROWD) for index in range(KILL_COUNT)]
    campaign_id = _campaign(postroom, "killed", addresses)

    # Killed midway, the launch leaves a campaign nothing produces from; the next one
    # sees its launcher gone, starts over, and writes each recipient once.
    _kill_the_launch_midway(postroom, campaign_id)
    status = _status(postroom, campaign_id)
    assert status["state"] == "launching" and status["launched_at"] is None, status
    assert _launch(postroom, campaign_id)["audience"] == KILL_COUNT
    rows = "SELECT count(*) FROM campaign_recipients WHERE campaign_id = ?"
    assert _count(postroom, rows, campaign_id) == KILL_COUNT
    for queued_at_least in KILL_AT_QUEUED:
        _wait(
            lambda at_least=queued_at_least: _queued(postroom, campaign_id) >= at_least,
            120,
            f"{queued_at_least} queued",
        )
        postroom.kill()  # SIGKILL: no drain, leases and in-flight deliveries left behind
        assert _queued(postroom, campaign_id) < KILL_COUNT, "finished before the kill"
        postroom.start()
    _wait(lambda: _stored_state(postroom, campaign_id) == "sent", 120, "the campaign sent")
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
            "SELECT count(*) FROM deliveries WHERE recipient LIKE ?", (f"k%-{TOKEN}@{CROWD}",)
        ).fetchone()[0]
    assert states == {"queued": KILL_COUNT}
    assert sorted(per_recipient) == sorted((address, 1) for address in addresses)
    assert campaign_messages == KILL_COUNT  # no orphan message of a rolled-back row

    _wait(lambda: _delivered(postroom, campaign_id) == KILL_COUNT, 120, "all delivered")
    status = _status(postroom, campaign_id)
    assert (status["state"], status["audience"], status["queued"], status["delivered"]) == (
        "sent",
        KILL_COUNT,
        KILL_COUNT,
        KILL_COUNT,
    )
    # Each recipient's return paths at the sink: one VERP address per delivery row, so a
    # second message to someone would show as a second path. The same one twice is a
    # transaction that reached the sink but whose outcome died with serve: redelivered.
    paths: dict[str, set[str]] = defaultdict(set)

    def every_recipient_at_the_sink() -> bool:
        paths.clear()
        for message in _to(crowd, set(addresses)):
            paths[message.rcpt_tos[0]].add(message.mail_from)
        return len(paths) == KILL_COUNT

    _wait(every_recipient_at_the_sink, 30, "every recipient at the sink")
    assert [address for address, seen in paths.items() if len(seen) != 1] == []
