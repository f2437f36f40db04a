"""The contact fields from the command line: `contact import` reads stage, state,
channels and registration columns (a bad cell refuses the file naming line and
column, nothing imported), `contact template` shows them and imports as is, and
`contact set` edits every kind of field in one transaction or not at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.unit.cli.conftest import Run

from postroom.config import load_config
from postroom.db.engine import make_engine
from postroom.db.models import contact_variables, contacts

CSV = (
    "Email;Name;Stage;Funnel State;Channels;Registration date;age;city\n"
    'ann@example.com;Ann;customer;onboarding;"telegram, WhatsApp";2024-03-15;41;Berlin\n'
    "bob@example.org;Bob;lead;;;15.01.2025;;Paris\n"
    "cid@example.net;Cid;;;email;;x;\n"
)


@pytest.fixture
def shop(run: Run) -> Run:
    assert run("project", "add", "shop")[0] == 0
    return run


def show(run: Run, address: str) -> dict[str, object]:
    status, out, err = run("contact", "show", address, "--project", "shop", "--json")
    assert status == 0, err
    return json.loads(out)


def day(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_import_reads_the_contact_fields(shop: Run, tmp_path: Path, config: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(CSV, encoding="utf-8")
    before = datetime.now(UTC).timestamp()
    status, _, err = shop("contact", "import", str(path), "--project", "shop", "--no-dns")
    assert status == 0, err
    ann = show(shop, "ann@example.com")
    assert (ann["stage"], ann["state"], ann["channels"]) == (
        "customer",
        "onboarding",
        ["telegram", "whatsapp"],
    )
    assert ann["registered_at"] == day("2024-03-15")
    assert ann["variables"] == {"age": "41", "city": "Berlin"}
    assert show(shop, "bob@example.org")["registered_at"] == day("2025-01-15")
    cid = show(shop, "cid@example.net")
    assert cid["channels"] == ["email"] and cid["registered_at"] >= before  # imported now
    engine = make_engine(load_config(str(config)).database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(contact_variables.c.name, contact_variables.c.value, contact_variables.c.number)
            .join(contacts, contacts.c.id == contact_variables.c.contact_id)
            .where(contacts.c.address == "ann@example.com")
            .order_by(contact_variables.c.name)
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("age", "41", 41.0), ("city", "Berlin", None)]


@pytest.mark.parametrize(
    ("cell_line", "message"),
    [
        (
            "dan@example.com;Dan;;;;yesterday;;",
            "line 5: column 'Registration date': 'yesterday' is not a date",
        ),
        ("dan@example.com;Dan;;;tele/gram;;;", "line 5: column 'Channels': channel 'tele/gram'"),
        ("dan@example.com;Dan;" + "x" * 65 + ";;;;;", "line 5: column 'Stage': stage"),
    ],
)
def test_a_bad_cell_refuses_the_file_naming_line_and_column(
    shop: Run, tmp_path: Path, cell_line: str, message: str
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(CSV + cell_line + "\n", encoding="utf-8")
    status, out, err = shop("contact", "import", str(path), "--project", "shop", "--no-dns")
    assert (status, out) == (2, "")
    assert f"{path}: {message}" in err and err.count("\n") == 1
    assert shop("contact", "show", "ann@example.com", "--project", "shop")[0] == 2


def test_a_created_column_is_a_variable_not_the_registration_date(
    shop: Run, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("email,created,created_at\nann@example.com,05/01/2024,last spring\n")
    status, _, err = shop("contact", "import", str(path), "--project", "shop", "--no-dns")
    assert status == 0, err
    ann = show(shop, "ann@example.com")
    assert ann["variables"] == {"created": "05/01/2024", "created_at": "last spring"}


def test_a_header_too_long_for_a_variable_name_refuses_the_file(shop: Run, tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text("email," + "x" * 300 + "\nann@example.com,1\n")
    status, out, err = shop("contact", "import", str(path), "--project", "shop", "--no-dns")
    assert (status, out) == (2, "")
    assert f"{path}: line 1: column 'xxx" in err and err.count("\n") == 1
    assert "at most 128 characters" in err
    assert shop("contact", "show", "ann@example.com", "--project", "shop")[0] == 2


def test_the_template_shows_the_columns_and_imports(shop: Run, tmp_path: Path) -> None:
    status, template, _ = shop("contact", "template")
    assert status == 0
    assert template.splitlines()[0].startswith("email,name,stage,state,channels,registered,")
    path = tmp_path / "template.csv"
    path.write_text(template, encoding="utf-8")
    status, _, err = shop("contact", "import", str(path), "--project", "shop", "--no-dns")
    assert status == 0, err
    assert show(shop, "ann.smith@example.com")["channels"] == ["telegram", "whatsapp"]


def test_contact_set_edits_every_kind_of_field(shop: Run) -> None:
    shop("contact", "add", "ann@example.com", "--project", "shop", "--no-dns")
    status, out, err = shop(
        "contact", "set", "ann@example.com", "--project", "shop", "name=Ann Smith",
        "stage=customer", "state=active", "registered=2024-05-01", "channels=email, telegram",
        "city=Berlin", "age=41", "--json",
    )  # fmt: skip
    assert status == 0, err
    shown = json.loads(out)
    assert (shown["name"], shown["stage"], shown["state"]) == ("Ann Smith", "customer", "active")
    assert shown["registered_at"] == day("2024-05-01")
    assert shown["channels"] == ["email", "telegram"]
    assert shown["variables"] == {"city": "Berlin", "age": "41"}
    status, out, err = shop(
        "contact", "set", "ann@example.com", "--project", "shop", "channels+=viber",
        "channels-=email", "age=", "state=",
    )  # fmt: skip
    assert status == 0, err
    assert "channels: telegram, viber" in out
    shown = show(shop, "ann@example.com")
    assert shown["variables"] == {"city": "Berlin"} and shown["state"] == ""


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("registered=soon", "'registered=soon': 'soon' is not a date"),
        ("rating=2", "'rating=2': rating cannot be set here"),
        ("channels=a/b", "'channels=a/b': channel 'a/b'"),
        ("nonsense", "'nonsense': expected NAME=VALUE"),
    ],
)
def test_a_bad_contact_set_changes_nothing(shop: Run, assignment: str, message: str) -> None:
    shop("contact", "add", "ann@example.com", "--project", "shop", "--no-dns")
    status, out, err = shop(
        "contact", "set", "ann@example.com", "--project", "shop", "stage=lead", "city=Oslo",
        assignment,
    )  # fmt: skip
    assert (status, out) == (2, "")
    assert message in err and err.count("\n") == 1
    shown = show(shop, "ann@example.com")
    assert shown["stage"] == "" and shown["variables"] == {}


def test_contact_set_on_a_missing_contact_is_exit_2(shop: Run) -> None:
    status, out, err = shop("contact", "set", "ghost@example.com", "--project", "shop", "a=b")
    assert (status, out) == (2, "") and "no contact ghost@example.com" in err
