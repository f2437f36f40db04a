"""Submission for apps over real TLS: 587 (STARTTLS) and 465 (implicit TLS) with AUTH.

One postroom with a linked domain (shop.test, its DNS what `domain dns` prints,
served by a private NSD), a certificate from a throwaway CA (trustme), two
pools — bulk (default, 127.0.0.2) and transactional (submission, 127.0.0.3) —
and far.test's MX an aiosmtpd sink. Mailboxes: app@ (SMTP access approved),
wide@ (approved, may send as any address of shop.test), rate@ (approved, two
messages a minute), pending@ (requested, under moderation), rejected@ (refused
with a reason).

From an app's point of view: AUTH over STARTTLS and over 465 succeeds, the
message arrives at the sink DKIM-signed, from the transactional source, with
the Date and Message-ID it lacked. Refused: AUTH before STARTTLS (not even
offered), MAIL without AUTH, pending/rejected mailboxes, bad passwords, other
senders, a mailbox past its rate (451), the project's message limit; repeated
failures lock out and the lock ends by itself; commands pipelined after
STARTTLS are discarded. swaks too.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme
from tests.flow.linking import MAIL_HOST, ApplianceZones, link_domain, publish_generated
from tests.peers.dns import NsdServer
from tests.peers.postroom import PostroomServer, flow_config, free_tcp_port
from tests.peers.sinks import AiosmtpdSink, ReceivedMessage

from postroom.core.dns import Resolver
from postroom.mta.checks.dkim import DkimResult, verify_dkim
from postroom.mta.checks.lookup import BlockingLookup

pytestmark = pytest.mark.flow

SINK_IP = "127.0.0.90"
TRANSACTIONAL_IP = "127.0.0.3"
PASSWORD = "copper-meadow-lantern-61"
LOCKOUT_S = 4
POOLS = """
[[egress]]
name = "bulk-1"
address = "127.0.0.2"
helo = "bulk-1.appliance.test"

[[egress]]
name = "tx-1"
address = "127.0.0.3"
helo = "tx-1.appliance.test"

[[pool]]
name = "bulk"
sources = ["bulk-1"]

