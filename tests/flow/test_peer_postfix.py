"""A private Postfix instance relays mail from smtplib to a sink, leaving the system's alone."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from tests.peers.postfix import PostfixRelay
from tests.peers.sinks import SmtpSink

pytestmark = pytest.mark.flow

SYSTEM_QUEUE = Path("/var/spool/postfix")


def system_queue_files() -> set[Path]:
    if not SYSTEM_QUEUE.exists():
        return set()
    return {path for path in SYSTEM_QUEUE.rglob("*") if path.is_file() and "pid" not in path.parts}


def test_private_postfix_relays_three_messages_to_the_sink() -> None:
    system_files_before = system_queue_files()
    with (
        SmtpSink("127.0.0.10") as sink,
        PostfixRelay(listen="127.0.0.1:0", relayhost=f"[127.0.0.10]:{sink.port}") as relay,
    ):
        assert relay.queue_dir.is_relative_to(relay.config_dir)
        with smtplib.SMTP(*relay.address, source_address=("127.0.0.3", 0), timeout=10) as smtp:
            smtp.ehlo("client.test")
            for number in range(3):
                message = f"Subject: relay {number}\r\n\r\nbody {number}\r\n".encode()
                smtp.sendmail("a@client.test", [f"user{number}@remote.test"], message)
        received = sink.wait_for(3, timeout_s=30)
        assert sorted(message.rcpt_tos for message in received) == [
            ("user0@remote.test",),
            ("user1@remote.test",),
            ("user2@remote.test",),
        ]
        # Postfix connects from the address it listens on, and says its own name.
        assert {message.peer_ip for message in received} == {"127.0.0.1"}
        assert {message.helo for message in received} == {"relay.postfix.test"}
        assert all(b"Subject: relay" in message.data for message in received)
        config_dir = relay.config_dir
    assert config_dir is not None and not config_dir.exists()
    assert system_queue_files() == system_files_before
