"""SMTP access of mailboxes in a real SQLite database migrated to head: every moderation
transition, the refusals (one line naming the address and the state, nothing changed),
settings, and AUTH with real argon2 hashes."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from postroom.db.models import mailboxes
from postroom.mailbox import smtp_access
from postroom.mailbox.accounts import Accounts
from postroom.mailbox.directory import Directory
from postroom.mailbox.passwords import dummy_hash, hash_password
from postroom.mailbox.smtp_access import (
    AuthOutcome,
    SmtpAccess,
    SmtpAccessError,
    SmtpAccount,
    SmtpState,
)

PASSWORD = "correct horse battery staple"
APP = "app@example.com"
OTHER = "news@example.org"
SHOP = "shop@xn--bcher-kva.example"  # shop@bücher.example as stored


@pytest.fixture(scope="module")
def password_hash() -> str:
    # One argon2 hash for every mailbox of the module: each costs a fifth of a second.
    return hash_password(PASSWORD)


@pytest.fixture
def access(engine: Engine, tmp_path: Path, password_hash: str) -> SmtpAccess:
    directory = Directory(engine)
    directory.add_project("acme")
    directory.add_project("beta")
    directory.add_domain("example.com", "acme")
    directory.add_domain("example.org", "beta")
    directory.add_domain(SHOP.partition("@")[2], "acme")  # bücher.example
    directory.add_domain("unverified.example", "acme")
    for name in ("example.com", "example.org", SHOP.partition("@")[2]):
        directory.mark_verified(name, [])
    accounts = Accounts(engine, tmp_path / "mail")
    for address in (APP, OTHER, SHOP):
        accounts.add_mailbox(address, password_hash, 0)
    return SmtpAccess(engine)


def snapshot(engine: Engine, address: str) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(select(mailboxes).where(mailboxes.c.address == address)).one()
    return {k: v for k, v in row._mapping.items() if k.startswith("smtp_")}


# -- moderation ---------------------------------------------------------------------


def test_a_new_mailbox_has_no_smtp_access(access: SmtpAccess) -> None:
    account = access.account(APP)
    assert account == SmtpAccount(
        address=APP,
        project="acme",
        project_id=account.project_id,
        domain="example.com",
        state=SmtpState.NONE,
        purpose="",
        volume=None,
        reason="",
        requested_at=None,
        decided_at=None,
        domain_senders=False,
        per_minute=None,
        per_day=None,
    )
    assert account.project_id > 0


def test_request_makes_it_pending(access: SmtpAccess) -> None:
    account = access.request(APP, "  order confirmations  ", 500)
    assert account.state is SmtpState.PENDING
    assert account.purpose == "order confirmations" and account.volume == 500
    assert account.requested_at is not None and account.decided_at is None
    assert access.account(APP) == account


def test_request_twice_is_refused_while_pending_or_approved(
    access: SmtpAccess, engine: Engine
) -> None:
    access.request(APP, "receipts", 10)
    before = snapshot(engine, APP)
    with pytest.raises(SmtpAccessError, match=re.escape("already under moderation")):
        access.request(APP, "something else", 20)
    assert snapshot(engine, APP) == before
    access.approve(APP)
    with pytest.raises(SmtpAccessError, match=re.escape(f"{APP} is already approved")):
        access.request(APP, "something else", 20)
    assert access.account(APP).purpose == "receipts"


def test_approve_clears_the_reason_and_keeps_or_sets_domain_senders(access: SmtpAccess) -> None:
    access.request(APP, "receipts", 10)
    access.reject(APP, "tell us more")
    approved = access.approve(APP, domain_senders=True)
    assert approved.state is SmtpState.APPROVED
    assert approved.reason == "" and approved.decided_at is not None
    assert approved.domain_senders is True

    access.reject(APP, "revoked")
    access.request(APP, "receipts", 10)
    assert access.approve(APP).domain_senders is True  # None keeps it
    access.reject(APP, "revoked")
    assert access.approve(APP, domain_senders=False).domain_senders is False


def test_reject_keeps_the_reason_visible_after_a_new_request(access: SmtpAccess) -> None:
    access.request(APP, "newsletters", 100_000)
    rejected = access.reject(APP, "  newsletters go through campaigns ")
    assert rejected.state is SmtpState.REJECTED
    assert rejected.reason == "newsletters go through campaigns"
    decided = rejected.decided_at
    again = access.request(APP, "order confirmations", 50)
    assert again.state is SmtpState.PENDING
    assert again.reason == "newsletters go through campaigns"
    assert again.decided_at == decided and again.purpose == "order confirmations"


def test_rejecting_an_approved_mailbox_revokes_it(access: SmtpAccess) -> None:
    access.request(APP, "receipts", 10)
    access.approve(APP)
    revoked = access.reject(APP, "complaints")
    assert revoked.state is SmtpState.REJECTED and revoked.reason == "complaints"
    assert access.authenticate(APP, PASSWORD).failure == "not approved (rejected)"


def test_wrong_states_are_refused_naming_the_state(access: SmtpAccess, engine: Engine) -> None:
    before = snapshot(engine, APP)
    not_requested = re.escape("has not requested SMTP access (state none")
    with pytest.raises(SmtpAccessError, match=not_requested):
        access.approve(APP)
    with pytest.raises(SmtpAccessError, match=re.escape("(state none")):
        access.reject(APP, "no")
    assert snapshot(engine, APP) == before
    access.request(APP, "receipts", 10)
    access.reject(APP, "no")
    with pytest.raises(SmtpAccessError, match=re.escape("already rejected: no")):
        access.reject(APP, "still no")
    access.approve(APP)
    with pytest.raises(SmtpAccessError, match=re.escape("already approved")):
        access.approve(APP)


@pytest.mark.parametrize(
    ("purpose", "volume", "message"),
    [
        ("", 10, "purpose: must not be empty"),
        ("   ", 10, "purpose: must not be empty"),
        ("two\nlines", 10, "printable text on one line"),
        ("bell\x07", 10, "printable text on one line"),
        ("x" * 501, 10, "at most 500 characters"),
        ("receipts", 0, "1 to 10,000,000"),
        ("receipts", 10_000_001, "1 to 10,000,000"),
        ("receipts", -5, "1 to 10,000,000"),
        ("receipts", True, "a whole number"),
        ("receipts", 2.5, "a whole number"),
    ],
)
def test_request_refuses_bad_input(
    access: SmtpAccess, engine: Engine, purpose: str, volume: int, message: str
) -> None:
    before = snapshot(engine, APP)
    with pytest.raises(SmtpAccessError, match=re.escape(message)):
        access.request(APP, purpose, volume)
    assert snapshot(engine, APP) == before


def test_the_edges_of_the_input_rules_are_accepted(access: SmtpAccess) -> None:
    assert access.request(APP, "x" * 500, 10_000_000).volume == 10_000_000
    assert access.request(OTHER, "Bestätigungen — ünïcode", 1).purpose.startswith("Best")


def test_reject_needs_a_reason(access: SmtpAccess) -> None:
    access.request(APP, "receipts", 10)
    for reason in ("", "  ", "a\nb", "r" * 501):
        with pytest.raises(SmtpAccessError, match=re.escape("reason")):
            access.reject(APP, reason)
    assert access.account(APP).state is SmtpState.PENDING


def test_unknown_and_invalid_addresses(access: SmtpAccess) -> None:
    for call in (
        lambda: access.account("nobody@example.com"),
        lambda: access.request("nobody@example.com", "x", 1),
        lambda: access.approve("nobody@example.com"),
        lambda: access.reject("nobody@example.com", "x"),
        lambda: access.set_domain_senders("nobody@example.com", True),
        lambda: access.set_limits("nobody@example.com", per_minute=1, per_day=None),
    ):
        with pytest.raises(SmtpAccessError, match=re.escape("no mailbox nobody@example.com")):
            call()
    with pytest.raises(SmtpAccessError, match="not an address"):
        access.account("no-at-sign")


def test_addresses_are_normalised_like_mailbox_commands(access: SmtpAccess) -> None:
    assert access.request(" App@EXAMPLE.com. ", "receipts", 3).address == APP
    assert access.account("shop@BÜCHER.example").address == SHOP


def test_a_lost_race_is_refused_instead_of_overwritten(access: SmtpAccess) -> None:
    # Two operators decide at once: exactly one decision wins, the other is told.
    access.request(APP, "receipts", 10)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(kind: str) -> None:
        barrier.wait()
        try:
            if kind == "approve":
                access.approve(APP)
            else:
                access.reject(APP, "no")
            outcomes.append(kind)
        except SmtpAccessError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=decide, args=(k,)) for k in ("approve", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = access.account(APP).state
    winners = [o for o in outcomes if o in ("approve", "reject")]
    # Serialised: the loser either saw the winner's state (approve→reject is allowed,
    # reject→approve too) or lost the compare-and-set; never a silent overwrite.
    assert len(outcomes) == 2
    assert final in (SmtpState.APPROVED, SmtpState.REJECTED)
    assert winners and winners[-1] == ("approve" if final is SmtpState.APPROVED else "reject")


# -- settings -------------------------------------------------------------------------


def test_domain_senders_and_may_send_as(access: SmtpAccess) -> None:
    own = access.set_domain_senders(APP, False)
    assert own.senders == (APP,)
    assert own.may_send_as("App@Example.COM") and own.may_send_as(APP)
    assert not own.may_send_as("billing@example.com")
    domain = access.set_domain_senders(APP, True)
    assert domain.senders == ("@example.com",)
    assert domain.may_send_as("billing@EXAMPLE.com")
    assert not domain.may_send_as("billing@example.org")
    assert not domain.may_send_as("billing@sub.example.com")
    assert not domain.may_send_as("") and not domain.may_send_as("example.com")
    shop = access.set_domain_senders(SHOP, True)
    assert shop.may_send_as("info@bücher.example")


def test_limits_none_keeps_zero_clears(access: SmtpAccess) -> None:
    account = access.set_limits(APP, per_minute=5, per_day=None)
    assert (account.per_minute, account.per_day) == (5, None)
    account = access.set_limits(APP, per_minute=None, per_day=1000)
    assert (account.per_minute, account.per_day) == (5, 1000)
    account = access.set_limits(APP, per_minute=0, per_day=None)
    assert (account.per_minute, account.per_day) == (None, 1000)
    assert access.set_limits(APP, per_minute=None, per_day=None) == account


@pytest.mark.parametrize("value", [-1, 2**31, True, 1.5])
def test_limits_refuse_bad_numbers(access: SmtpAccess, engine: Engine, value: int) -> None:
    access.set_limits(APP, per_minute=7, per_day=70)
    before = snapshot(engine, APP)
    with pytest.raises(SmtpAccessError, match="per_day"):
        access.set_limits(APP, per_minute=8, per_day=value)
    assert snapshot(engine, APP) == before


def test_accounts_lists_by_state(access: SmtpAccess) -> None:
    access.request(OTHER, "alerts", 5)
    access.request(APP, "receipts", 10)
    access.approve(APP)
    assert [a.address for a in access.accounts()] == [
        APP,
        OTHER,
        SHOP,
    ]
    assert [a.address for a in access.accounts(SmtpState.PENDING)] == [OTHER]
    assert [a.address for a in access.accounts(SmtpState.APPROVED)] == [APP]
    assert [a.project for a in access.accounts(SmtpState.PENDING)] == ["beta"]
    assert access.accounts(SmtpState.REJECTED) == []


# -- AUTH -----------------------------------------------------------------------------


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes `authenticate` verified against (the real verification still runs)."""
    calls: list[str] = []
    real = smtp_access.verify_password

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(smtp_access, "verify_password", spy)
    return calls


