"""`Contacts.record` when another writer changes the contact between its read and its
write (simulated here inside `change`, which runs exactly there): the change is
applied to what the other writer left, never over it; a contact that changes at
every attempt ends in `ContactBusy` with nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, func, select, update

from postroom.db.models import contact_events
from postroom.db.models import contacts as contacts_table
from postroom.mailbox.directory import Directory, Project
from postroom.rating.contacts import RECORD_ATTEMPTS, Cause, ContactBusy, Contacts
from postroom.rating.rules import ContactState

ADDRESS = "busy@example.test"


@pytest.fixture
def project(directory: Directory, contacts: Contacts) -> Project:
    project = directory.add_project("shop")
    contacts.add("shop", ADDRESS)  # rating 10
    return project


def another_writer_lowers(conn: Connection) -> None:
    conn.execute(update(contacts_table).values(rating=contacts_table.c.rating - 1))


def test_a_change_made_meanwhile_is_kept_and_built_upon(
    engine: Engine, contacts: Contacts, project: Project
) -> None:
    seen: list[int] = []

    def lower_by_two(state: ContactState) -> ContactState:
        seen.append(state.rating)
        if len(seen) == 1:
            another_writer_lowers(conn)
        return ContactState(state.rating - 2)

    with engine.begin() as conn:
        assert contacts.record(conn, project.id, ADDRESS, lower_by_two, Cause("set"))
    assert seen == [10, 9]
    assert contacts.contact("shop", ADDRESS).rating == 7
    [_, event] = contacts.events(contacts.contact("shop", ADDRESS))
    assert (event.old_rating, event.new_rating) == (9, 7)


def test_a_contact_that_never_settles_is_busy_and_nothing_is_written(
    engine: Engine, contacts: Contacts, project: Project
) -> None:
    calls = 0

    def always_overtaken(state: ContactState) -> ContactState:
        nonlocal calls
        calls += 1
        another_writer_lowers(conn)
        return ContactState(state.rating)

    with pytest.raises(ContactBusy, match=ADDRESS), engine.begin() as conn:
        contacts.record(conn, project.id, ADDRESS, always_overtaken, Cause("set"))
    assert calls == RECORD_ATTEMPTS
    assert contacts.contact("shop", ADDRESS).rating == 10  # the transaction rolled back
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contact_events)).scalar_one() == 1
