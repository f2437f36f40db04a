"""Unsubscribing by mail: the List-Unsubscribe mailto address on port 25 of a running postroom.

A contact of project acme gets its token (made with the appliance secret that
`serve` created); mail to `unsubscribe+TOKEN@<bounce domain>` from outside is
accepted at RCPT and unsubscribes the contact at once (`contact show` lists the
event; `unsubscribed_at` is set); a forged token and an altered one are
refused at RCPT like an unknown bounce address, and change nothing.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.flow.conftest import World, start_postroom
from tests.peers.postroom import PostroomServer

from postroom.campaign.unsubscribe import UNSUBSCRIBE_KEY_INFO, UnsubscribeTokens
from postroom.config import load_config
from postroom.core.secretbox import SecretBox
from postroom.db.engine import make_engine
from postroom.db.models import contacts

BOUNCE_DOMAIN = "relay.postroom.test"  # the flow config's hostname: the bounce domain
OUTSIDE_IP = "127.0.0.70"  # not in the relay networks


@pytest.fixture(scope="module")
def postroom(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostroomServer]:
    server = start_postroom(
        tmp_path_factory.mktemp("unsubscribe"), world, relay_networks=("127.0.0.1/32",)
    )
    server.cli("project", "add", "acme")
    server.cli("contact", "add", "zoe@dest.test", "--project", "acme", "--no-dns")
    yield server
    server.stop()


def unsubscribed_at(server: PostroomServer, address: str) -> float | None:
    engine = make_engine(load_config(server.config_path).database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(contacts.c.unsubscribed_at).where(contacts.c.address == address)
            ).scalar_one()
    finally:
        engine.dispose()


def token_for(server: PostroomServer, address: str, campaign_id: int) -> str:
    config = load_config(server.config_path)
    secret = SecretBox.load(Path(config.secret_key_file), create=False)
    engine = make_engine(config.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(contacts.c.id, contacts.c.project_id).where(contacts.c.address == address)
            ).one()
    finally:
        engine.dispose()
    return UnsubscribeTokens(secret.derive(UNSUBSCRIBE_KEY_INFO)).make(
        row.project_id, row.id, campaign_id
    )


def rcpt(server: PostroomServer, recipient: str, *, data: bool) -> tuple[int, int | None]:
    """(RCPT reply code, DATA reply code or None) from a client outside the relay networks."""
    with smtplib.SMTP(
        "127.0.0.1", server.smtp_port, timeout=20, source_address=(OUTSIDE_IP, 0)
    ) as client:
        client.ehlo("client.dest.test")
        client.mail("zoe@dest.test")
        code, _ = client.rcpt(recipient)
        if code != 250 or not data:
            return code, None
        code_data, _ = client.data(b"Subject: unsubscribe\r\n\r\nPlease unsubscribe me.\r\n")
        return code, code_data


def test_a_forged_or_altered_token_is_refused_at_rcpt(postroom: PostroomServer) -> None:
    real = token_for(postroom, "zoe@dest.test", 42)
    altered = real[:-2] + ("aa" if not real.endswith("aa") else "bb")
    forged = UnsubscribeTokens(b"x" * 32).make(1, 1, 42)
    for token in (altered, forged, "short"):
        code, _ = rcpt(postroom, f"unsubscribe+{token}@{BOUNCE_DOMAIN}", data=False)
        assert code == 550
    assert unsubscribed_at(postroom, "zoe@dest.test") is None


def test_mail_to_the_mailto_address_unsubscribes_at_once(postroom: PostroomServer) -> None:
    token = token_for(postroom, "zoe@dest.test", 42)
    # Upper case: some servers fold local parts; the token survives that.
    assert rcpt(postroom, f"unsubscribe+{token.upper()}@{BOUNCE_DOMAIN}", data=True) == (250, 250)
    assert unsubscribed_at(postroom, "zoe@dest.test") is not None
    shown = postroom.cli_json("contact", "show", "zoe@dest.test", "--project", "acme", "--json")
    events = [event for event in shown["events"] if event["kind"] == "unsubscribed"]
    assert [(event["reason"], event["detail"]) for event in events] == [("mailto", "campaign 42")]
    assert (shown["rating"], shown["blocked"]) == (10, False)  # added by hand: not moved
