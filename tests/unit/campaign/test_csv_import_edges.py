"""Contacts CSVs at the edges: size, NUL bytes, duplicate columns, too many columns, blank
lines above the header, line breaks in quoted cells, the delimiter guess (its cases and its
linear cost where csv.Sniffer never finished), the csv module's process-wide field limit."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postroom.campaign import csv_import
from postroom.campaign.csv_import import MAX_COLUMNS, CsvError, guess_delimiter, read_contacts_csv


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "edge.csv"
    path.write_bytes(data)
    return path


def test_a_file_over_the_size_cap_is_refused_without_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_import, "MAX_FILE_BYTES", 64)
    path = write(tmp_path, b"email\r\n" + b"a@b.test\r\n" * 10)
    with pytest.raises(CsvError, match=r"larger than 64 bytes"):
        read_contacts_csv(path)


def test_a_nul_byte_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\r\nann@b.test,Ann\r\ned@b.test,E\x00d\r\n")
    with pytest.raises(CsvError, match=r"line 3: NUL byte"):
        read_contacts_csv(path)


def test_a_utf16_export_is_refused_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, "email,name\r\nann@b.test,Ann\r\n".encode("utf-16"))
    with pytest.raises(CsvError, match=r"UTF-16"):
        read_contacts_csv(path)


@pytest.mark.parametrize("header", ["email,city,city", "email,City,city", "Email,name,EMAIL"])
def test_a_column_named_twice_is_refused(tmp_path: Path, header: str) -> None:
    path = write(tmp_path, f"{header}\r\nbob@b.test,Berlin,Paris\r\n".encode())
    with pytest.raises(CsvError, match=r"line 1: column '\w+' appears twice"):
        read_contacts_csv(path)


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("email," + "v" * 300, "'" + "v" * 80 + "…'"),
        ('email,"line\r\nbreak"', "'line\\r\\nbreak'"),
    ],
)
def test_a_header_that_is_no_variable_name_is_refused(
    tmp_path: Path, header: str, column: str
) -> None:
    path = write(tmp_path, f"\r\n{header}\r\nann@b.test,x\r\n".encode())
    with pytest.raises(CsvError) as caught:
        read_contacts_csv(path)
    assert str(caught.value).startswith(f"{path}: line 2: column {column}: variable name")
    assert "\n" not in str(caught.value)


def test_only_unambiguous_names_are_the_registration_date(tmp_path: Path) -> None:
    data = b"email,created,signed up\r\nann@b.test,05/01/2024,yes\r\n"
    (ann,) = read_contacts_csv(write(tmp_path, data)).rows
    assert ann.variables == {"created": "05/01/2024", "signed up": "yes"}
    assert ann.registered_at is None
    data = b"email,created,Registration_Date\r\nann@b.test,05/01/2024,2024-03-15\r\n"
    (ann,) = read_contacts_csv(write(tmp_path, data)).rows
    assert ann.variables == {"created": "05/01/2024"}
    assert ann.registered_at is not None


def test_blank_lines_above_the_header_are_skipped(tmp_path: Path) -> None:
    parsed = read_contacts_csv(write(tmp_path, b"\r\n\r\nemail,name\r\nann@b.test,Ann\r\n"))
    assert parsed.columns == ("email", "name")
    assert [(row.line, row.email) for row in parsed.rows] == [(4, "ann@b.test")]


def test_a_name_with_a_quoted_line_break_becomes_one_line(tmp_path: Path) -> None:
    data = b'email,name,note\r\ncarl@b.test,"Carl\r\nSecond ","a\r\nb"\r\ndan@b.test,Dan,\r\n'
    parsed = read_contacts_csv(write(tmp_path, data))
    carl, dan = parsed.rows
    assert carl.name == "Carl Second"  # a header value later: never a line break
    assert carl.variables == {"note": "a\r\nb"}  # variables keep their text
    assert (carl.line, dan.line) == (2, 5)  # physical lines: Carl's row spans 2 to 4


def test_an_email_cell_missing_on_some_rows_is_an_empty_email(tmp_path: Path) -> None:
    parsed = read_contacts_csv(write(tmp_path, b"name,email\r\nAnn\r\nBob,bob@b.test\r\n,\r\n"))
    assert [(row.line, row.email, row.name) for row in parsed.rows] == [
        (2, "", "Ann"),
        (3, "bob@b.test", "Bob"),
    ]


def test_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    assert read_contacts_csv(write(tmp_path, b"email,name\r\n")).rows == ()


def test_sniffing_a_hostile_first_lines_is_quick(tmp_path: Path) -> None:
    # csv.Sniffer's quote guess is quadratic: 64 KiB of this took 5 to 15 seconds.
    data = b"email\r\n" + b'a,"' * 40_000 + b"\r\n"
    started = time.monotonic()
    read_contacts_csv(write(tmp_path, data))
    assert time.monotonic() - started < 2


def test_a_4kb_file_that_csv_sniffer_never_finished_reads_at_once(tmp_path: Path) -> None:
    """Issue 12 item 9: csv.Sniffer's double-quote regex backtracks over a line of quotes
    (cubic or worse: 200 quotes took 2 s, 400 took 31 s, these 4,000 did not finish in an
    hour). Run in a child process, so that a regression fails at the timeout instead of
    hanging the test run."""
    data = b'email,name\r\nann@b.test,"Ann"\r\nbob@b.test,Bob\r\n' + b'"' * 4000 + b"a\r\n"
    assert 4000 < len(data) < 4200
    path = write(tmp_path, data)
    reader = (
        "import sys; from pathlib import Path; from postroom.campaign.csv_import import "
        "read_contacts_csv; parsed = read_contacts_csv(Path(sys.argv[1])); "
        "print(parsed.delimiter, len(parsed.rows))"
    )
    result = subprocess.run(
        [sys.executable, "-c", reader, str(path)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout) == (0, ", 3\n"), result.stderr
    started = time.monotonic()
    assert guess_delimiter(data.decode(), complete=True) == ","
    assert time.monotonic() - started < 1  # about a millisecond; generous under load


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        # Quoted fields holding the other candidates, a doubled quote, a quoted line break.
        ('email,name,note\r\na@b.test,"Smith; Ann","x|y\ty"\r\nc@d.test,"Li ""K""",\r\n', ","),
        ('email;name\r\na@b.test;"Brown, Bob"\r\nc@d.test;"two\r\nlines, here"\r\n', ";"),
        # Unquoted commas inside a semicolon file (the flow test's junk row too).
        ("email;name\na@b.test;Smith, Ann\n <C@d.test> , ;Carl\n", ";"),
        # A comma in the header and every row of a tab file: the tab wins the tie.
        ("email\tname, title\na@b.test\tAnn, CEO\n", "\t"),
        ("email|name\na@b.test|Ann\n", "|"),
        # One column, header only, nothing: a comma (csv.reader then reads one column).
        ("email\na@b.test\nc@d.test\n", ","),
        ("email;name;city\r\n", ";"),
        ("", ","),
        ("\r\n\r\n", ","),
        # A quote in the middle of a field is text, as csv.reader reads it.
        ('email;name\na@b.test;5" screen, big\nc@d.test;x\n', ";"),
        # Rows that agree with the header beat a header with more of another candidate.
        ("email;a,b,c\nx@y.test;1\nz@y.test;2\n", ";"),
    ],
)
def test_guess_delimiter(text: str, delimiter: str) -> None:
    assert guess_delimiter(text, complete=True) == delimiter