def test_an_approved_mailbox_authenticates(access: SmtpAccess) -> None:
    access.request(APP, "receipts", 10)
    access.approve(APP)
    outcome = access.authenticate("APP@Example.Com", PASSWORD)
    assert outcome.ok and outcome.failure == ""
    assert outcome.account == access.account(APP)


def test_an_idna_username_authenticates(access: SmtpAccess) -> None:
    access.request(SHOP, "receipts", 10)
    access.approve(SHOP)
    assert access.authenticate("Shop@Bücher.example", PASSWORD).ok
    assert access.authenticate(SHOP, PASSWORD).ok


def test_wrong_password_and_unknown_user_look_the_same(
    access: SmtpAccess, password_hash: str, verify_calls: list[str]
) -> None:
    access.request(APP, "receipts", 10)
    access.approve(APP)
    wrong = access.authenticate(APP, "not the password")
    unknown = access.authenticate("nobody@example.com", PASSWORD)
    assert wrong == unknown == AuthOutcome(None, "bad credentials")
    assert not wrong.ok
    # Each did one argon2 verification: the user's hash, then the dummy one, so both
    # cost the same; the dummy has the parameters of a real hash.
    assert verify_calls == [password_hash, dummy_hash()]
    assert dummy_hash().rsplit("$", 2)[0] == password_hash.rsplit("$", 2)[0]


