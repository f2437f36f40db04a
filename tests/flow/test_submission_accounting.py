"""Submission's books over real TLS: the project's message limit when clients vanish
mid-transaction, rates counted per recipient, the AUTH lockout of an account whatever
its spelling, and From fields that name no allowed address.

The world is `submission_world`'s (its own instance for this module).
"""

from __future__ import annotations

import base64
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from tests.flow.linking import MAIL_HOST
from tests.flow.submission_world import (
    PASSWORD,
    RATE_PER_DAY,
    World,
    message,
    starttls_client,
    submission_world,
    used,
)

pytestmark = pytest.mark.flow

RECIPIENTS_PER_TRANSACTION = 5
DROPPED_CONNECTIONS = 16
QUIET_STATES = ("queued", "inflight", "deferred")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with submission_world(tmp_path_factory.mktemp("accounting")) as world:
        yield world


def by_state(world: World) -> dict[str, int]:
    return dict(world.postroom.cli_json("queue", "stats")["by_state"])


def pipelined_then_dropped(world: World, token: str, drop: str) -> None:
    """AUTH, MAIL, 5 RCPT, DATA, the message and "." in one write over 465, then the
    connection goes away: at once, or when 354 came back (the server is then reading
    the message or already queueing it), after a pause of `drop` seconds."""
    credentials = base64.b64encode(b"\0app@shop.test\0" + PASSWORD.encode()).decode()
    lines = [
        "EHLO app.client.test",
        f"AUTH PLAIN {credentials}",
        "MAIL FROM:<app@shop.test>",
        *(f"RCPT TO:<{token}-{n}@far.test>" for n in range(RECIPIENTS_PER_TRANSACTION)),
        "DATA",
        "From: App <app@shop.test>",
        f"Subject: {token}",
        "",
        f"dropped {token}",
        ".",
    ]
    raw = socket.create_connection(("127.0.0.1", world.tls_port), timeout=15)
    with world.client_context().wrap_socket(raw, server_hostname=MAIL_HOST) as tls:
        reader = tls.makefile("rb")
        assert reader.readline().startswith(b"220")
        tls.sendall("".join(f"{line}\r\n" for line in lines).encode())
        if drop != "at once":
            for _ in range(40):  # bounded: EHLO's lines, 235, 250s, 354
                reply = reader.readline()
                if not reply or reply.startswith((b"354", b"4", b"5")):
                    break
            time.sleep(float(drop))
        # A half-close: aiosmtpd cancels the session's handler at end of file.
        tls.shutdown(socket.SHUT_WR)


def test_connections_dropped_mid_transaction_never_bypass_the_project_limit(
    world: World,
) -> None:
    """Issue 12, item 2: whatever moment the client vanishes, `used` is exactly what was
    queued, never past the limit, and every queued recipient reaches the sink."""
    before_used, before = used(world), by_state(world)
    limit = before_used + 2 * RECIPIENTS_PER_TRANSACTION
    world.postroom.cli("project", "limit", "acme", str(limit))
    token = uuid.uuid4().hex[:12]
    drops = ("at once", "0", "0.005", "0.02", "0.1")
    try:
        for number in range(DROPPED_CONNECTIONS):
            pipelined_then_dropped(world, f"{token}{number:02}", drops[number % len(drops)])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            states = by_state(world)
            if not any(states[state] for state in QUIET_STATES):
                break
            time.sleep(0.5)
        queued = sum(states.values()) - sum(before.values())
        assert (used(world) - before_used, used(world) <= limit) == (queued, True), states
        assert not any(states[state] for state in QUIET_STATES), states  # none left leased
        delivered = states["delivered"] - before["delivered"]
        arrived = [m for m in world.sink.messages() if token.encode() in m.data]
        assert len(arrived) == delivered == queued  # VERP: one message per recipient
    finally:
        world.postroom.cli("project", "limit", "acme", "1000")


