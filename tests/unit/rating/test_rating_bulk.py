"""Bulk contact import: one transaction, new contacts at 7, existing ones untouched."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, func, select

from postroom.db.models import contacts as contacts_table
from postroom.db.models import list_members
from postroom.mailbox.directory import Directory
from postroom.rating.bulk import ImportedContact, import_contacts
from postroom.rating.contacts import ContactError, Contacts


def rows(*addresses: str) -> list[ImportedContact]:
    return [
        ImportedContact(address, f"Name {i}", {"city": f"C{i}"}, line=i + 2)
        for i, address in enumerate(addresses)
    ]


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def shop(directory: Directory, contacts: Contacts) -> str:
    directory.add_project("shop")
    contacts.add("shop", "known@x.test")
    contacts.set_rating("shop", "known@x.test", 9)
    return "shop"


def test_new_contacts_start_at_seven_with_name_variables_and_an_event(
    contacts: Contacts, engine: Engine, shop: str
) -> None:
    created, existing = import_contacts(
        contacts,
        shop,
        rows("a@x.test", "known@x.test", "B@X.test"),
        list_name=None,
        detail="imported from c.csv",
    )
    assert (created, existing) == (2, 1)
    new = contacts.contact(shop, "b@x.test")
    assert (new.rating, new.source, new.blocked) == (7, "import", False)
    assert contacts.events(new)[0].detail == "imported from c.csv line 4"
    with engine.connect() as conn:
        name, variables = conn.execute(
            select(contacts_table.c.name, contacts_table.c.variables).where(
                contacts_table.c.address == "a@x.test"
            )
        ).one()
    assert (name, json.loads(variables)) == ("Name 0", {"city": "C0"})
    assert contacts.contact(shop, "known@x.test").rating == 9  # untouched


def test_dry_run_counts_and_changes_nothing(contacts: Contacts, engine: Engine, shop: str) -> None:
    before = count(engine, contacts_table)
    created, existing = import_contacts(
        contacts,
        shop,
        rows("a@x.test", "c@x.test"),
        list_name="spring",
        detail="d",
        dry_run=True,
    )
    assert (created, existing) == (2, 0)
    assert count(engine, contacts_table) == before
    assert count(engine, list_members) == 0


def test_the_list_gets_new_and_existing_contacts_once(
    contacts: Contacts, engine: Engine, shop: str
) -> None:
    for _ in range(2):
        import_contacts(
            contacts, shop, rows("a@x.test", "known@x.test"), list_name="spring", detail="d"
        )
    assert count(engine, list_members) == 2
    assert contacts.gate(shop, "spring").audience == 2


def test_repeated_addresses_in_one_run_are_one_contact_first_row_wins(
    contacts: Contacts, engine: Engine, shop: str
) -> None:
    created, existing = import_contacts(
        contacts, shop, rows("a@x.test", "A@x.test"), list_name=None, detail="d"
    )
    assert (created, existing) == (1, 0)
    assert contacts.events(contacts.contact(shop, "a@x.test"))[0].detail == "d line 2"


def test_an_unknown_project_imports_nothing(contacts: Contacts, engine: Engine, shop: str) -> None:
    before = count(engine, contacts_table)
    with pytest.raises(ContactError, match="no project named"):
        import_contacts(contacts, "nobody", rows("a@x.test"), list_name=None, detail="d")
    assert count(engine, contacts_table) == before


def test_many_rows_in_chunks(contacts: Contacts, engine: Engine, shop: str) -> None:
    addresses = [f"u{i}@x.test" for i in range(2500)]
    created, _ = import_contacts(contacts, shop, rows(*addresses), list_name="big", detail="d")
    assert created == 2500 and contacts.gate(shop, "big").audience == 2500
