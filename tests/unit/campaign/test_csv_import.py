"""Reading contacts CSVs (encodings, delimiters, line numbers, errors) and sorting
rows by the validator's verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from postroom.campaign.csv_import import TEMPLATE, CsvError, plan_import, read_contacts_csv


@dataclass(frozen=True)
class Verdict:
    verdict: str
    address: str | None
    reasons: tuple[str, ...] = ()
    suggestion: str | None = None
    duplicate_of: str | None = None


def write(tmp_path: Path, data: bytes, name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_template_reads_back(tmp_path: Path) -> None:
    parsed = read_contacts_csv(write(tmp_path, TEMPLATE.encode()))
    assert parsed.columns[:2] == ("email", "name")
    assert [row.email for row in parsed.rows] == ["ann.smith@example.com", "bob@example.org"]
    assert parsed.rows[0].variables == {
        "first_name": "Ann",
        "company": "Example Ltd",
        "city": "Berlin",
    }


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("email,name\nа@b.test,Иван\n".encode(), "utf-8"),
        (b"\xef\xbb\xbf" + "email,name\na@b.test,Иван\n".encode(), "utf-8-sig"),
        ("email,name\na@b.test,Иван\n".encode("cp1251"), "cp1251"),
    ],
)
def test_encodings(tmp_path: Path, data: bytes, encoding: str) -> None:
    parsed = read_contacts_csv(write(tmp_path, data))
    assert parsed.encoding == encoding
    assert parsed.rows[0].name == "Иван"
    assert parsed.columns[0] == "email"  # no BOM left in the first header


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path: Path, delimiter: str) -> None:
    text = delimiter.join(["E-Mail", "Name", "City"]) + "\r\n"
    text += delimiter.join(["a@b.test", "Ann", "Oslo"]) + "\r\n"
    parsed = read_contacts_csv(write(tmp_path, text.encode()))
    assert parsed.delimiter == delimiter
    assert (parsed.rows[0].email, parsed.rows[0].name) == ("a@b.test", "Ann")
    assert parsed.rows[0].variables == {"City": "Oslo"}


def test_a_single_column_file(tmp_path: Path) -> None:
    parsed = read_contacts_csv(write(tmp_path, b"email\na@b.test\nc@d.test\n"))
    assert [row.email for row in parsed.rows] == ["a@b.test", "c@d.test"]


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    text = 'email,name\n\na@b.test,"two\nlines"\nc@d.test,x\n'
    parsed = read_contacts_csv(write(tmp_path, text.encode()))
    assert [(row.line, row.email) for row in parsed.rows] == [(3, "a@b.test"), (5, "c@d.test")]


def test_short_rows_get_empty_fields(tmp_path: Path) -> None:
    parsed = read_contacts_csv(write(tmp_path, b"email,name,city\na@b.test\n"))
    assert parsed.rows[0].name == "" and parsed.rows[0].variables == {"city": ""}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "line 1: empty file: expected a header row with 'email'"),
        (b"name,city\nAnn,Oslo\n", "line 1: no 'email' column (found 'name', 'city')"),
    ],
)
def test_unreadable_files_name_file_and_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(CsvError) as raised:
        read_contacts_csv(path)
    assert str(raised.value) == f"{path}: {message}"


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CsvError, match="cannot read"):
        read_contacts_csv(tmp_path / "absent.csv")


def test_plan_sorts_rows(tmp_path: Path) -> None:
    text = "email\na@b.test\n <c@d.test>\nbad@gmial.com\nA@b.test\nrole@b.test\nx@\n"
    rows = read_contacts_csv(write(tmp_path, text.encode())).rows
    verdicts = [
        Verdict("valid", "a@b.test"),
        Verdict("valid", "c@d.test", ("junk_trimmed",)),
        Verdict("invalid", "bad@gmial.com", ("typo_domain",), "bad@gmail.com"),
        Verdict("duplicate", "A@b.test", ("duplicate",), None, "a@b.test"),
        Verdict("risky", "role@b.test", ("role_account",)),
        Verdict("invalid", None, ("syntax",)),
    ]
    plan = plan_import(rows, verdicts)
    assert [o.category for o in plan.outcomes] == [
        "accepted",
        "fixed",
        "invalid",
        "duplicate",
        "risky",
        "invalid",
    ]
    assert [address for _, address in plan.to_import] == ["a@b.test", "c@d.test"]
    assert [o.line for o in plan.outcomes] == [2, 3, 4, 5, 6, 7]

    risky = plan_import(rows, verdicts, include_risky=True)
    assert [address for _, address in risky.to_import] == ["a@b.test", "c@d.test", "role@b.test"]

    applied = plan_import(rows, verdicts, suggested={2: Verdict("valid", "bad@gmail.com")})
    assert applied.outcomes[2].category == "fixed"
    assert "bad@gmail.com" in [address for _, address in applied.to_import]


def test_an_applied_suggestion_says_what_the_row_was_and_became(tmp_path: Path) -> None:
    text = "email\n john@gmial.com\nrole@gmial.com\n"
    rows = read_contacts_csv(write(tmp_path, text.encode())).rows
    verdicts = [
        Verdict(
            "invalid",
            "john@gmial.com",
            ("junk_trimmed", "typo_domain", "disposable"),
            "john@gmail.com",
        ),
        Verdict("invalid", "role@gmial.com", ("typo_domain", "disposable"), "role@gmail.com"),
    ]
    applied = {
        0: Verdict("valid", "john@gmail.com"),
        1: Verdict("risky", "role@gmail.com", ("role_account",)),
    }
    fixed, risky = plan_import(rows, verdicts, suggested=applied).outcomes
    # Why it was fixed and that its input was cleaned; "disposable" was gmial.com's.
    assert (fixed.category, fixed.input, fixed.address) == (
        "fixed",
        " john@gmial.com",
        "john@gmail.com",
    )
    assert (fixed.reasons, fixed.suggestion) == (("junk_trimmed", "typo_domain"), "john@gmail.com")
    assert (risky.category, risky.reasons) == ("risky", ("typo_domain", "role_account"))
