"""Two-way or send-only: where replies land (mailbox, alias, catch-all, nowhere) and what
the send-only domain's DMARC policy means, over DNS from data (`FakeDns`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.fakes.dkim_signers import FakeDns
from tests.fakes.mailbox_rows import ANY_HASH
from tests.unit.campaign.senders_world import SenderWorld

from postroom.campaign.sender_reach import SenderMode, dmarc_outlook, reply_route, sender_mode
from postroom.core.dns import DnsTemporaryError
from postroom.mailbox.accounts import Accounts


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    world = SenderWorld(tmp_path)
    accounts = Accounts(world.engine, tmp_path / "mail")
    accounts.add_mailbox("team@acme.test", ANY_HASH, 0)
    return accounts


def test_mode_is_two_way_only_on_the_projects_own_verified_domains() -> None:
    assert sender_mode("a@acme.test", {"acme.test"}) is SenderMode.TWO_WAY
    assert sender_mode("a@sub.acme.test", {"acme.test"}) is SenderMode.SEND_ONLY
    assert sender_mode("a@far.test", set()) is SenderMode.SEND_ONLY


def test_replies_land_in_the_senders_own_mailbox(accounts: Accounts) -> None:
    assert reply_route(accounts, "team@acme.test") == "replies land in the mailbox team@acme.test"


def test_replies_land_where_an_alias_points(accounts: Accounts) -> None:
    accounts.add_alias("news@acme.test", "team@acme.test")
    assert reply_route(accounts, "news@acme.test") == (
        "replies land in team@acme.test (through the alias news@acme.test)"
    )


def test_replies_land_where_the_catch_all_points(accounts: Accounts) -> None:
    assert "add one with `postroom mailbox add news@acme.test`" in reply_route(
        accounts, "news@acme.test"
    )
    accounts.add_alias("@acme.test", "team@acme.test")
    assert reply_route(accounts, "news@acme.test") == (
        "replies land in team@acme.test (through the catch-all @acme.test)"
    )


def test_a_sender_nothing_receives_for_is_told_what_to_add(accounts: Accounts) -> None:
    assert reply_route(accounts, "bot@acme.test") == (
        "no mailbox or alias receives replies to bot@acme.test: add one with "
        "`postroom mailbox add bot@acme.test` or `postroom alias add bot@acme.test MAILBOX`"
    )


@pytest.mark.parametrize(
    ("zone", "domain", "risk"),
    [
        ({"_dmarc.strict.test": "v=DMARC1; p=reject"}, "strict.test", "receivers will reject"),
        (
            {"_dmarc.strict.test": "v=DMARC1; p=quarantine; pct=10"},
            "strict.test",
            "receivers will put its mail in spam",
        ),
        # Discovery falls back to the organizational domain, whose sp= rules its subdomains.
        (
            {"_dmarc.strict.test": "v=DMARC1; p=none; sp=reject"},
            "news.strict.test",
            "news.strict.test publishes DMARC policy reject (_dmarc.strict.test)",
        ),
        ({"_dmarc.lax.test": "v=DMARC1; p=none"}, "lax.test", None),
        ({}, "bare.test", None),
        ({"_dmarc.broken.test": "v=DMARC1; p=maybe"}, "broken.test", None),
        (
            {"_dmarc.flaky.test": DnsTemporaryError("_dmarc.flaky.test", "TXT", "timed out")},
            "flaky.test",
            "the DMARC policy of flaky.test is unknown",
        ),
    ],
)
def test_dmarc_outlook_of_a_send_only_domain(
    zone: dict[str, object], domain: str, risk: str | None
) -> None:
    outlook = dmarc_outlook(FakeDns(zone), domain)  # type: ignore[arg-type]
    if risk is None:
        assert outlook.risk is None
    else:
        assert outlook.risk is not None and risk in outlook.risk
        assert "\n" not in outlook.risk
    assert domain in outlook.note and "\n" not in outlook.note


def test_dmarc_notes_say_what_the_policy_means() -> None:
    lax = dmarc_outlook(FakeDns({"_dmarc.lax.test": "v=DMARC1; p=none"}), "lax.test")
    assert "receivers are asked to deliver it anyway" in lax.note
    strict = dmarc_outlook(FakeDns({"_dmarc.strict.test": "v=DMARC1; p=reject"}), "strict.test")
    assert strict.note.endswith("send from a verified domain of the project instead")
    bare = dmarc_outlook(FakeDns({}), "bare.test")
    assert "no DMARC record" in bare.note
