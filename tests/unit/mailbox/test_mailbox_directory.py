"""Projects, linked domains, DKIM key rows, mailboxes and aliases in a real SQLite database
migrated to head: every change whole or not at all, refusals that say why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from postroom.db.models import DomainState, aliases, dkim_keys, domains, mailboxes
from postroom.mailbox.accounts import Accounts, RecipientKind
from postroom.mailbox.directory import VERIFICATION_PREFIX, Directory, DirectoryError, NewKey

HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def directory(engine: Engine) -> Directory:
    return Directory(engine)


@pytest.fixture
def accounts(engine: Engine, directory: Directory, tmp_path: Path) -> Accounts:
    directory.add_project("acme")
    for name in ("example.com", "example.org"):
        directory.add_domain(name, "acme")
        directory.mark_verified(name, [])
    return Accounts(engine, tmp_path / "mail")


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def key(selector: str, algorithm: str = "rsa", state: str = "active") -> NewKey:
    return NewKey(
        selector=selector,
        algorithm=algorithm,
        state=state,
        public_key=f"public-{selector}",
        private_key=f"sealed-{selector}".encode(),
    )


# -- projects -----------------------------------------------------------------


def test_add_project_and_look_it_up(directory: Directory) -> None:
    added = directory.add_project("acme", message_limit=1000)
    directory.add_project("beta.team_1-x")
    assert added.name == "acme" and added.message_limit == 1000
    assert directory.project("acme") == added
    assert [p.name for p in directory.projects()] == ["acme", "beta.team_1-x"]
    assert directory.project("beta.team_1-x").message_limit is None


@pytest.mark.parametrize("name", ["", "Acme", "-acme", ".acme", "a b", "a/b", "a" * 65, "ä"])
def test_add_project_refuses_bad_names(directory: Directory, name: str) -> None:
    with pytest.raises(DirectoryError, match=re.escape("project name")):
        directory.add_project(name)
    assert directory.projects() == []


def test_add_project_accepts_a_zero_limit_and_refuses_a_negative_one(
    directory: Directory,
) -> None:
    assert directory.add_project("zero", message_limit=0).message_limit == 0
    with pytest.raises(DirectoryError, match=re.escape("must be 0 or more")):
        directory.add_project("negative", message_limit=-1)
    assert [p.name for p in directory.projects()] == ["zero"]


def test_add_project_refuses_a_duplicate(directory: Directory) -> None:
    directory.add_project("acme", message_limit=5)
    with pytest.raises(DirectoryError, match=re.escape("'acme' already exists")):
        directory.add_project("acme")
    assert directory.project("acme").message_limit == 5


def test_unknown_project_is_a_directory_error(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match=re.escape("no project named 'ghost'")):
        directory.project("ghost")
    with pytest.raises(DirectoryError, match=re.escape("no project named 'ghost'")):
        directory.domains("ghost")


# -- domains ------------------------------------------------------------------


def test_add_domain_starts_unverified_with_a_token(directory: Directory) -> None:
    directory.add_project("acme")
    domain = directory.add_domain("example.com", "acme")
    assert domain.name == "example.com" and domain.project == "acme"
    assert domain.state is DomainState.UNVERIFIED and not domain.verified
    assert domain.verified_at is None
    assert len(domain.verification_token) == 32
    assert domain.verification_text == VERIFICATION_PREFIX + domain.verification_token
    other = directory.add_domain("example.org", "acme")
    assert other.verification_token != domain.verification_token
    assert directory.domain("example.com") == domain


def test_add_domain_to_an_unknown_project(directory: Directory, engine: Engine) -> None:
    with pytest.raises(DirectoryError, match=re.escape("no project named 'ghost'")):
        directory.add_domain("example.com", "ghost")
    assert count(engine, domains) == 0


def test_add_domain_twice_to_the_same_project_names_it(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    with pytest.raises(DirectoryError, match=re.escape("already linked to project 'acme'")):
        directory.add_domain("example.com", "acme")


def test_add_domain_of_another_project_does_not_reveal_which(directory: Directory) -> None:
    directory.add_project("secret-customer")
    directory.add_project("intruder")
    directory.add_domain("example.com", "secret-customer")
    with pytest.raises(DirectoryError) as refused:
        directory.add_domain("example.com", "intruder")
    assert "already linked to another project" in str(refused.value)
    assert "secret-customer" not in str(refused.value)
    assert directory.domain("example.com").project == "secret-customer"


def test_unknown_domain_is_a_directory_error(directory: Directory) -> None:
    with pytest.raises(DirectoryError, match=re.escape("example.com is not linked")):
        directory.domain("example.com")
    with pytest.raises(DirectoryError, match=re.escape("not linked")):
        directory.mark_verified("example.com", [])


def test_domains_lists_by_name_and_filters_by_project(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_project("beta")
    directory.add_domain("zulu.example", "acme")
    directory.add_domain("alpha.example", "beta")
    directory.add_domain("mike.example", "acme")
    assert [d.name for d in directory.domains()] == [
        "alpha.example",
        "mike.example",
        "zulu.example",
    ]
    assert [d.name for d in directory.domains("acme")] == ["mike.example", "zulu.example"]
    assert [(d.name, d.project) for d in directory.domains("beta")] == [("alpha.example", "beta")]


def test_mark_verified_adds_the_first_keys_with_the_state_change(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    verified = directory.mark_verified("example.com", [key("s1"), key("s2", "ed25519", "active")])
    assert verified.verified and verified.state is DomainState.VERIFIED
    assert verified.verified_at is not None
    stored = directory.dkim_keys("example.com")
    assert [(k.selector, k.algorithm, k.state) for k in stored] == [
        ("s1", "rsa", "active"),
        ("s2", "ed25519", "active"),
    ]
    assert stored[0].public_key == "public-s1"
    assert stored[0].private_key == b"sealed-s1"
    assert stored[0].created_at == stored[0].state_since


def test_mark_verified_twice_changes_nothing(directory: Directory, engine: Engine) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    first = directory.mark_verified("example.com", [key("s1")])
    again = directory.mark_verified("example.com", [key("s9")])
    assert again == first
    assert [k.selector for k in directory.dkim_keys("example.com")] == ["s1"]
    assert count(engine, dkim_keys) == 1


def test_mark_verified_with_a_duplicate_selector_changes_nothing(
    directory: Directory, engine: Engine
) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    # Keyring never hands out a selector twice; if it did, the state change must roll back too.
    with pytest.raises(DirectoryError, match="selector already used"):
        directory.mark_verified("example.com", [key("s1"), key("s1", "ed25519")])
    assert not directory.domain("example.com").verified
    assert count(engine, dkim_keys) == 0


def test_dkim_keys_are_in_creation_order(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    directory.mark_verified("example.com", [key("zz-first")])
    directory.add_keys("example.com", [key("mm-second", state="pending")])
    directory.add_keys("example.com", [key("aa-third", state="pending")])
    keys = directory.dkim_keys("example.com")
    assert [k.selector for k in keys] == ["zz-first", "mm-second", "aa-third"]
    assert keys[0].created_at <= keys[1].created_at <= keys[2].created_at


def test_dkim_keys_belong_to_one_domain(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    directory.add_domain("example.org", "acme")
    directory.mark_verified("example.com", [key("s1")])
    # The same selector under another domain is another DNS name: allowed.
    directory.mark_verified("example.org", [key("s1"), key("s2")])
    assert [k.selector for k in directory.dkim_keys("example.com")] == ["s1"]
    assert [k.selector for k in directory.dkim_keys("example.org")] == ["s1", "s2"]


def test_add_keys_with_a_used_selector_adds_none(directory: Directory, engine: Engine) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    directory.mark_verified("example.com", [key("s1")])
    with pytest.raises(DirectoryError, match=re.escape("selector already used")):
        directory.add_keys("example.com", [key("s2", state="pending"), key("s1")])
    assert [k.selector for k in directory.dkim_keys("example.com")] == ["s1"]
    assert count(engine, dkim_keys) == 1


def test_set_key_states_moves_each_selector(directory: Directory) -> None:
    directory.add_project("acme")
    directory.add_domain("example.com", "acme")
    directory.mark_verified("example.com", [key("old")])
    directory.add_keys("example.com", [key("new", state="pending")])
    before = {k.selector: k for k in directory.dkim_keys("example.com")}
    directory.set_key_states("example.com", {"old": "retiring", "new": "active"})
    after = {k.selector: k for k in directory.dkim_keys("example.com")}
    assert after["old"].state == "retiring" and after["new"].state == "active"
    assert after["old"].state_since >= before["old"].state_since
    assert after["old"].created_at == before["old"].created_at


# -- mailboxes ----------------------------------------------------------------


def test_add_mailbox(accounts: Accounts, tmp_path: Path) -> None:
    mailbox = accounts.add_mailbox("alice@example.com", HASH, 1_000_000)
    assert mailbox.address == "alice@example.com"
    assert mailbox.domain == "example.com" and mailbox.project == "acme"
    assert mailbox.password_hash == HASH and mailbox.quota_bytes == 1_000_000
    assert mailbox.maildir == tmp_path / "mail" / "example.com" / "alice"
    assert accounts.mailbox("alice@example.com") == mailbox


def test_add_mailbox_on_an_unlinked_domain(accounts: Accounts, engine: Engine) -> None:
    with pytest.raises(DirectoryError, match=re.escape("domain example.net is not linked")):
        accounts.add_mailbox("alice@example.net", HASH, 0)
    assert count(engine, mailboxes) == 0


def test_add_mailbox_on_an_unverified_domain(
    accounts: Accounts, directory: Directory, engine: Engine
) -> None:
    directory.add_domain("example.net", "acme")
    with pytest.raises(DirectoryError, match=re.escape("domain example.net is not verified yet")):
        accounts.add_mailbox("alice@example.net", HASH, 0)
    assert count(engine, mailboxes) == 0


def test_add_mailbox_twice(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 10)
    with pytest.raises(DirectoryError, match=re.escape("mailbox alice@example.com already exists")):
        accounts.add_mailbox("alice@example.com", "other", 20)
    assert accounts.mailbox("alice@example.com").quota_bytes == 10


def test_add_mailbox_refuses_a_slash_that_would_leave_the_mail_tree(
    accounts: Accounts, engine: Engine
) -> None:
    with pytest.raises(DirectoryError, match=re.escape("'/'")):
        accounts.add_mailbox("../x@example.com", HASH, 0)
    with pytest.raises(DirectoryError, match=re.escape("'/'")):
        accounts.add_mailbox("a/b@example.com", HASH, 0)
    assert count(engine, mailboxes) == 0


@pytest.mark.parametrize("address", ["a%d@example.com", "#x@example.com", "a+b@example.com"])
def test_add_mailbox_and_alias_refuse_names_the_passwd_file_or_dovecot_cannot_take(
    accounts: Accounts, engine: Engine, address: str
) -> None:
    # The CLI checks first; the store checks again, whoever its caller.
    with pytest.raises(DirectoryError, match=re.escape(f"mailbox {address}: ")):
        accounts.add_mailbox(address, HASH, 0)
    accounts.add_mailbox("alice@example.com", HASH, 0)
    with pytest.raises(DirectoryError, match=re.escape(f"alias {address}: ")):
        accounts.add_alias(address, "alice@example.com")
    assert count(engine, mailboxes) == 1 and count(engine, aliases) == 0


def test_add_mailbox_where_an_alias_is(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "alice@example.com")
    with pytest.raises(DirectoryError, match=re.escape("already an alias")):
        accounts.add_mailbox("info@example.com", HASH, 0)


def test_unknown_mailbox(accounts: Accounts) -> None:
    with pytest.raises(DirectoryError, match=re.escape("no mailbox ghost@example.com")):
        accounts.mailbox("ghost@example.com")
    with pytest.raises(DirectoryError, match=re.escape("no mailbox ghost@example.com")):
        accounts.set_password("ghost@example.com", HASH)
    with pytest.raises(DirectoryError, match=re.escape("no mailbox ghost@example.com")):
        accounts.delete_mailbox("ghost@example.com")


def test_set_password_changes_one_mailbox(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox("bob@example.com", HASH, 0)
    new_hash = HASH.replace("c2FsdHNhbHQ", "bmV3c2FsdA")
    accounts.set_password("alice@example.com", new_hash)
    assert accounts.mailbox("alice@example.com").password_hash == new_hash
    assert accounts.mailbox("bob@example.com").password_hash == HASH


def test_mailboxes_filter_by_domain_and_project(accounts: Accounts, directory: Directory) -> None:
    directory.add_project("beta")
    directory.add_domain("beta.example", "beta")
    directory.mark_verified("beta.example", [])
    for address in ("bob@example.org", "alice@example.com", "carol@beta.example"):
        accounts.add_mailbox(address, HASH, 0)
    assert [m.address for m in accounts.mailboxes()] == [
        "alice@example.com",
        "bob@example.org",
        "carol@beta.example",
    ]
    assert [m.address for m in accounts.mailboxes(domain="example.org")] == ["bob@example.org"]
    assert [m.address for m in accounts.mailboxes(project="beta")] == ["carol@beta.example"]


def test_delete_mailbox_removes_the_aliases_that_pointed_at_it(
    accounts: Accounts, engine: Engine
) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox("bob@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "alice@example.com")
    accounts.add_alias("info@example.com", "bob@example.com")
    accounts.add_alias("@example.com", "alice@example.com")
    deleted, removed = accounts.delete_mailbox("alice@example.com")
    assert deleted.address == "alice@example.com"
    assert removed == ["@example.com", "info@example.com"]
    assert [(a.source, a.target) for a in accounts.aliases()] == [
        ("info@example.com", "bob@example.com")
    ]
    assert [m.address for m in accounts.mailboxes()] == ["bob@example.com"]
    assert count(engine, aliases) == 1


# -- aliases ------------------------------------------------------------------


def test_add_alias_and_list(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    alias = accounts.add_alias("info@example.org", "alice@example.com")
    assert (alias.source, alias.target, alias.domain) == (
        "info@example.org",
        "alice@example.com",
        "example.org",
    )
    assert accounts.aliases() == [alias]
    assert accounts.aliases(domain="example.org") == [alias]
    assert accounts.aliases(domain="example.com") == []
    assert accounts.aliases(project="acme") == [alias]


def test_alias_target_must_be_a_mailbox(accounts: Accounts, engine: Engine) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "alice@example.com")
    with pytest.raises(
        DirectoryError, match=re.escape("target someone@gmail.test is not a mailbox")
    ):
        accounts.add_alias("sales@example.com", "someone@gmail.test")
    # No chains: an alias is not a mailbox either.
    with pytest.raises(DirectoryError, match=re.escape("not a mailbox")):
        accounts.add_alias("sales@example.com", "info@example.com")
    assert count(engine, aliases) == 1


def test_alias_source_cannot_be_a_mailbox(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox("bob@example.com", HASH, 0)
    with pytest.raises(DirectoryError, match=re.escape("alice@example.com is a mailbox")):
        accounts.add_alias("alice@example.com", "bob@example.com")
    assert accounts.aliases() == []


def test_alias_source_domain_must_be_verified(accounts: Accounts, directory: Directory) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    directory.add_domain("example.net", "acme")
    with pytest.raises(DirectoryError, match=re.escape("example.net is not verified")):
        accounts.add_alias("info@example.net", "alice@example.com")
    with pytest.raises(DirectoryError, match=re.escape("gone.example is not linked")):
        accounts.add_alias("@gone.example", "alice@example.com")


def test_duplicate_alias(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "alice@example.com")
    with pytest.raises(DirectoryError, match=re.escape("already exists")):
        accounts.add_alias("info@example.com", "alice@example.com")
    assert len(accounts.aliases()) == 1


def test_delete_alias(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox("bob@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "alice@example.com")
    accounts.add_alias("info@example.com", "bob@example.com")
    accounts.add_alias("sales@example.com", "bob@example.com")
    assert accounts.delete_alias("info@example.com", "bob@example.com") == 1
    assert accounts.delete_alias("info@example.com") == 1
    with pytest.raises(DirectoryError, match=re.escape("no alias info@example.com")):
        accounts.delete_alias("info@example.com")
    with pytest.raises(DirectoryError, match=re.escape("no alias sales@example.com → alice")):
        accounts.delete_alias("sales@example.com", "alice@example.com")
    with pytest.raises(DirectoryError, match=re.escape("no mailbox ghost@example.com")):
        accounts.delete_alias("sales@example.com", "ghost@example.com")
    assert [(a.source, a.target) for a in accounts.aliases()] == [
        ("sales@example.com", "bob@example.com")
    ]


# -- resolve ------------------------------------------------------------------


def test_resolve_a_domain_that_is_not_ours(accounts: Accounts) -> None:
    assert accounts.resolve("alice@elsewhere.test").kind is RecipientKind.NOT_LOCAL


def test_resolve_an_unverified_domain_is_not_local(
    accounts: Accounts, directory: Directory
) -> None:
    directory.add_domain("example.net", "acme")
    assert accounts.resolve("alice@example.net").kind is RecipientKind.NOT_LOCAL


def test_resolve_a_mailbox(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 5000)
    found = accounts.resolve("alice@example.com")
    assert found.kind is RecipientKind.LOCAL
    assert [(t.address, t.maildir, t.quota_bytes) for t in found.targets] == [
        ("alice@example.com", tmp_path / "mail" / "example.com" / "alice", 5000)
    ]


def test_resolve_an_alias_with_several_targets(accounts: Accounts) -> None:
    accounts.add_mailbox("bob@example.com", HASH, 0)
    accounts.add_mailbox("alice@example.org", HASH, 0)
    accounts.add_alias("team@example.com", "bob@example.com")
    accounts.add_alias("team@example.com", "alice@example.org")
    found = accounts.resolve("team@example.com")
    assert found.kind is RecipientKind.LOCAL
    assert [t.address for t in found.targets] == ["alice@example.org", "bob@example.com"]


def test_catch_all_only_when_nothing_else_matches(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    accounts.add_mailbox("bob@example.com", HASH, 0)
    accounts.add_mailbox("carol@example.com", HASH, 0)
    accounts.add_alias("info@example.com", "bob@example.com")
    accounts.add_alias("@example.com", "carol@example.com")

    def receivers(address: str) -> list[str]:
        return [t.address for t in accounts.resolve(address).targets]

    assert receivers("alice@example.com") == ["alice@example.com"]
    assert receivers("info@example.com") == ["bob@example.com"]
    assert receivers("anything@example.com") == ["carol@example.com"]
    # The catch-all is per domain.
    assert accounts.resolve("anything@example.org").kind is RecipientKind.UNKNOWN


def test_resolve_unknown_recipient_of_our_domain(accounts: Accounts) -> None:
    accounts.add_mailbox("alice@example.com", HASH, 0)
    found = accounts.resolve("bob@example.com")
    assert found.kind is RecipientKind.UNKNOWN and found.targets == ()


def test_maildir_path_layout(accounts: Accounts, tmp_path: Path) -> None:
    assert accounts.maildir_of("alice.smith@example.com") == (
        tmp_path / "mail" / "example.com" / "alice.smith"
    )
    assert accounts.maildir_of("a@b@example.com") == tmp_path / "mail" / "example.com" / "a@b"
