"""Contacts CSVs at the edges: size, NUL bytes, duplicate columns, blank lines above
the header, line breaks in quoted cells, the sniffer's cost, the csv module's
process-wide field limit."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from postroom.campaign import csv_import
from postroom.campaign.csv_import import CsvError, read_contacts_csv


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


def test_the_csv_field_limit_of_the_process_is_left_as_it_was(tmp_path: Path) -> None:
    before = csv.field_size_limit(123_456)
    try:
        read_contacts_csv(write(tmp_path, b"email\r\nann@b.test\r\n"))
        assert csv.field_size_limit() == 123_456
    finally:
        csv.field_size_limit(before)
