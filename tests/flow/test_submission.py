"""Submission for apps over real TLS: 587 (STARTTLS) and 465 (implicit TLS) with AUTH.

The world is `submission_world`'s (shop.test linked, far.test's MX a sink, app@,
wide@, rate@, pending@, rejected@). From an app's point of view: AUTH over
STARTTLS and over 465 succeeds, the message arrives at the sink DKIM-signed,
from the transactional source, with the Date and Message-ID it lacked. Refused:
AUTH before STARTTLS (not even offered), MAIL without AUTH, pending/rejected
mailboxes, bad passwords, other senders, the project's message limit; repeated
failures lock out and the lock ends by itself; commands pipelined after
STARTTLS are discarded. swaks too. (The books — limits, rates, dropped
connections — are test_submission_accounting.py's.)
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from tests.flow.linking import MAIL_HOST
from tests.flow.submission_world import (
    LOCKOUT_S,
    PASSWORD,
    TRANSACTIONAL_IP,
    World,
    auth_plain,
    message,
    starttls_client,
    submission_world,
    used,
)
from tests.flow.test_relay_flow import wait_token

from postroom.core.dns import Resolver
from postroom.mta.checks.dkim import DkimResult, verify_dkim
from postroom.mta.checks.lookup import BlockingLookup

pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Two workers: submission is worker 0's alone, so the AUTH lockouts and per-mailbox
    # rates below stay exact (test_submission_accounting runs a single process).
    with submission_world(tmp_path_factory.mktemp("submission"), workers=2) as world:
        yield world


def test_an_app_submits_over_starttls_and_the_mail_arrives_signed(world: World) -> None:
    token = uuid.uuid4().hex
    with starttls_client(world) as client:
        client.login("app@shop.test", PASSWORD)
        refused = client.sendmail(
            "app@shop.test", ["user@far.test"], message("app@shop.test", token)
        )
    assert refused == {}
    [received] = wait_token(world.sink, token)
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
    assert wait_token(world.sink, token)
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
        assert wait_token(world.sink, token)


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
    assert wait_token(world.sink, token)


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
    def attempt(password: str) -> tuple[int, bytes, float, float]:
        """(code, text, when it started, how long it took)."""
        started = time.monotonic()
        with starttls_client(world, source="127.0.0.41") as client:
            try:
                auth_plain(client, "wide@shop.test", password)
            except smtplib.SMTPException as error:
                code, text = getattr(error, "smtp_code", 0), getattr(error, "smtp_error", b"")
                return code, text, started, time.monotonic() - started
        return 235, b"", started, time.monotonic() - started

    results = [attempt(f"guess-{n}-password") for n in range(5)]
    assert [result[0] for result in results[:4]] == [535, 535, 535, 535]
    assert results[3][3] >= 1.0  # the fourth failure is answered slowly
    assert (results[4][0], results[4][1][:5]) == (454, b"4.7.0")
    assert attempt(PASSWORD)[0] == 454  # while locked, even the right password waits
    # The lock ends by itself, and not before LOCKOUT_S after the failure that set it
    # (compared as bounds: that failure began before the lock, the success ended after
    # its end; a busy machine can only make the wait look longer).
    deadline = time.monotonic() + LOCKOUT_S + 60
    while (result := attempt(PASSWORD))[0] == 454 and time.monotonic() < deadline:
        time.sleep(1)
    assert result[0] == 235, result
    assert result[2] + result[3] - results[3][2] >= LOCKOUT_S


def test_smtp_info_tells_an_app_what_it_needs(world: World) -> None:
    info = world.postroom.cli_json("smtp", "info", "app@shop.test")
    assert info["state"] == "approved" and info["username"] == "app@shop.test"
    assert {(p["port"], p["security"]) for p in info["ports"]} >= {
        (world.starttls_port, "STARTTLS"),
    }
    assert json.dumps(info)  # the documented JSON shape is serialisable
    pending = world.postroom.cli_json("smtp", "list", "--state", "pending")
    assert [row["address"] for row in pending] == ["pending@shop.test"]
