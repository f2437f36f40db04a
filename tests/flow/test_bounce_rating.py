"""Bounces, complaints and replies move contacts' ratings exactly as the rules say.

A project (acme, domain shop.test) sends one message to four recipients at
far.test, whose MX is an aiosmtpd sink on 127.0.0.60 that refuses
gone@far.test with 550 5.1.1. Each delivery leaves with its own VERP return
path. Then, from outside the relay network: an asynchronous DSN (mailbox full)
comes back to full@'s VERP address, an ARF complaint about angry@ reaches the
feedback address, and friend@ writes to a mailbox of shop.test. Forged bounces
(a bad token, a report naming no valid token) change nothing, and hostile
reports (issue 12) neither hold up RCPT on other connections nor move a rating.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fakes.hostile_bounces import over_smtp
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain
from tests.peers.dns import NsdServer, make_zone
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import AiosmtpdSink, ReceivedMessage

SINK_IP = "127.0.0.60"
OUTSIDE_IP = "127.0.0.70"
RECIPIENTS = ("gone@far.test", "full@far.test", "angry@far.test", "friend@far.test")
PASSWORD = "marble-copper-harbour-88"


@dataclass
class World:
    postroom: PostroomServer
    sink: AiosmtpdSink
    verp: dict[str, str]  # recipient → the VERP return path its delivery used


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    zones = ApplianceZones()
    zones.records["far.test"] = [
        "@ IN MX 10 mx.far.test.",
        f"mx IN A {SINK_IP}",
        # far.test's own mail leaves from OUTSIDE_IP: replies from it authenticate.
        f'@ IN TXT "v=spf1 ip4:{OUTSIDE_IP} -all"',
    ]
    zones.records["shop.test"] = []
    directory = tmp_path_factory.mktemp("rating")
    port = free_tcp_port(SINK_IP)
    script = {"rcpt": {"gone@far.test": [550, "5.1.1 <gone@far.test>: user unknown"]}}
    with (
        NsdServer({**zones.texts(), "shop.test": make_zone("shop.test", [])}) as nsd,
        AiosmtpdSink(SINK_IP, port, hostname="mx.far.test", script=script) as sink,
    ):
        smtp_port = free_tcp_port()
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=smtp_port,
            nameserver=nsd.nameserver(),
            delivery_port=port,
            relay_networks=("127.0.0.1/32",),
            hostname=MAIL_HOST,
            # The relay client stands in for an app: its mail gets VERP return paths too.
            extra='[bounce]\nverp = ["relay", "submission", "campaign"]\n',
        )
        with PostroomServer(directory, text, smtp_port) as postroom:
            postroom.cli("project", "add", "acme")
            link_domain(postroom, nsd, zones, "shop.test")
            postroom.cli("mailbox", "add", "alice@shop.test", "--password-stdin", stdin=PASSWORD)
            token = uuid.uuid4().hex
            with smtplib.SMTP("127.0.0.1", postroom.smtp_port, timeout=10) as client:
                client.sendmail("news@shop.test", list(RECIPIENTS), newsletter(token))
            received = wait_for(sink, token, 3)
            verp = {message.rcpt_tos[0]: message.mail_from for message in received}
            wait_for_state(postroom, "gone@far.test", lambda c: c["blocked"])
            yield World(postroom, sink, verp)


def newsletter(token: str) -> bytes:
    return (
        "From: Shop <news@shop.test>\r\nTo: customers\r\nSubject: news "
        f"{token}\r\nMessage-ID: <{token}@shop.test>\r\n\r\nHello {token}\r\n"
    ).encode()


def wait_for(sink: AiosmtpdSink, token: str, count: int) -> list[ReceivedMessage]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [m for m in sink.messages() if token.encode() in m.data and m.accepted]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"sink got {len(found)} of {count} messages")


def contact(postroom: PostroomServer, address: str) -> dict:
    return postroom.cli_json("contact", "show", address, "--project", "acme")


def wait_for_state(postroom: PostroomServer, address: str, done) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 15
    while True:
        result = postroom.cli(
            "contact", "show", address, "--project", "acme", "--json", check=False
        )
        if result.returncode == 0:
            import json

            found = json.loads(result.stdout)
            if done(found) or time.monotonic() > deadline:
                return found
        elif time.monotonic() > deadline:
            raise AssertionError(result.stderr)
        time.sleep(0.2)


def send_from_outside(  # type: ignore[no-untyped-def]
    postroom: PostroomServer, sender: str, rcpt: str, data: bytes, source: str = OUTSIDE_IP
):
    with smtplib.SMTP(
        "127.0.0.1", postroom.smtp_port, source_address=(source, 0), timeout=10
    ) as client:
        client.ehlo("mx.far.test")
        client.mail(sender)
        code, text = client.rcpt(rcpt)
        if code != 250:
            return code, text
        return client.data(data)


def dsn(verp: str, recipient: str) -> bytes:
    return (
        f"From: Mail Delivery System <mailer-daemon@far.test>\r\nTo: <{verp}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mailbox is full.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.far.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full, over quota\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nFrom: news@shop.test\r\nTo: {recipient}\r\n"
        "--B--\r\n"
    ).encode()


def arf(verp: str, recipient: str) -> bytes:
    return (
        "From: Feedback Loop <fbl@far.test>\r\nTo: fbl@" + MAIL_HOST + "\r\n"
        "Subject: complaint about message from shop.test\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: far-fbl/1.0\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "--F\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nFrom: news@shop.test\r\nTo: {recipient}\r\n"
        "Subject: news\r\n"
        "--F--\r\n"
    ).encode()


def test_each_delivery_has_its_own_signed_return_path(world: World) -> None:
    paths = set(world.verp.values())
    assert len(paths) == 3
    assert all(p.startswith("bounce+") and p.endswith(f"@{MAIL_HOST}") for p in paths)


def test_new_recipients_become_contacts_at_seven(world: World) -> None:
    for address in ("full@far.test", "angry@far.test", "friend@far.test"):
        found = contact(world.postroom, address)
        assert found["events"][0]["kind"] == "created" and found["events"][0]["new_rating"] == 7


def test_a_synchronous_550_5_1_1_blocks_the_contact(world: World) -> None:
    found = contact(world.postroom, "gone@far.test")
    assert (found["rating"], found["blocked"]) == (1, True)
    last = found["events"][-1]
    assert (last["kind"], last["reason"], last["old_rating"]) == ("bounced", "userunknown", 7)
    assert "5.1.1" in last["detail"] and last["delivery_id"]


def test_an_asynchronous_dsn_to_the_verp_address_lowers_the_rating(world: World) -> None:
    verp = world.verp["full@far.test"]
    code, _ = send_from_outside(world.postroom, "", verp, dsn(verp, "full@far.test"))
    assert code == 250
    found = wait_for_state(world.postroom, "full@far.test", lambda c: c["rating"] == 6)
    assert (found["rating"], found["blocked"]) == (6, False)
    last = found["events"][-1]
    assert (last["kind"], last["reason"], last["old_rating"]) == ("bounced", "mailboxfull", 7)
    # The same bounce again (a retry after a 4xx, a duplicate): counted once.
    code, _ = send_from_outside(world.postroom, "", verp, dsn(verp, "full@far.test"))
    assert code == 250
    time.sleep(0.5)
    assert contact(world.postroom, "full@far.test")["rating"] == 6


def test_an_arf_complaint_blocks_the_contact(world: World) -> None:
    verp = world.verp["angry@far.test"]
    code, _ = send_from_outside(
        world.postroom, "fbl@far.test", f"fbl@{MAIL_HOST}", arf(verp, "angry@far.test")
    )
    assert code == 250
    found = wait_for_state(world.postroom, "angry@far.test", lambda c: c["blocked"])
    assert (found["rating"], found["blocked"], found["blocked_cause"]) == (1, True, "complaint")
    assert found["events"][-1]["kind"] == "complained"


def test_a_reply_raises_the_rating_to_ten(world: World) -> None:
    message = b"From: friend@far.test\r\nTo: alice@shop.test\r\nSubject: re: news\r\n\r\nthanks\r\n"
    code, _ = send_from_outside(world.postroom, "friend@far.test", "alice@shop.test", message)
    assert code == 250
    found = wait_for_state(world.postroom, "friend@far.test", lambda c: c["rating"] == 10)
    assert found["rating"] == 10 and found["events"][-1]["kind"] == "replied"


def test_a_forged_reply_lifts_nothing(world: World) -> None:
    """gone@ was blocked by its bounce, a block a genuine reply would lift. A reply
    claiming to be from gone@ but sent from an address far.test's SPF does not list
    is stored (in Junk) and changes nothing."""
    message = b"From: gone@far.test\r\nTo: alice@shop.test\r\nSubject: let me back\r\n\r\nhi\r\n"
    code, _ = send_from_outside(
        world.postroom, "gone@far.test", "alice@shop.test", message, source="127.0.0.71"
    )
    assert code == 250
    time.sleep(0.5)
    found = contact(world.postroom, "gone@far.test")
    assert (found["rating"], found["blocked"]) == (1, True)
    assert found["events"][-1]["kind"] != "replied"


def test_forged_bounces_change_nothing(world: World, tmp_path: Path) -> None:
    before = {a: contact(world.postroom, a) for a in RECIPIENTS}
    genuine = world.verp["friend@far.test"]
    local, _, domain = genuine.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    code, text = send_from_outside(world.postroom, "", forged, dsn(forged, "friend@far.test"))
    assert (code, text[:5]) == (550, b"5.1.1")
    code, _ = send_from_outside(
        world.postroom, "x@far.test", f"fbl@{MAIL_HOST}", arf(forged, "friend@far.test")
    )
    assert code == 250  # accepted, but names no delivery of ours
    time.sleep(0.5)
    assert {a: contact(world.postroom, a) for a in RECIPIENTS} == before


def test_rating_gate_names_what_drags_the_audience_down(world: World) -> None:
    result = world.postroom.cli("rating", "gate", "--project", "acme", "--json", check=False)
    import json

    gate = json.loads(result.stdout)
    # gone 1, full 6, angry 1, friend 10 → 4.5 < 6
    assert (result.returncode, gate["allowed"], gate["audience"]) == (1, False, 4)
    assert gate["average"] == pytest.approx(4.5) and gate["blocked"] == 2
    assert "2 blocked" in gate["message"]


def test_transactional_mail_to_a_blocked_contact_is_sent_and_logged(world: World) -> None:
    token = uuid.uuid4().hex
    with smtplib.SMTP("127.0.0.1", world.postroom.smtp_port, timeout=10) as client:
        refused = client.sendmail("news@shop.test", ["gone@far.test"], newsletter(token))
    assert refused == {}
    assert "rcpt=<gone@far.test> is a blocked contact: send" in world.postroom.log()


HOSTILE = ("many_header_fields", "many_parts", "header_blocks", "deep_multipart")


def test_hostile_reports_do_not_hold_up_rcpt(world: World) -> None:
    """Eight hostile reports at the feedback address at once (the parser of before took
    8 to 18 s of CPU over each of the first three and raised RecursionError on the last);
    meanwhile RCPT to a mailbox on another connection is answered within 3 s. Each report
    gets 250 (its verdict, undefined where a cap stopped it) or 451 4.3.2 (the feedback
    worker was full: the sender retries), and no rating moves."""
    before = {a: contact(world.postroom, a) for a in RECIPIENTS}
    reports = [over_smtp(name) for name in HOSTILE for _ in range(2)]
    with ThreadPoolExecutor(len(reports)) as senders:
        answers = [
            senders.submit(
                send_from_outside, world.postroom, "fbl@far.test", f"fbl@{MAIL_HOST}", report
            )
            for report in reports
        ]
        time.sleep(0.5)  # the reports are on their way
        with smtplib.SMTP(
            "127.0.0.1", world.postroom.smtp_port, source_address=(OUTSIDE_IP, 0), timeout=30
        ) as client:
            client.ehlo("mx.far.test")
            client.mail("friend@far.test")
            started = time.monotonic()
            code, _ = client.rcpt("alice@shop.test")
            waited = time.monotonic() - started
        codes = [answer.result(timeout=60) for answer in answers]
    assert code == 250 and waited < 3.0, f"RCPT took {waited:.1f}s"
    assert all(c == 250 or (c == 451 and t.startswith(b"4.3.2")) for c, t in codes), codes
    log = world.postroom.log()
    assert "bounce parse failed" not in log and "Traceback" not in log
    assert "verdict undefined: MIME depth" in log
    assert {a: contact(world.postroom, a) for a in RECIPIENTS} == before