[[pool]]
name = "transactional"
sources = ["tx-1"]
"""


@dataclass
class World:
    postroom: PostroomServer
    nsd: NsdServer
    sink: AiosmtpdSink
    ca: trustme.CA
    starttls_port: int
    tls_port: int

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("submission")
    ca = trustme.CA()
    certificate = ca.issue_cert(MAIL_HOST, "127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    certificate.private_key_and_cert_chain_pem.write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    zones = ApplianceZones()
    zones.records.update(
        {"shop.test": [], "far.test": ["@ IN MX 10 mx.far.test.", f"mx IN A {SINK_IP}"]}
    )
    sink_port = free_tcp_port(SINK_IP)
    with (
        NsdServer(zones.texts()) as nsd,
        AiosmtpdSink(SINK_IP, sink_port, hostname="mx.far.test") as sink,
    ):
        port, starttls_port, tls_port = free_tcp_port(), free_tcp_port(), free_tcp_port()
        text = flow_config(
            state_dir=directory / "state",
            smtp_port=port,
            nameserver=nsd.nameserver(),
            delivery_port=sink_port,
            relay_networks=("127.0.0.1/32",),
            hostname=MAIL_HOST,
            delivery='default_pool = "bulk"',
            extra=POOLS
            + f'\n[tls]\ncert = "{cert}"\nkey = "{key}"\n'
            + "\n[smtp.submission]\n"
            + f'listen = ["127.0.0.1:{starttls_port}"]\n'
            + f'tls_listen = ["127.0.0.1:{tls_port}"]\n'
            + 'pool = "transactional"\n'
            + f'auth_max_failures = 4\nauth_lockout = "{LOCKOUT_S}s"\n',
        )
        with PostroomServer(directory, text, port).start() as postroom:
            postroom.cli("project", "add", "acme", "--message-limit", "1000")
            link_domain(postroom, nsd, zones, "shop.test")
            publish_generated(postroom, nsd, zones, "shop.test")
            for name in ("app", "wide", "pending", "rejected", "rate"):
                address = f"{name}@shop.test"
                postroom.cli("mailbox", "add", address, "--password-stdin", stdin=PASSWORD)
                postroom.cli("smtp", "request", address, "--purpose", "receipts", "--volume", "500")
            for name in ("app", "wide", "rate"):
                postroom.cli("smtp", "approve", f"{name}@shop.test")
            postroom.cli("smtp", "limits", "rate@shop.test", "--per-minute", "2")
            postroom.cli("smtp", "senders", "wide@shop.test", "--domain")
            postroom.cli("smtp", "reject", "rejected@shop.test", "--reason", "no volume plan")
            yield World(postroom, nsd, sink, ca, starttls_port, tls_port)


def message(sender: str, token: str, to: str = "user@far.test") -> bytes:
    # No Date and no Message-ID: submission adds them (RFC 6409 8.2, 8.3).
    return (
        f"From: App <{sender}>\r\nTo: {to}\r\nSubject: {token}\r\n\r\nreceipt {token}\r\n".encode()
    )


def starttls_client(world: World, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", world.starttls_port, timeout=15, source_address=(source, 0))
    client.ehlo("app.client.test")
    client.starttls(context=world.client_context())
    client.ehlo("app.client.test")
    return client


def auth_plain(client: smtplib.SMTP, user: str, password: str) -> None:
    """One AUTH PLAIN (login() would try LOGIN too after a refusal: two failures)."""
    client.user, client.password = user, password
    client.auth("PLAIN", client.auth_plain)


def wait_for(sink: AiosmtpdSink, token: str) -> ReceivedMessage:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for received in sink.messages():
            if token.encode() in received.data:
                return received
        time.sleep(0.1)
    raise AssertionError("the sink did not receive the message")


def used(world: World) -> int:
    (project,) = [p for p in world.postroom.cli_json("project", "list") if p["name"] == "acme"]
    return int(project["used"])


def test_an_app_submits_over_starttls_and_the_mail_arrives_signed(world: World) -> None:
    token = uuid.uuid4().hex
    with starttls_client(world) as client:
        client.login("app@shop.test", PASSWORD)
        refused = client.sendmail(
            "app@shop.test", ["user@far.test"], message("app@shop.test", token)
        )
    assert refused == {}
    received = wait_for(world.sink, token)
    assert received.peer_ip == TRANSACTIONAL_IP  # the submission pool's source
    header = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nDate: " in header and b"Message-ID: <" in header
    assert b"with ESMTPSA" in header
    assert received.mail_from.startswith("bounce+")  # submission mail leaves with VERP

    async def verify() -> list:
        host, _, port = world.nsd.nameserver().rpartition(":")
        lookup = BlockingLookup(Resolver([(host, int(port))]), asyncio.get_running_loop())
        return await asyncio.to_thread(verify_dkim, lookup, received.data)

    verdicts = asyncio.run(verify())
    assert [(v.result, v.domain) for v in verdicts] == [(DkimResult.PASS, "shop.test")]


def test_implicit_tls_on_465_and_swaks_on_both_ports(world: World) -> None:
    token = uuid.uuid4().hex
    with smtplib.SMTP_SSL(
        "127.0.0.1", world.tls_port, timeout=15, context=world.client_context()
    ) as client:
        client.login("app@shop.test", PASSWORD)
        client.sendmail("app@shop.test", ["user@far.test"], message("app@shop.test", token))
    wait_for(world.sink, token)
    for port, tls in ((world.starttls_port, "--tls"), (world.tls_port, "--tls-on-connect")):
        token = uuid.uuid4().hex
        result = subprocess.run(
            [
                "swaks",
                "--server",
                f"127.0.0.1:{port}",
                tls,
                "--auth",
                "PLAIN",
                "--auth-user",
                "app@shop.test",
                "--auth-password",
                PASSWORD,
                "--from",
                "app@shop.test",
                "--to",
                "user@far.test",
                "--header",
                f"Subject: swaks {token}",
                "--body",
                f"swaks {token}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "235 2.7.0 Authentication successful" in result.stdout
        wait_for(world.sink, token)


def test_no_auth_before_starttls_and_no_mail_without_auth(world: World) -> None:
    with smtplib.SMTP("127.0.0.1", world.starttls_port, timeout=15) as client:
        client.ehlo("app.client.test")
        assert client.has_extn("starttls") and not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN AGFwcEBzaG9wLnRlc3QAeA==")
        assert (code, text[:5]) == (530, b"5.7.0"), text
        code, text = client.docmd("MAIL", "FROM:<app@shop.test>")
        assert (code, text[:5]) == (530, b"5.7.0"), text
    with starttls_client(world) as client:
        assert client.has_extn("auth")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        code, text = client.docmd("MAIL", "FROM:<app@shop.test>")
        assert (code, text[:5]) == (530, b"5.7.0"), text


@pytest.mark.parametrize(
    ("user", "password", "expected"),
    [
        ("pending@shop.test", PASSWORD, b"not approved"),
        ("rejected@shop.test", PASSWORD, b"not approved"),
        ("app@shop.test", "wrong-password-123", b"credentials invalid"),
        ("nobody@shop.test", PASSWORD, b"credentials invalid"),
    ],
)
def test_unapproved_mailboxes_and_bad_credentials_get_535(
    world: World, user: str, password: str, expected: bytes
) -> None:
    # From an address of its own: the brute-force test counts failures from 127.0.0.41.
    with (
        starttls_client(world, source="127.0.0.40") as client,
        pytest.raises(smtplib.SMTPAuthenticationError) as refused,
    ):
        auth_plain(client, user, password)
    assert refused.value.smtp_code == 535
    assert refused.value.smtp_error.startswith(b"5.7.8") and expected in refused.value.smtp_error


def test_senders_must_be_owned(world: World) -> None:
    with starttls_client(world) as client:
        client.login("app@shop.test", PASSWORD)
        code, text = client.mail("boss@shop.test")
        assert (code, text[:5]) == (553, b"5.7.1"), text
        client.rset()
        code, _ = client.mail("app@shop.test")
        assert code == 250
        assert client.rcpt("user@far.test")[0] == 250
        code, text = client.data(message("boss@shop.test", "spoof"))
        assert (code, text[:5]) == (553, b"5.7.1"), text
    token = uuid.uuid4().hex
    with starttls_client(world) as client:
        client.login("wide@shop.test", PASSWORD)
        client.sendmail("boss@shop.test", ["user@far.test"], message("boss@shop.test", token))
        code, text = client.mail("boss@other.test")
        assert (code, text[:5]) == (553, b"5.7.1"), text
    wait_for(world.sink, token)


def test_a_mailbox_past_its_rate_is_deferred(world: World) -> None:
    with starttls_client(world) as client:
        client.login("rate@shop.test", PASSWORD)
        replies = []
        for _ in range(3):
            replies.append(client.mail("rate@shop.test"))
            client.rset()
    assert [code for code, _ in replies] == [250, 250, 451], replies
    assert replies[2][1].startswith(b"4.7.1") and b"rate" in replies[2][1]


def test_the_project_message_limit_refuses_and_queues_nothing(world: World) -> None:
    before = used(world)
    with starttls_client(world) as client:
        client.login("app@shop.test", PASSWORD)
        client.mail("app@shop.test")
        assert client.rcpt("one@far.test")[0] == 250
        client.rset()  # a transaction that does not finish gives its count back
    assert used(world) == before
    world.postroom.cli("project", "limit", "acme", str(before))
    try:
        queued_before = world.postroom.cli_json("queue", "stats")
        with starttls_client(world) as client:
            client.login("app@shop.test", PASSWORD)
            client.mail("app@shop.test")
            code, text = client.rcpt("user@far.test")
        assert (code, text[:5]) == (452, b"4.7.1"), text
        assert b"limit" in text
        assert world.postroom.cli_json("queue", "stats") == queued_before
        assert used(world) == before
    finally:
        world.postroom.cli("project", "limit", "acme", "1000")


def test_commands_pipelined_after_starttls_are_discarded(world: World) -> None:
    with socket.create_connection(("127.0.0.1", world.starttls_port), timeout=10) as raw:
        stream = raw.makefile("rb")
        assert stream.readline().startswith(b"220")
        raw.sendall(b"EHLO app.client.test\r\n")
        while not stream.readline().startswith(b"250 "):
            pass
        # The injected NOOP travels in the same packet as STARTTLS, in clear text.
        raw.sendall(b"STARTTLS\r\nNOOP\r\n")
        assert stream.readline().startswith(b"220")
        with world.client_context().wrap_socket(raw, server_hostname=MAIL_HOST) as tls:
            reader = tls.makefile("rb")
            tls.sendall(b"EHLO app.client.test\r\n")
            first = reader.readline()
    # Had the NOOP been kept, its "250 2.0.0 OK" would come before EHLO's reply.
    assert first.startswith(b"250-") and MAIL_HOST.encode() in first, first


def test_brute_force_is_throttled_then_locked_and_the_lock_ends(world: World) -> None:
    # wide@ and 127.0.0.41 have no failures yet (the 535 tests use app@ and 127.0.0.40).
    def attempt(password: str) -> tuple[int, bytes, float]:
        started = time.monotonic()
        with starttls_client(world, source="127.0.0.41") as client:
            try:
                auth_plain(client, "wide@shop.test", password)
            except smtplib.SMTPException as error:
                code, text = getattr(error, "smtp_code", 0), getattr(error, "smtp_error", b"")
                return code, text, time.monotonic() - started
        return 235, b"", time.monotonic() - started

    results = [attempt(f"guess-{n}-password") for n in range(5)]
    assert [code for code, _, _ in results[:4]] == [535, 535, 535, 535]
    assert results[3][2] >= 1.0  # the fourth failure is answered slowly
    assert (results[4][0], results[4][1][:5]) == (454, b"4.7.0")
    assert attempt(PASSWORD)[0] == 454  # while locked, even the right password waits
    time.sleep(LOCKOUT_S + 0.5)
    assert attempt(PASSWORD)[0] == 235  # the lock ends by itself


def test_smtp_info_tells_an_app_what_it_needs(world: World) -> None:
    info = world.postroom.cli_json("smtp", "info", "app@shop.test")
    assert info["state"] == "approved" and info["username"] == "app@shop.test"
    assert {(p["port"], p["security"]) for p in info["ports"]} >= {
        (world.starttls_port, "STARTTLS"),
    }
    assert json.dumps(info)  # the documented JSON shape is serialisable
    pending = world.postroom.cli_json("smtp", "list", "--state", "pending")
    assert [row["address"] for row in pending] == ["pending@shop.test"]