@pytest.mark.parametrize(
    "username",
    ["", "no-at-sign", "@example.com", "app@", "x" * 400 + "@example.com", "app@bad..name"],
)
def test_malformed_usernames_still_cost_a_verification(
    access: SmtpAccess, verify_calls: list[str], username: str
) -> None:
    assert access.authenticate(username, PASSWORD) == AuthOutcome(None, "bad credentials")
    assert verify_calls == [dummy_hash()]


def test_a_mailbox_of_an_unverified_domain_never_authenticates(
    access: SmtpAccess, engine: Engine, password_hash: str, verify_calls: list[str]
) -> None:
    # Not reachable through Accounts (it refuses unverified domains): written directly.
    with engine.begin() as conn:
        domain_id = conn.execute(
            select(smtp_access.domains.c.id).where(
                smtp_access.domains.c.name == "unverified.example"
            )
        ).scalar_one()
        conn.execute(
            mailboxes.insert().values(
                domain_id=domain_id,
                address="app@unverified.example",
                password_hash=password_hash,
                quota_bytes=0,
                created_at=0,
                updated_at=0,
                smtp_state="approved",
            )
        )
    outcome = access.authenticate("app@unverified.example", PASSWORD)
    assert outcome == AuthOutcome(None, "bad credentials")
    assert verify_calls == [dummy_hash()]


@pytest.mark.parametrize("state", ["none", "pending", "rejected"])
def test_a_correct_password_of_a_mailbox_not_approved(access: SmtpAccess, state: str) -> None:
    if state != "none":
        access.request(APP, "receipts", 10)
    if state == "rejected":
        access.reject(APP, "no")
    assert access.authenticate(APP, PASSWORD) == AuthOutcome(None, f"not approved ({state})")
    # Without the password nothing about the state leaks.
    assert access.authenticate(APP, "guess") == AuthOutcome(None, "bad credentials")
