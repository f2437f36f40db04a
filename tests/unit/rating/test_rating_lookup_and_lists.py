"""Contacts looked up the way they were stored (an IDN domain in either IDNA form),
list names refused when empty or too long (nothing written), and the sender's
project found for a Unicode-spelled domain."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from postroom.db.models import contact_events, lists
from postroom.mailbox.directory import Directory, Project
from postroom.rating.bulk import ImportedContact, import_contacts
from postroom.rating.contacts import (
    MAX_LIST_NAME_CHARS,
    Cause,
    ContactError,
    Contacts,
    address_forms,
)
from postroom.rating.observer import project_of_sender

UNICODE = "zed@bücher.example"
ASCII = "zed@xn--bcher-kva.example"


@pytest.fixture
def project(directory: Directory) -> Project:
    return directory.add_project("shop")


def _count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_address_forms() -> None:
    assert address_forms(UNICODE) == [UNICODE, ASCII]
    assert address_forms(ASCII) == [ASCII, UNICODE]
    assert address_forms("ann@example.com") == ["ann@example.com"]
    assert address_forms("ann@xn--broken--.example") == ["ann@xn--broken--.example"]


def test_a_contact_stored_with_a_unicode_domain_is_found_by_either_form(
    contacts: Contacts, project: Project, engine: Engine
) -> None:
    added = contacts.add("shop", UNICODE)  # the validator's form: U-labels
    assert contacts.contact("shop", ASCII) == added
    assert contacts.block("shop", ASCII).blocked
    assert contacts.is_blocked(project.id, ASCII)
    with engine.begin() as conn:  # a bounce naming the envelope's A-label form
        found = contacts.record(conn, project.id, ASCII, contacts.rules.unblock, Cause("unblocked"))
    assert found and not contacts.contact("shop", UNICODE).blocked
    with pytest.raises(ContactError, match="already exists"):
        contacts.add("shop", ASCII)


def test_another_project_does_not_see_it_in_either_form(
    contacts: Contacts, project: Project, directory: Directory
) -> None:
    directory.add_project("other")
    contacts.add("shop", UNICODE)
    for address in (UNICODE, ASCII):
        with pytest.raises(ContactError, match="no contact"):
            contacts.contact("other", address)


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_LIST_NAME_CHARS + 1), "a\nb"])
def test_a_bad_list_name_is_refused_and_nothing_is_written(
    contacts: Contacts, project: Project, engine: Engine, name: str
) -> None:
    with pytest.raises(ContactError, match="list name"):
        contacts.add("shop", "ann@example.com", name)
    rows = [ImportedContact("bob@example.com", "", {}, 2)]
    with pytest.raises(ContactError, match="list name"):
        import_contacts(contacts, "shop", rows, list_name=name, detail="test")
    assert _count(engine, lists) == 0
    assert _count(engine, contact_events) == 0


def test_a_list_name_at_the_limit_is_taken(contacts: Contacts, project: Project) -> None:
    name = "x" * MAX_LIST_NAME_CHARS
    contacts.add("shop", "ann@example.com", name)
    assert contacts.gate("shop", name).audience == 1


def test_the_project_of_a_unicode_spelled_sender_domain(
    directory: Directory, project: Project, engine: Engine
) -> None:
    directory.add_domain("xn--bcher-kva.example", "shop")  # as `domain add` stores it
    directory.mark_verified("xn--bcher-kva.example", [])
    with engine.connect() as conn:
        assert project_of_sender(conn, ASCII) == project.id
        assert project_of_sender(conn, "Zed@BÜCHER.example.") == project.id
        assert project_of_sender(conn, "zed@bad..example\u00e9") is None
