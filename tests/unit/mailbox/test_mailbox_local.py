"""Local delivery over real accounts (SQLite) and real Maildirs: recipient lookup as the SMTP
session asks it, quota replies, and one stored copy per mailbox."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from postroom.mailbox.accounts import Accounts, LocalTarget, RecipientKind
from postroom.mailbox.directory import Directory
from postroom.mailbox.local import LocalMail
from postroom.mailbox.maildir import deliver, ensure_maildir, usage

HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
HOST = "mx.example.test"
MESSAGE = b"Return-Path: <a@sender.test>\r\nFrom: a@sender.test\r\nSubject: hi\r\n\r\nhello\r\n"
IDN = "xn--bcher-kva.example"  # bücher.example


@pytest.fixture
def accounts(engine: Engine, tmp_path: Path) -> Accounts:
    directory = Directory(engine)
    directory.add_project("acme")
    for name in ("example.com", IDN):
        directory.add_domain(name, "acme")
        directory.mark_verified(name, [])
    accounts = Accounts(engine, tmp_path / "mail")
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox(f"bob@{IDN}", HASH, 0)
    return accounts


@pytest.fixture
def local(accounts: Accounts) -> LocalMail:
    return LocalMail(accounts, HOST)


def target(tmp_path: Path, quota_bytes: int, address: str = "alice@example.com") -> LocalTarget:
    local_part, _, domain = address.partition("@")
    return LocalTarget(address, tmp_path / "mail" / domain / local_part, quota_bytes)


def fill(box: LocalTarget, size_bytes: int) -> None:
    ensure_maildir(box.maildir)
    deliver(box.maildir, b"x" * size_bytes, hostname=HOST, quota_bytes=box.quota_bytes)


@pytest.mark.parametrize(
    ("address", "found"),
    [
        ("alice@example.com", "alice@example.com"),
        ("ALICE@Example.COM", "alice@example.com"),
        ("alice@example.com.", "alice@example.com"),
        (f"bob@{IDN}", f"bob@{IDN}"),
        ("Bob@Bücher.Example", f"bob@{IDN}"),
        ("bob@BÜCHER.example.", f"bob@{IDN}"),
    ],
)
def test_resolve_folds_case_and_idna(local: LocalMail, address: str, found: str) -> None:
    resolution = local.resolve(address)
    assert resolution.kind is RecipientKind.LOCAL
    assert [t.address for t in resolution.targets] == [found]


def test_resolve_other_domains_and_unknown_users(local: LocalMail) -> None:
    assert local.resolve("alice@elsewhere.test").kind is RecipientKind.NOT_LOCAL
    # Not a valid IDNA name: cannot be one of ours.
    assert local.resolve("alice@-bücher.example").kind is RecipientKind.NOT_LOCAL
    assert local.resolve("carol@example.com").kind is RecipientKind.UNKNOWN
    assert local.resolve("carol@bücher.example").kind is RecipientKind.UNKNOWN


def test_no_quota_never_refuses(local: LocalMail, tmp_path: Path) -> None:
    box = target(tmp_path, 0)
    fill(box, 5000)
    assert local.quota_refusal([box], size_bytes=10**9) is None


def test_quota_with_room_accepts(local: LocalMail, tmp_path: Path) -> None:
    box = target(tmp_path, 1000)
    assert local.quota_refusal([box]) is None  # no Maildir yet: empty
    fill(box, 600)
    assert local.quota_refusal([box]) is None
    assert local.quota_refusal([box], size_bytes=400) is None


def test_full_mailbox_is_a_temporary_refusal(local: LocalMail, tmp_path: Path) -> None:
    box = target(tmp_path, 1000)
    fill(box, 1000)
    reply = local.quota_refusal([box])
    assert reply is not None
    assert (reply.code, reply.enhanced) == (452, "4.2.2")
    assert "<alice@example.com>" in reply.text


def test_message_that_does_not_fit_the_room_left_is_temporary(
    local: LocalMail, tmp_path: Path
) -> None:
    box = target(tmp_path, 1000)
    fill(box, 600)
    reply = local.quota_refusal([box], size_bytes=401)
    assert reply is not None and (reply.code, reply.enhanced) == (452, "4.2.2")


def test_message_larger_than_the_whole_quota_is_permanent(local: LocalMail, tmp_path: Path) -> None:
    box = target(tmp_path, 1000)
    reply = local.quota_refusal([box], size_bytes=1001)
    assert reply is not None
    assert (reply.code, reply.enhanced) == (552, "5.2.2")
    assert reply.is_permanent


def test_quota_refusal_checks_every_target(local: LocalMail, tmp_path: Path) -> None:
    roomy = target(tmp_path, 0)
    full = target(tmp_path, 100, f"bob@{IDN}")
    fill(full, 100)
    reply = local.quota_refusal([roomy, full])
    assert reply is not None and f"<bob@{IDN}>" in reply.text


def test_store_writes_one_copy_per_distinct_mailbox(
    local: LocalMail, accounts: Accounts, tmp_path: Path
) -> None:
    accounts.add_alias("team@example.com", "alice@example.com")
    accounts.add_alias("team@example.com", f"bob@{IDN}")
    targets = [
        *local.resolve("alice@example.com").targets,
        *local.resolve("team@example.com").targets,
    ]
    assert len(targets) == 3
    written = local.store(MESSAGE, targets)
    assert len(written) == 2
    alice = tmp_path / "mail" / "example.com" / "alice"
    bob = tmp_path / "mail" / IDN / "bob"
    for maildir in (alice, bob):
        files = list((maildir / "new").iterdir())
        assert len(files) == 1
        assert files[0].read_bytes() == MESSAGE
        assert f"new/{files[0].name}" in written
        assert usage(maildir).messages == 1


def test_store_creates_the_maildir(local: LocalMail, tmp_path: Path) -> None:
    box = target(tmp_path, 0)
    assert not box.maildir.exists()
    local.store(MESSAGE, [box])
    assert all((box.maildir / sub).is_dir() for sub in ("cur", "new", "tmp"))


def test_is_local_domain_answers_from_the_last_loaded_set(local: LocalMail, engine: Engine) -> None:
    assert not local.is_local_domain("alice@example.com")  # nothing loaded yet
    local.load_domains()
    assert local.is_local_domain("Alice@EXAMPLE.com.")
    assert local.is_local_domain("bob@Bücher.example")  # U-labels match the stored A-labels
    assert not local.is_local_domain("alice@elsewhere.test")
    directory = Directory(engine)
    directory.add_domain("new.example", "acme")
    local.load_domains()
    assert not local.is_local_domain("a@new.example")  # unverified
    directory.mark_verified("new.example", [])
    assert not local.is_local_domain("a@new.example")  # not re-read yet
    local.load_domains()
    assert local.is_local_domain("a@NEW.example")
