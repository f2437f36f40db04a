"""Contacts against a real SQLite file: operator commands, events, lists, the gate,
and the mail engine's calls (ensure_many, record, received, is_blocked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select

from postroom.db.models import contact_events, list_members, lists
from postroom.db.models import contacts as contacts_table
from postroom.mailbox.directory import Directory, Project
from postroom.rating.contacts import Cause, ContactError, Contacts
from postroom.rating.rules import ContactState


@pytest.fixture
def project(directory: Directory) -> Project:
    return directory.add_project("shop")


def _event_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(contact_events)).scalar_one())


# -- add, contact, events -----------------------------------------------------------


def test_add_creates_a_manual_contact_at_10_lower_cased(
    contacts: Contacts, project: Project
) -> None:
    added = contacts.add("shop", "Alice@Example.TEST")
    assert (added.address, added.rating, added.blocked, added.source) == (
        "alice@example.test",
        10,
        False,
        "manual",
    )
    assert added.project == "shop"
    assert contacts.contact("shop", "ALICE@example.test") == added


def test_add_writes_a_created_event(contacts: Contacts, project: Project) -> None:
    added = contacts.add("shop", "alice@example.test")
    [event] = contacts.events(added)
    assert (event.kind, event.old_rating, event.new_rating, event.blocked) == (
        "created",
        None,
        10,
        False,
    )
    assert event.detail == "added by hand"
    assert event.message_id is None


def test_add_refuses_a_duplicate(contacts: Contacts, project: Project, engine: Engine) -> None:
    contacts.add("shop", "alice@example.test")
    with pytest.raises(ContactError, match="already exists"):
        contacts.add("shop", "ALICE@example.test")
    assert _event_count(engine) == 1


def test_add_refuses_an_unknown_project(contacts: Contacts, project: Project) -> None:
    with pytest.raises(ContactError, match="no project named 'nope'"):
        contacts.add("nope", "alice@example.test")


def test_add_with_a_list_creates_it_then_joins_it(
    contacts: Contacts, project: Project, engine: Engine
) -> None:
    alice = contacts.add("shop", "alice@example.test", list_name="news")
    bob = contacts.add("shop", "bob@example.test", list_name="news")
    with engine.connect() as conn:
        assert conn.execute(select(lists.c.name, lists.c.project_id)).all() == [
            ("news", project.id)
        ]
        members = set(conn.execute(select(list_members.c.contact_id)).scalars())
    assert members == {alice.id, bob.id}


def test_contact_of_an_unknown_address_is_refused(contacts: Contacts, project: Project) -> None:
    with pytest.raises(ContactError, match=r"no contact nobody@example\.test"):
        contacts.contact("shop", "Nobody@example.test")


def test_events_come_in_order_with_their_causes(contacts: Contacts, project: Project) -> None:
    contacts.add("shop", "alice@example.test")
    contacts.set_rating("shop", "alice@example.test", 4)
    contacts.block("shop", "alice@example.test")
    final = contacts.unblock("shop", "alice@example.test")
    events = contacts.events(final)
    assert [(e.kind, e.old_rating, e.new_rating, e.blocked) for e in events] == [
        ("created", None, 10, False),
        ("set", 10, 4, False),
        ("blocked", 4, 4, True),
        ("unblocked", 4, 4, False),
    ]
    assert events[1].detail == "by an operator"
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)


# -- operator changes -----------------------------------------------------------------


def test_set_rating_to_1_blocks_by_operator(contacts: Contacts, project: Project) -> None:
    contacts.add("shop", "alice@example.test")
    changed = contacts.set_rating("shop", "alice@example.test", 1)
    assert (changed.rating, changed.blocked, changed.blocked_cause) == (1, True, "operator")


@pytest.mark.parametrize("rating", [0, 11])
def test_set_rating_out_of_range_is_refused_and_changes_nothing(
    contacts: Contacts, project: Project, engine: Engine, rating: int
) -> None:
    contacts.add("shop", "alice@example.test")
    with pytest.raises(ContactError, match="between 1 and 10"):
        contacts.set_rating("shop", "alice@example.test", rating)
    assert contacts.contact("shop", "alice@example.test").rating == 10
    assert _event_count(engine) == 1


def test_block_and_unblock(contacts: Contacts, project: Project) -> None:
    contacts.add("shop", "alice@example.test")
    blocked = contacts.block("shop", "ALICE@example.test")
    assert (blocked.rating, blocked.blocked, blocked.blocked_cause) == (10, True, "operator")
    unblocked = contacts.unblock("shop", "alice@example.test")
    assert (unblocked.rating, unblocked.blocked, unblocked.blocked_cause) == (10, False, "")


@pytest.mark.parametrize("command", ["block", "unblock"])
def test_operator_changes_to_an_unknown_contact_are_refused(
    contacts: Contacts, project: Project, command: str
) -> None:
    with pytest.raises(ContactError, match=r"no contact ghost@example\.test in project 'shop'"):
        getattr(contacts, command)("shop", "ghost@example.test")


def test_set_rating_of_an_unknown_contact_is_refused(contacts: Contacts, project: Project) -> None:
    with pytest.raises(ContactError, match="no contact"):
        contacts.set_rating("shop", "ghost@example.test", 5)


# -- gate ---------------------------------------------------------------------------


def test_gate_over_the_project(contacts: Contacts, project: Project) -> None:
    for name in ("a", "b", "c"):
        contacts.add("shop", f"{name}@example.test")
    assert contacts.gate("shop").allowed
    contacts.set_rating("shop", "a@example.test", 1)
    contacts.set_rating("shop", "b@example.test", 2)
    result = contacts.gate("shop")
    assert not result.allowed
    assert (result.audience, result.blocked, result.low) == (3, 1, 1)
    assert "1 blocked" in result.message


def test_gate_over_an_empty_project_is_refused(contacts: Contacts, project: Project) -> None:
    assert not contacts.gate("shop").allowed


def test_gate_over_a_list_counts_only_its_members(contacts: Contacts, project: Project) -> None:
    contacts.add("shop", "good@example.test", list_name="vip")
    contacts.add("shop", "bad1@example.test")
    contacts.add("shop", "bad2@example.test")
    contacts.set_rating("shop", "bad1@example.test", 2)
    contacts.set_rating("shop", "bad2@example.test", 2)
    assert not contacts.gate("shop").allowed
    result = contacts.gate("shop", "vip")
    assert result.allowed
    assert result.audience == 1


def test_gate_over_an_unknown_list_is_refused(contacts: Contacts, project: Project) -> None:
    with pytest.raises(ContactError, match="no list named 'nope'"):
        contacts.gate("shop", "nope")


def test_gate_does_not_see_another_projects_list(
    contacts: Contacts, directory: Directory, project: Project
) -> None:
    directory.add_project("other")
    contacts.add("other", "x@example.test", list_name="vip")
    with pytest.raises(ContactError, match="no list named 'vip'"):
        contacts.gate("shop", "vip")


# -- the mail engine ----------------------------------------------------------------


def test_ensure_many_creates_at_7_with_an_event_naming_the_message(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    with engine.begin() as conn:
        contacts.ensure_many(
            conn,
            [(project.id, "A@Example.test", "Q1"), (project.id, "b@example.test", "Q2")],
            "mail sent to a new address",
        )
    a = contacts.contact("shop", "a@example.test")
    assert (a.address, a.rating, a.blocked, a.source) == ("a@example.test", 7, False, "auto")
    [event] = contacts.events(a)
    assert (event.kind, event.new_rating, event.message_id, event.detail) == (
        "created",
        7,
        "Q1",
        "mail sent to a new address",
    )
    assert contacts.events(contacts.contact("shop", "b@example.test"))[0].message_id == "Q2"


def test_ensure_many_is_idempotent_and_keeps_existing_contacts(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    contacts.add("shop", "known@example.test")
    wanted = [
        (project.id, "known@example.test", "Q1"),
        (project.id, "new@example.test", "Q1"),
        (project.id, "NEW@example.test", "Q1"),
    ]
    with engine.begin() as conn:
        contacts.ensure_many(conn, wanted, "d")
    with engine.begin() as conn:
        contacts.ensure_many(conn, wanted, "d")
    assert contacts.contact("shop", "known@example.test").rating == 10
    assert len(contacts.events(contacts.contact("shop", "known@example.test"))) == 1
    assert len(contacts.events(contacts.contact("shop", "new@example.test"))) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts_table)).scalar_one() == 2


def _statements_of(engine: Engine, action: Callable[[Connection], None]) -> list[str]:
    """The SQL statements `action` sent, in a transaction of its own that commits."""
    sent: list[str] = []

    def remember(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        with engine.begin() as conn:
            action(conn)
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return sent


def test_ensure_many_writes_nothing_for_contacts_it_found_existing(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    wanted = [(project.id, "a@example.test", "Q1")]
    for _ in range(2):  # created, then met as existing
        assert _statements_of(engine, lambda conn: contacts.ensure_many(conn, wanted, "d"))
    assert _statements_of(engine, lambda conn: contacts.ensure_many(conn, wanted, "d")) == []
    newcomer = [*wanted, (project.id, "b@example.test", "Q2")]
    assert _statements_of(engine, lambda conn: contacts.ensure_many(conn, newcomer, "d"))
    assert contacts.contact("shop", "b@example.test").source == "auto"


def test_ensure_many_does_not_trust_a_contact_it_created_in_a_rolled_back_transaction(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    wanted = [(project.id, "a@example.test", "Q1")]
    with engine.connect() as conn, conn.begin():
        contacts.ensure_many(conn, wanted, "d")
        conn.rollback()
    with engine.begin() as conn:
        contacts.ensure_many(conn, wanted, "d")
    assert contacts.contact("shop", "a@example.test").rating == 7


def test_ensure_many_with_nothing_wanted_does_nothing(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    with engine.begin() as conn:
        contacts.ensure_many(conn, [], "d")
    assert _event_count(engine) == 0


def test_the_same_address_in_two_projects_is_two_contacts(
    contacts: Contacts, directory: Directory, engine: Engine, project: Project
) -> None:
    other = directory.add_project("other")
    with engine.begin() as conn:
        contacts.ensure_many(
            conn,
            [(project.id, "a@example.test", "Q1"), (other.id, "a@example.test", "Q2")],
            "d",
        )
    contacts.block("shop", "a@example.test")
    mine = contacts.contact("shop", "a@example.test")
    theirs = contacts.contact("other", "a@example.test")
    assert mine.id != theirs.id
    assert (mine.blocked, theirs.blocked) == (True, False)
    assert contacts.is_blocked(project.id, "a@example.test")
    assert not contacts.is_blocked(other.id, "a@example.test")


def test_record_returns_false_for_an_unknown_contact(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    with engine.begin() as conn:
        found = contacts.record(
            conn, project.id, "ghost@example.test", contacts.rules.complained, Cause("complained")
        )
    assert found is False
    assert _event_count(engine) == 0


def test_record_writes_no_event_when_nothing_moves(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    contacts.add("shop", "alice@example.test")
    with engine.begin() as conn:
        found = contacts.record(
            conn,
            project.id,
            "ALICE@example.test",
            lambda state: contacts.rules.bounced(state, "networkerror"),
            Cause("bounced", reason="networkerror"),
        )
    assert found is True
    assert _event_count(engine) == 1
    assert contacts.contact("shop", "alice@example.test").rating == 10


def test_record_applies_the_change_and_writes_the_cause(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    contacts.add("shop", "alice@example.test")

    def to_three(state: ContactState) -> ContactState:
        return ContactState(3)

    with engine.begin() as conn:
        contacts.record(
            conn,
            project.id,
            "alice@example.test",
            to_three,
            Cause("bounced", reason="mailboxfull", message_id="Q9", delivery_id=42, detail="x"),
        )
    alice = contacts.contact("shop", "alice@example.test")
    assert alice.rating == 3
    event = contacts.events(alice)[-1]
    assert (event.kind, event.reason, event.old_rating, event.new_rating) == (
        "bounced",
        "mailboxfull",
        10,
        3,
    )
    assert (event.message_id, event.delivery_id, event.detail) == ("Q9", 42, "x")


def test_received_from_a_known_contact_raises_it_to_10(
    contacts: Contacts, engine: Engine, project: Project
) -> None:
    contacts.add("shop", "alice@example.test")
    contacts.set_rating("shop", "alice@example.test", 4)
    contacts.received([project.id, project.id], "Alice@example.test", "Q5")
    alice = contacts.contact("shop", "alice@example.test")
    assert alice.rating == 10
    event = contacts.events(alice)[-1]
    assert (event.kind, event.old_rating, event.new_rating, event.message_id) == (
        "replied",
        4,
        10,
        "Q5",
    )
    assert len(contacts.events(alice)) == 3  # created, set, one reply for both copies


def test_received_lifts_a_rating_block_but_not_an_operator_block(
    contacts: Contacts, project: Project
) -> None:
    contacts.add("shop", "low@example.test")
    contacts.add("shop", "held@example.test")
    with contacts.engine.begin() as conn:
        contacts.record(
            conn,
            project.id,
            "low@example.test",
            lambda state: contacts.rules.bounced(state, "userunknown"),
            Cause("bounced"),
        )
    contacts.block("shop", "held@example.test")
    contacts.received([project.id], "low@example.test", "Q1")
    contacts.received([project.id], "held@example.test", "Q2")
    assert not contacts.is_blocked(project.id, "low@example.test")
    assert contacts.is_blocked(project.id, "held@example.test")


def test_received_from_a_new_address_creates_it_at_7(
    contacts: Contacts, directory: Directory, project: Project
) -> None:
    other = directory.add_project("other")
    contacts.received([project.id, other.id], "New@example.test", "Q7")
    for name in ("shop", "other"):
        created = contacts.contact(name, "new@example.test")
        assert (created.rating, created.source) == (7, "auto")
        [event] = contacts.events(created)
        assert (event.kind, event.message_id, event.detail) == (
            "created",
            "Q7",
            "mail received from a new address",
        )


def test_is_blocked(contacts: Contacts, project: Project) -> None:
    contacts.add("shop", "alice@example.test")
    assert not contacts.is_blocked(project.id, "alice@example.test")
    assert not contacts.is_blocked(project.id, "ghost@example.test")
    contacts.block("shop", "alice@example.test")
    assert contacts.is_blocked(project.id, "ALICE@example.test")