def test_a_record_cut_off_by_the_sample_does_not_count_unless_it_is_the_first() -> None:
    assert guess_delimiter("email;name\na@b.test;Ann\nc@d.test,x,y,z", complete=False) == ";"
    assert guess_delimiter("email;name;city", complete=False) == ";"


def test_a_cp1251_file_with_semicolons(tmp_path: Path) -> None:
    data = "email;name;город\r\nivan@b.test;Иван Петров;Москва\r\n".encode("cp1251")
    parsed = read_contacts_csv(write(tmp_path, data))
    assert (parsed.encoding, parsed.delimiter) == ("cp1251", ";")
    assert parsed.rows[0].name == "Иван Петров"
    assert parsed.rows[0].variables == {"город": "Москва"}


def test_more_columns_than_the_cap_is_refused_with_the_line(tmp_path: Path) -> None:
    """Every row gets a value for each column: a wide header over many short rows would
    cost rows x columns (quadratic in the file's size)."""
    header = ",".join(["email", *(f"v{index}" for index in range(MAX_COLUMNS))])
    path = write(tmp_path, f"\r\n{header}\r\na@b.test\r\n".encode())
    with pytest.raises(CsvError, match=rf"line 2: {MAX_COLUMNS + 1} columns, more than"):
        read_contacts_csv(path)
    at_the_cap = ",".join(["email", *(f"v{index}" for index in range(MAX_COLUMNS - 1))])
    assert len(read_contacts_csv(write(tmp_path, f"{at_the_cap}\r\n".encode())).columns) == (
        MAX_COLUMNS
    )


def test_the_csv_field_limit_of_the_process_is_left_as_it_was(tmp_path: Path) -> None:
    before = csv.field_size_limit(123_456)
    try:
        read_contacts_csv(write(tmp_path, b"email\r\nann@b.test\r\n"))
        assert csv.field_size_limit() == 123_456
    finally:
        csv.field_size_limit(before)
