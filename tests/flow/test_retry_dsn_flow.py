"""Deferral, retry, permanent failure, expiry and null MX — with the DSNs they produce,
checked field by field as the sender's MX (a real sink) receives them.

Only the expiry test has a short queue lifetime (its own server): everywhere else a
message lives an hour, so the queue commands and the retries never race the clock."""

from __future__ import annotations

import email
import email.message
import email.policy
import time
from collections.abc import Iterator

import pytest
from tests.flow.conftest import World, start_postroom, with_token
from tests.flow.test_relay_flow import message, send, wait_token
from tests.peers.postroom import PostroomServer
from tests.peers.sinks import AiosmtpdSink

pytestmark = pytest.mark.flow

SENDER = "app@sender.test"


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    # Retries every 1-2 s (flow_config's backoff) and a queue lifetime no test reaches:
    # nothing here races the clock, however slowly a busy machine runs the CLI.
    server = start_postroom(
        tmp_path_factory.mktemp("retry"), world, delivery='max_queue_lifetime = "1h"'
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expiring(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    """A queue lifetime of 6 s, for the expiry test alone: it only waits for the DSN."""
    server = start_postroom(
        tmp_path_factory.mktemp("expiry"), world, delivery='max_queue_lifetime = "6s"'
    )
    yield server
    server.stop()


def delivery_status(dsn: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    """The DSN's message/delivery-status part: (per-message fields, per-recipient groups)."""
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    [status] = [
        part for part in parsed.walk() if part.get_content_type() == "message/delivery-status"
    ]
    blocks = status.get_payload()
    return blocks[0], blocks[1:]


def wait_delivery_state(server: PostroomServer, queue_id: str, state: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = server.cli_json("queue", "show", queue_id)
        if all(d["state"] == state for d in shown["deliveries"]):
            return shown
        time.sleep(0.3)
    raise AssertionError(f"{queue_id} not {state}: {shown}")


def test_deferred_then_delivered_on_retry(
    server: PostroomServer, scripted_sink: AiosmtpdSink, token: str
) -> None:
    scripted_sink.set_script({"data": [[451, "4.3.0 greylisted, try again later"]]})
    queue_id = send(server, SENDER, ["user@script.test"], message(token, to="user@script.test"))
    [got] = wait_token(scripted_sink, token)
    shown = wait_delivery_state(server, queue_id, "delivered")
    assert shown["deliveries"][0]["attempts"] == 2
    assert with_token(scripted_sink.transactions(), token)[0].reply[0] == 451
    assert got.rcpt_tos == ("user@script.test",)


def test_permanent_failure_bounces_at_once_with_a_full_dsn(
    server: PostroomServer, world: World, scripted_sink: AiosmtpdSink, token: str
) -> None:
    scripted_sink.set_script(
        {"rcpt": {"gone@script.test": [550, "5.1.1 <gone@script.test>: no such user"]}}
    )
    queue_id = send(
        server,
        SENDER,
        ["gone@script.test", "ok@script.test"],
        message(token, to="gone@script.test"),
    )
    [delivered] = wait_token(scripted_sink, token)
    assert delivered.rcpt_tos == ("ok@script.test",)
    [dsn] = wait_token(world.dsn, token)
    assert dsn.mail_from == "<>"  # the null sender (as aiosmtpd records it): no bounce loops
    assert dsn.rcpt_tos == (SENDER,)
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parsed["To"].addresses[0].addr_spec == SENDER
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert "Undelivered" in parsed["Subject"]
    per_message, recipients = delivery_status(dsn.data)
    assert per_message["Reporting-MTA"] == "dns; relay.postroom.test"
    assert per_message["X-Postroom-Queue-ID"] == queue_id
    assert per_message["Arrival-Date"]
    [failed] = recipients
    assert failed["Final-Recipient"] == "rfc822; gone@script.test"
    assert failed["Action"] == "failed"
    assert failed["Status"] == "5.1.1"
    assert failed["Remote-MTA"] == "dns; mx.script.test"
    assert failed["Diagnostic-Code"] == "smtp; 550 5.1.1 <gone@script.test>: no such user"
    [headers] = [p for p in parsed.walk() if p.get_content_type() == "text/rfc822-headers"]
    assert f"Message-ID: <{token}@src.test>" in headers.get_content()
    shown = server.cli_json("queue", "show", queue_id)
    states = {d["recipient"]: d["state"] for d in shown["deliveries"]}
    assert states == {"gone@script.test": "failed", "ok@script.test": "delivered"}


def test_expiry_bounces_with_status_4_4_7(
    expiring: PostroomServer, world: World, scripted_sink: AiosmtpdSink, token: str
) -> None:
    scripted_sink.set_script({"rcpt": {"slow@script.test": [452, "4.2.2 mailbox full, later"]}})
    queue_id = send(expiring, SENDER, ["slow@script.test"], message(token, to="slow@script.test"))
    [dsn] = wait_token(world.dsn, token)
    _, [failed] = delivery_status(dsn.data)
    assert failed["Action"] == "failed"
    assert failed["Status"] == "4.4.7"
    assert failed["Diagnostic-Code"] == "smtp; 452 4.2.2 mailbox full, later"
    shown = expiring.cli_json("queue", "show", queue_id)
    assert shown["deliveries"][0]["state"] == "failed"
    assert shown["deliveries"][0]["attempts"] >= 2


def test_null_mx_bounces_with_5_1_10(server: PostroomServer, world: World, token: str) -> None:
    send(server, SENDER, ["user@nullmx.test"], message(token, to="user@nullmx.test"))
    [dsn] = wait_token(world.dsn, token)
    _, [failed] = delivery_status(dsn.data)
    assert failed["Status"] == "5.1.10"
    assert failed["Final-Recipient"] == "rfc822; user@nullmx.test"
    assert "null MX" in failed["Diagnostic-Code"]


def test_no_dsn_to_the_null_sender(
    server: PostroomServer, world: World, scripted_sink: AiosmtpdSink, token: str
) -> None:
    scripted_sink.set_script({"rcpt": {"gone@script.test": [550, "5.1.1 no such user"]}})
    queue_id = send(server, "<>", ["gone@script.test"], message(token, to="gone@script.test"))
    wait_delivery_state(server, queue_id, "failed")
    # A control message sent after it reaches the DSN sink; the bounce of a bounce never does.
    control = f"{token}c"
    scripted_sink.set_script({"rcpt": {"gone@script.test": [550, "5.1.1 no such user"]}})
    send(server, SENDER, ["gone@script.test"], message(control, to="gone@script.test"))
    assert len(wait_token(world.dsn, control)) == 1
    original_id = f"<{token}@src.test>".encode()
    assert not [m for m in world.dsn.messages() if original_id in m.data]


def test_unreachable_site_defers_and_queue_commands_act_on_it(
    server: PostroomServer, token: str
) -> None:
    queue_id = send(server, SENDER, ["user@dead.test"], message(token, to="user@dead.test"))
    shown = wait_delivery_state(server, queue_id, "deferred")
    assert shown["deliveries"][0]["last_status"] == "4.4.1"
    assert "127.0.0.30" in shown["deliveries"][0]["last_reply"]
    listed = server.cli_json("queue", "list")
    assert queue_id in [row["id"] for row in listed]
    assert server.cli_json("queue", "hold", queue_id)["changed"] == 1
    assert server.cli_json("queue", "show", queue_id)["deliveries"][0]["state"] == "held"
    held = server.cli_json("queue", "list", "--state", "held")
    assert [row["id"] for row in held] == [queue_id]
    assert server.cli_json("queue", "release", queue_id)["changed"] == 1
    stats = server.cli_json("queue", "stats")
    assert stats["by_destination"].get("dead.test", 0) >= 1
    assert stats["oldest_age_s"] is not None
    assert server.cli_json("queue", "delete", queue_id)["changed"] == 1
    assert server.cli("queue", "show", queue_id, check=False).returncode == 2