def test_rates_count_accepted_recipients_not_transactions(world: World) -> None:
    """Issue 12, item 3: rate@ may send RATE_PER_DAY recipients a day, in any number of
    transactions; the one past it is deferred, and a refused recipient costs nothing."""
    with starttls_client(world) as client:
        client.login("rate@shop.test", PASSWORD)
        first = [client.mail("rate@shop.test")[0]]
        first += [client.rcpt(to)[0] for to in ("not-an-address", "a@far.test", "b@far.test")]
        client.rset()  # its recipients stay counted: the rate paces the work asked for
        second = [client.mail("rate@shop.test")[0]]
        second += [client.rcpt(f"{n}@far.test")[0] for n in range(RATE_PER_DAY - 2)]
        code, text = client.rcpt("one-too-many@far.test")
        assert (code, text[:5]) == (451, b"4.7.1"), text
        assert client.data(message("rate@shop.test", uuid.uuid4().hex))[0] == 250
        code, text = client.mail("rate@shop.test")
    assert first == [250, 501, 250, 250]  # 501 5.1.3: bad recipient address syntax
    assert second == [250] * (RATE_PER_DAY - 1)
    assert (code, text[:5]) == (451, b"4.7.1"), text


def auth_plain_utf8(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    """AUTH PLAIN with a UTF-8 username (smtplib's own encodes ASCII only)."""
    blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return client.docmd("AUTH", f"PLAIN {blob}")


def test_the_auth_lock_is_the_accounts_whatever_the_spelling(world: World) -> None:
    """Issue 12, item 4: four spellings of wide@shop.test, each failing once from an
    address of its own (no network counts four), lock the account for every spelling."""
    spellings = ["wide@shop.test.", "wide@shop.test..", "WIDE@ｓｈｏｐ.ｔｅｓｔ", "Wide@Shop.Test"]
    codes = []
    for number, spelling in enumerate(spellings):
        with starttls_client(world, source=f"127.0.0.{50 + number}") as client:
            codes.append(auth_plain_utf8(client, spelling, "wrong-password-123")[0])
    assert codes == [535, 535, 535, 535]
    for number, spelling in enumerate(["wide@shop.test", *spellings]):
        with starttls_client(world, source=f"127.0.0.{60 + number}") as client:
            code, text = auth_plain_utf8(client, spelling, PASSWORD)
        assert (code, text[:5]) == (454, b"4.7.0"), (spelling, text)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("From: \r\n", (550, b"5.6.0")),
        ("From: App\r\n", (550, b"5.6.0")),
        ("From: undisclosed-recipients:;\r\n", (550, b"5.6.0")),
        ('From: "App <app@shop.test>\r\n', (550, b"5.6.0")),
        ("From: app@shop.test, wide@shop.test\r\n", (550, b"5.6.0")),  # no Sender
        ("From: app@shop.test, wide@shop.test\r\nSender: app@shop.test\r\n", (553, b"5.7.1")),
        ("From: app@shop.test\r\nSender: boss@shop.test\r\n", (553, b"5.7.1")),
        # Not a header field: DKIM verifiers could not read the section either.
        ("From: app@shop.test\r\nthis line is no field\r\n", (550, b"5.6.0")),
    ],
)
def test_from_must_name_addresses_the_mailbox_owns(
    world: World, headers: str, expected: tuple[int, bytes]
) -> None:
    """Issue 12, item 7; the refused message's reservation goes back."""
    before = used(world)
    with starttls_client(world) as client:
        client.login("app@shop.test", PASSWORD)
        client.mail("app@shop.test")
        assert client.rcpt("user@far.test")[0] == 250
        code, text = client.data(f"{headers}Subject: x\r\n\r\nx\r\n".encode())
        client.rset()
    assert (code, text[:5]) == expected, text
    deadline = time.monotonic() + 30  # the release is written after the reply
    while used(world) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert used(world) == before
