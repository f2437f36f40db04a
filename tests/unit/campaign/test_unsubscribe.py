"""Unsubscribe tokens (signed, compact, case-insensitive) and unsubscribing a contact."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from postroom.campaign.unsubscribe import (
    TOKEN_CHARS,
    UnsubscribeClaim,
    UnsubscribeTokens,
    unsubscribe,
    unsubscribe_links,
)
from postroom.config.schema import BounceConfig, Config, HttpConfig, ServerConfig
from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import contact_events, contacts, projects

TOKENS = UnsubscribeTokens(b"a" * 32)


def test_a_token_reads_back_as_its_claim_in_any_case() -> None:
    token = TOKENS.make(3, 123456, 77)
    assert len(token) == TOKEN_CHARS and token == token.lower()
    for spelling in (token, token.upper()):
        assert TOKENS.read(spelling) == UnsubscribeClaim(3, 123456, 77)


def test_forged_and_altered_tokens_read_as_none() -> None:
    token = TOKENS.make(1, 2, 3)
    assert UnsubscribeTokens(b"b" * 32).read(token) is None
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for index, char in enumerate(token):
        for other in alphabet.replace(char, "")[:3]:
            assert TOKENS.read(token[:index] + other + token[index + 1 :]) is None
    for junk in ("", token[:-1], token + "a", "!" * TOKEN_CHARS, "é" * TOKEN_CHARS):
        assert TOKENS.read(junk) is None
    with pytest.raises(ValueError):
        TOKENS.make(1, 2**32, 3)


def test_the_links_and_the_mailto_local_part_fit_rfc_5321() -> None:
    config = Config(
        server=ServerConfig(hostname="mx.shop.test"),
        http=HttpConfig(public_url="https://u.shop.test/"),
        bounce=BounceConfig(domain="Bounce.Shop.Test"),
    )
    token = TOKENS.make(2**32 - 1, 2**32 - 1, 2**32 - 1)
    links = unsubscribe_links(config, token)
    assert links.https == f"https://u.shop.test/u/{token}"
    assert links.mailto == f"unsubscribe+{token}@bounce.shop.test"
    local = f"unsubscribe+{token}"
    assert len(local) <= 64
    address = f"{local}@Bounce.Shop.Test"
    assert TOKENS.read_address(address, "bounce.shop.test") == UnsubscribeClaim(
        2**32 - 1, 2**32 - 1, 2**32 - 1
    )
    assert TOKENS.read_address(f"bounce+{token}@bounce.shop.test", "bounce.shop.test") is None
    assert TOKENS.read_address(address, "other.test") is None


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path}/db.sqlite")
    upgrade(engine)
    now = time.time()
    with engine.begin() as conn:
        for name in ("acme", "other"):
            conn.execute(insert(projects).values(name=name, created_at=now))
        conn.execute(
            insert(contacts).values(
                project_id=1,
                address="zoe@dest.test",
                rating=7,
                blocked=0,
                blocked_cause="",
                source="import",
                created_at=now,
                updated_at=now,
            )
        )
    return engine


def test_unsubscribe_records_the_first_time_only_and_does_not_move_the_rating(
    engine: Engine,
) -> None:
    claim = UnsubscribeClaim(project_id=1, contact_id=1, campaign_id=42)
    first = unsubscribe(engine, claim, "mailto", now=1000.0)
    again = unsubscribe(engine, claim, "https", now=2000.0)
    assert first is not None and first.first_time and first.address == "zoe@dest.test"
    assert again is not None and not again.first_time
    with engine.connect() as conn:
        contact = conn.execute(select(contacts)).one()
        events = conn.execute(
            select(contact_events).where(contact_events.c.kind == "unsubscribed")
        ).all()
    assert contact.unsubscribed_at == 1000.0
    assert (contact.rating, contact.blocked) == (7, 0)
    assert len(events) == 1
    assert (events[0].reason, events[0].old_rating, events[0].new_rating) == ("mailto", 7, 7)
    assert events[0].detail == "campaign 42"


def test_a_claim_cannot_reach_another_projects_contact(engine: Engine) -> None:
    assert unsubscribe(engine, UnsubscribeClaim(2, 1, 42), "https") is None
    with engine.connect() as conn:
        assert conn.execute(select(contacts.c.unsubscribed_at)).scalar() is None
