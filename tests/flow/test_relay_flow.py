"""Relay flow: a real client submits to postroom, postroom delivers to real sinks via
the DNS server's MX records, from the source address of the message's pool."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import subprocess
import time

import pytest
from tests.flow.conftest import World, with_token
from tests.peers.postroom import PostroomServer

pytestmark = pytest.mark.flow


def message(
    token: str, *, sender: str = "app@src.test", to: str = "user@dest.test", headers: str = ""
) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: flow {token}\r\n"
        f"Message-ID: <{token}@src.test>\r\n{headers}\r\nbody {token}\r\n"
    ).encode()


def send(server: PostroomServer, sender: str, recipients: list[str], data: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.ehlo("app.src.test")
        client.mail(sender)
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            assert code == 250, reply
        code, reply = client.data(data)
        assert code == 250, reply
    match = re.search(rb"queued as ([0-9A-Z]{16})", reply)
    assert match, reply
    return match.group(1).decode()


def wait_token(sink, token: str, count: int = 1, timeout_s: float = 60.0):  # type: ignore[no-untyped-def]
    """What `sink` received with `token`, once there are `count` (or after `timeout_s`:
    generous, as a busy machine is slow; only a failing test waits that long)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = with_token(sink.messages(), token)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    return with_token(sink.messages(), token)


def test_swaks_relay_is_delivered_from_the_default_pool_source(
    relay: PostroomServer, world: World, token: str
) -> None:
    result = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{relay.smtp_port}",
            "--helo",
            "app.src.test",
            "--from",
            "app@src.test",
            "--to",
            "user@dest.test",
            "--header",
            f"Subject: swaks {token}",
            "--body",
            f"hello {token}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    queue_id = re.search(r"<-  250 2\.0\.0 Ok: queued as ([0-9A-Z]{16})", result.stdout).group(1)
    received = wait_token(world.dest, token)
    assert len(received) == 1
    got = received[0]
    assert got.peer_ip == "127.0.0.2"  # transactional pool → tx-1
    assert got.helo == "tx-1.relay.postroom.test"
    assert got.mail_from == "app@src.test"
    assert list(got.rcpt_tos) == ["user@dest.test"]
    parsed = email.message_from_bytes(got.data, policy=email.policy.default)
    received_header = parsed.get_all("Received")[0]
    assert f"id {queue_id}" in received_header
    assert "by relay.postroom.test (postroom)" in received_header
    assert "[127.0.0.1]" in received_header
    assert token in parsed.get_content()


@pytest.mark.parametrize(
    ("pool", "source_ip", "helo"),
    [
        ("transactional", "127.0.0.2", "tx-1.relay.postroom.test"),
        ("mailings", "127.0.0.3", "bulk-1.relay.postroom.test"),
        ("mailings-2", "127.0.0.4", "bulk-2.relay.postroom.test"),
    ],
)
def test_pool_header_binds_the_pool_source_and_is_removed(
    relay: PostroomServer, world: World, token: str, pool: str, source_ip: str, helo: str
) -> None:
    send(
        relay,
        "app@src.test",
        ["user@dest.test"],
        message(token, headers=f"X-Postroom-Pool: {pool}\r\n"),
    )
    [got] = wait_token(world.dest, token)
    assert (got.peer_ip, got.helo) == (source_ip, helo)
    assert b"X-Postroom-Pool" not in got.data


def test_unknown_pool_is_refused_naming_it(relay: PostroomServer, token: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        client.ehlo("app.src.test")
        client.mail("app@src.test")
        client.rcpt("user@dest.test")
        code, reply = client.data(message(token, headers="X-Postroom-Pool: nosuchpool\r\n"))
    assert code == 550
    assert reply.startswith(b"5.7.1")
    assert b"nosuchpool" in reply


def test_rule_by_sender_domain_chooses_the_pool(
    relay: PostroomServer, world: World, token: str
) -> None:
    send(relay, "news@bulk.test", ["user@dest.test"], message(token, sender="news@bulk.test"))
    [got] = wait_token(world.dest, token)
    assert got.peer_ip == "127.0.0.4"


def test_recipients_of_one_domain_share_one_transaction_and_connections_are_reused(
    relay: PostroomServer, world: World, token: str
) -> None:
    recipients = [f"user{i}@dest.test" for i in range(3)]
    send(relay, "app@src.test", recipients, message(token))
    [got] = wait_token(world.dest, token)
    assert sorted(got.rcpt_tos) == recipients
    # Several messages in a burst travel over fewer connections than messages.
    burst = f"{token}b"
    for index in range(6):
        send(relay, "app@src.test", ["user@dest.test"], message(f"{burst}{index}"))
    got = wait_token(world.dest, burst, count=6)
    assert len(got) == 6
    assert len({m.peer_port for m in got}) < 6


def test_implicit_mx_and_mx_fallback(relay: PostroomServer, world: World, token: str) -> None:
    send(
        relay, "app@src.test", ["user@implicit.test"], message(f"{token}i", to="user@implicit.test")
    )
    send(relay, "app@src.test", ["user@multi.test"], message(f"{token}m", to="user@multi.test"))
    assert len(wait_token(world.dest, f"{token}i")) == 1
    # multi.test's first MX (127.0.0.30) refuses connections; the second one takes it.
    [got] = wait_token(world.dest, f"{token}m")
    assert list(got.rcpt_tos) == ["user@multi.test"]
    assert got.peer_ip == "127.0.0.2"


def test_queue_show_and_stats_describe_a_delivered_message(
    relay: PostroomServer, world: World, token: str
) -> None:
    queue_id = send(relay, "app@src.test", ["user@dest.test"], message(token))
    wait_token(world.dest, token)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = relay.cli_json("queue", "show", queue_id)
        if shown["deliveries"][0]["state"] == "delivered":
            break
        time.sleep(0.2)
    delivery = shown["deliveries"][0]
    assert delivery["state"] == "delivered"
    assert delivery["last_reply"].startswith("smtp; 250")
    assert delivery["remote_mta"] == "mx.dest.test"
    assert delivery["source"] == "tx-1"
    stats = relay.cli_json("queue", "stats")
    assert stats["by_state"]["delivered"] >= 1
    missing = relay.cli("queue", "show", "0000000000000000", check=False)
    assert missing.returncode == 2  # not found
    assert "no message with queue id" in missing.stderr
