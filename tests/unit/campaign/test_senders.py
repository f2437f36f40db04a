"""The sender rules over a real SQLite database: the code, its mail, its tries and expiry,
which sender a bare `confirm` means, removal and the launcher's `require_confirmed`."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from tests.unit.campaign.senders_world import (
    HOSTNAME,
    LIFETIME_S,
    MAX_FAILURES,
    START,
    SenderWorld,
)

from postroom.campaign.sender_code import code_digest
from postroom.campaign.sender_reach import SenderMode
from postroom.campaign.senders import SenderError, require_confirmed
from postroom.db.models import SenderState, campaigns, deliveries, messages, senders, templates


@pytest.fixture
def world(tmp_path: Path) -> SenderWorld:
    return SenderWorld(tmp_path)


def stored_row(world: SenderWorld, sender_id: int):  # type: ignore[no-untyped-def]
    with world.engine.connect() as conn:
        return conn.execute(select(senders).where(senders.c.id == sender_id)).one()


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_add_queues_the_code_mail_with_the_row_and_stores_only_an_hmac(
    world: SenderWorld,
) -> None:
    record = world.senders.add("acme", "Bot@Far.TEST.", "Bot Ü")
    assert (record.address, record.state, record.mode) == (
        "bot@far.test",
        SenderState.UNCONFIRMED,
        SenderMode.SEND_ONLY,
    )
    assert record.code_expires_at == START + LIFETIME_S and record.code_failures == 0
    code = world.mailed_code(record)
    row = stored_row(world, record.id)
    assert code not in row.code_hmac and len(row.code_hmac) == 64
    with world.engine.connect() as conn:
        message = conn.execute(
            select(messages).where(messages.c.id == record.code_message_id)
        ).one()
        (delivery,) = conn.execute(
            select(deliveries).where(deliveries.c.message_id == record.code_message_id)
        ).all()
    assert message.mail_from == "" and message.origin == "submission"  # null sender: no backscatter
    assert message.pool == world.config.transactional_pool
    assert (delivery.recipient, delivery.state) == ("bot@far.test", "queued")
    parsed = email.message_from_bytes(message.body, policy=email.policy.default)
    for field in ("Date", "Message-ID", "From", "To", "Subject", "MIME-Version"):
        assert len(parsed.get_all(field) or []) == 1, field
    assert parsed["From"].addresses[0].addr_spec == f"postmaster@{HOSTNAME}"
    assert str(parsed["To"]) == "Bot Ü <bot@far.test>"
    assert code in parsed["Subject"]
    assert code in parsed.get_body(("plain",)).get_content()
    assert code in parsed.get_body(("html",)).get_content()
    assert b"\r\n" in message.body and max(map(len, message.body.split(b"\r\n"))) <= 998


def test_a_sender_on_a_verified_domain_of_its_project_writes_its_own_code_mail(
    world: SenderWorld,
) -> None:
    record = world.senders.add("acme", "news@acme.test", "Acme News")
    assert record.mode is SenderMode.TWO_WAY
    parsed = email.message_from_bytes(world.mail(record), policy=email.policy.default)
    assert str(parsed["From"]) == "Acme News <news@acme.test>"
    # Unverified, or another project's verified domain: never two-way.
    assert world.senders.add("acme", "news@pending.test").mode is SenderMode.SEND_ONLY
    with pytest.raises(SenderError, match=r"other\.test is linked to another project"):
        world.senders.add("acme", "news@other.test")
    assert world.senders.add("other", "news@other.test").mode is SenderMode.TWO_WAY


def test_nothing_is_stored_when_the_code_mail_cannot_be_queued(
    world: SenderWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**_: object) -> str:
        raise RuntimeError("queue full")

    monkeypatch.setattr(world.senders._outbox, "send", refuse)
    with pytest.raises(RuntimeError):
        world.senders.add("acme", "bot@far.test")
    assert world.senders.list("acme") == []


@pytest.mark.parametrize(
    ("address", "name", "problem"),
    [
        ("not-an-address", "", "not an address"),
        ("bot@localhost", "", "single label"),
        ("bot@far.test", "Bot\x1b[31m", "control"),
        ("bot@far.test", "x" * 201, "longer than 200"),
    ],
)
def test_bad_input_is_refused_with_one_line(
    world: SenderWorld, address: str, name: str, problem: str
) -> None:
    with pytest.raises(SenderError, match=problem) as refused:
        world.senders.add("acme", address, name)
    assert "\n" not in str(refused.value)
    assert world.senders.list("acme") == []


def test_the_right_code_confirms_once(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    confirmed = world.senders.confirm("BOT@far.test", world.mailed_code(record), "acme")
    assert confirmed.state is SenderState.CONFIRMED and confirmed.confirmed_at == START
    assert stored_row(world, record.id).code_hmac is None
    with pytest.raises(SenderError, match="already confirmed"):
        world.senders.confirm("bot@far.test", world.mailed_code(record), "acme")


def test_wrong_codes_are_counted_in_the_database_then_even_the_right_one_is_refused(
    world: SenderWorld,
) -> None:
    record = world.senders.add("acme", "bot@far.test")
    code = world.mailed_code(record)
    with pytest.raises(SenderError, match=r"wrong code for bot@far\.test: 2 tries left"):
        world.senders.confirm("bot@far.test", other_code(code), "acme")
    assert stored_row(world, record.id).code_failures == 1  # committed despite the refusal
    with pytest.raises(SenderError, match="1 try left"):
        world.senders.confirm("bot@far.test", other_code(code), "acme")
    with pytest.raises(SenderError, match="no tries left; request a new one"):
        world.senders.confirm("bot@far.test", other_code(code), "acme")
    with pytest.raises(SenderError, match=r"too many wrong codes.*resend-code bot@far\.test"):
        world.senders.confirm("bot@far.test", code, "acme")
    assert stored_row(world, record.id).code_failures == MAX_FAILURES
    assert world.senders.show("bot@far.test", "acme").state is SenderState.UNCONFIRMED


def test_a_malformed_code_is_bad_input_and_costs_no_try(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    for typed in ("12345", "1234567", "abcdef", "", "1" * 100):
        with pytest.raises(SenderError, match="not a confirmation code"):
            world.senders.confirm("bot@far.test", typed, "acme")
    assert stored_row(world, record.id).code_failures == 0
    code = world.mailed_code(record)
    assert world.senders.confirm("bot@far.test", f" {code[:3]} {code[3:]} ", "acme").state == (
        SenderState.CONFIRMED
    )


def test_an_expired_code_is_refused_until_a_new_one_is_sent(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    old_code = world.mailed_code(record)
    world.clock.now += LIFETIME_S
    with pytest.raises(SenderError, match="has expired: request a new one with `postroom sender"):
        world.senders.confirm("bot@far.test", old_code, "acme")
    assert stored_row(world, record.id).code_failures == 0

    renewed = world.senders.resend_code("bot@far.test", "acme")
    assert renewed.code_message_id != record.code_message_id
    assert renewed.code_expires_at == world.clock.now + LIFETIME_S
    new_code = world.mailed_code(renewed)
    if new_code != old_code:  # one chance in a million that they are the same
        with pytest.raises(SenderError, match="wrong code"):
            world.senders.confirm("bot@far.test", old_code, "acme")
    assert world.senders.confirm("bot@far.test", new_code, "acme").state is SenderState.CONFIRMED


def test_resend_resets_the_tries(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    for _ in range(MAX_FAILURES):
        with pytest.raises(SenderError):
            world.senders.confirm("bot@far.test", other_code(world.mailed_code(record)), "acme")
    with pytest.raises(SenderError, match="less than a minute ago: ask again in 60 s"):
        world.senders.resend_code("bot@far.test", "acme")
    world.clock.now += 60
    renewed = world.senders.resend_code("bot@far.test", "acme")
    assert renewed.code_failures == 0
    assert world.senders.confirm("bot@far.test", world.mailed_code(renewed)).state is (
        SenderState.CONFIRMED
    )
    with pytest.raises(SenderError, match="already confirmed"):
        world.senders.resend_code("bot@far.test", "acme")


def test_a_code_is_bound_to_its_sender_row_and_address(world: SenderWorld) -> None:
    first = world.senders.add("acme", "bot@far.test")
    second = world.senders.add("other", "bot@far.test")
    key = world.senders._code_key
    assert code_digest(key, first.id, first.address, "123456") != code_digest(
        key, second.id, second.address, "123456"
    )
    assert code_digest(key, first.id, "bot@far.test", "123456") != code_digest(
        key, first.id, "bat@far.test", "123456"
    )
    # Make the second sender's stored code the first one's digest: it must not confirm.
    with world.engine.begin() as conn:
        conn.execute(
            senders.update()
            .where(senders.c.id == second.id)
            .values(code_hmac=stored_row(world, first.id).code_hmac)
        )
    with pytest.raises(SenderError, match="wrong code"):
        world.senders.confirm("bot@far.test", world.mailed_code(first), "other")


def test_a_bare_confirm_finds_the_one_unconfirmed_sender_or_asks_for_the_project(
    world: SenderWorld,
) -> None:
    with pytest.raises(SenderError, match=r"no sender bot@far\.test"):
        world.senders.confirm("bot@far.test", "123456")
    acme = world.senders.add("acme", "bot@far.test")
    other = world.senders.add("other", "bot@far.test")
    with pytest.raises(SenderError, match="unconfirmed sender of 2 projects: name one with --proj"):
        world.senders.confirm("bot@far.test", world.mailed_code(acme))
    assert world.senders.confirm("bot@far.test", world.mailed_code(acme), "acme").project == "acme"
    # Now only other's is waiting: no project needed.
    assert world.senders.confirm("bot@far.test", world.mailed_code(other)).project == "other"
    with pytest.raises(SenderError, match="already confirmed"):
        world.senders.confirm("bot@far.test", world.mailed_code(other))


def test_list_and_show_see_one_project_only(world: SenderWorld) -> None:
    world.senders.add("acme", "b@far.test", "B")
    world.senders.add("acme", "a@acme.test")
    world.senders.add("other", "c@far.test")
    listed = [record.as_json() for record in world.senders.list("acme")]
    assert [item["address"] for item in listed] == ["a@acme.test", "b@far.test"]
    assert listed[1] == {
        "address": "b@far.test",
        "name": "B",
        "state": "unconfirmed",
        "project": "acme",
        "mode": "send-only",
        "created_at": START,
        "confirmed_at": None,
    }
    assert listed[0]["mode"] == "two-way"
    with pytest.raises(SenderError, match=r"no sender c@far\.test in project 'acme'"):
        world.senders.show("c@far.test", "acme")
    with pytest.raises(SenderError, match="no project named 'nope'"):
        world.senders.list("nope")
    with pytest.raises(SenderError, match="already a sender of project 'acme'"):
        world.senders.add("acme", "B@far.test")


def test_the_code_mail_delivery_comes_from_the_queue(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    delivery = world.senders.code_mail_delivery(record)
    assert delivery is not None and (delivery.queue_id, delivery.state) == (
        record.code_message_id,
        "queued",
    )
    with world.engine.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.message_id == record.code_message_id)
            .values(state="deferred", attempts=1, last_reply="451 4.7.1 try later")
        )
    delivery = world.senders.code_mail_delivery(record)
    assert delivery is not None
    assert (delivery.state, delivery.attempts, delivery.last_reply) == (
        "deferred",
        1,
        "451 4.7.1 try later",
    )


def add_campaign(world: SenderWorld, sender_id: int, name: str) -> None:
    project_id = world.project_id("acme")
    with world.engine.begin() as conn:
        template_id = conn.execute(
            insert(templates).values(
                project_id=project_id,
                name=f"t-{name}",
                subject="s",
                html="<p>x</p>",
                created_at=START,
                updated_at=START,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(campaigns).values(
                project_id=project_id,
                name=name,
                sender_id=sender_id,
                template_id=template_id,
                state="draft",
                created_at=START,
                updated_at=START,
            )
        )


def test_remove_is_refused_while_campaigns_use_the_sender(world: SenderWorld) -> None:
    record = world.senders.add("acme", "bot@far.test")
    add_campaign(world, record.id, "Spring")
    add_campaign(world, record.id, "Summer")
    with pytest.raises(SenderError, match=r"used by campaign\(s\) 'Spring' \(#1\), 'Summer'"):
        world.senders.remove("bot@far.test", "acme")
    with world.engine.begin() as conn:
        conn.execute(campaigns.delete())
    assert world.senders.remove("bot@far.test", "acme").address == "bot@far.test"
    assert world.senders.list("acme") == []
    with pytest.raises(SenderError, match="no sender"):
        world.senders.remove("bot@far.test", "acme")


def test_require_confirmed_is_the_launchers_gate(world: SenderWorld) -> None:
    acme = world.project_id("acme")
    record = world.senders.add("acme", "bot@far.test")
    world.senders.add("other", "elsewhere@far.test")
    with world.engine.connect() as conn:
        with pytest.raises(SenderError, match="not confirmed yet"):
            require_confirmed(conn, acme, "bot@far.test")
        with pytest.raises(SenderError, match=r"no sender elsewhere@far\.test in this project"):
            require_confirmed(conn, acme, "elsewhere@far.test")
    world.senders.confirm("bot@far.test", world.mailed_code(record), "acme")
    with world.engine.connect() as conn:
        found = require_confirmed(conn, acme, "Bot@FAR.test")
    assert (found.id, found.state, found.mode) == (
        record.id,
        SenderState.CONFIRMED,
        SenderMode.SEND_ONLY,
    )
