"""Reading a contacts CSV and deciding, row by row, what an import does with it.

The template (`TEMPLATE`, printed by `postroom contact template`): a header row
with `email`, optionally `name`, the contact fields audiences filter on, and any
number of variable columns (each becomes a template variable of the contact).
The contact fields, all optional (column names compare case-insensitively):
- `stage` (also `crm stage`): the CRM stage, at most 64 characters;
- `state` (also `funnel state`, `funnel step`): the funnel step it is in;
- `channels`: the channels it is connected on, in one cell, separated by spaces,
  `,`, `;` or `|` (`telegram; whatsapp`), as a CRM exports a multi-value field;
- `registered` (also `registered_at`, `registration date`,
  `registration_date`): a date (`contact_fields.DATE_FORMS`); an empty cell
  means "when it is imported". Only these names: a column such as `created`
  holds dates of anything and stays a variable.
Every other named column is a variable whose name is its header
(`contact_fields.check_variable_name`: at most 128 characters, printable).
A bad channel name, an over-long stage or state, a date that does not parse, or
a header that is not a variable name refuses the file with the line and the
column (`CsvError`), before anything is imported. `read_contacts_csv(path)`:
- detects the encoding: a UTF-8 byte-order mark, else strict UTF-8, else
  cp1251 (the single-byte encoding Russian spreadsheets export);
- guesses the delimiter among `,` `;` tab `|` from the first records, in
  time linear in the sample (`guess_delimiter`; csv.Sniffer's regexes
  backtrack: a 4 KB line of quotes kept it busy for hours);
- requires an email column (also spelled `e-mail`, `mail`, `email address`);
- keeps each row's line number (the physical line where it starts), so every
  report names the line; raises `CsvError("FILE: line N: ...")` for a file it
  cannot read as such a CSV.

`plan_import(rows, verdicts, ...)` is pure: given the validator's verdict for
each row (same order) it sorts rows into accepted, fixed (junk trimmed, or a
suggestion applied when the operator asked for it), invalid (never imported),
risky (imported only when the operator says so) and duplicate (of an earlier
row: the first occurrence wins).

A file over `MAX_FILE_BYTES`, with a NUL byte (a UTF-16 export, or not text),
with more than `MAX_COLUMNS` columns (every row gets a value for each, so the
work per row is bounded by the header, not by the row) or with a column name
twice (the second would silently replace the first's values) is refused with
the line that shows it. A name is one line: runs of whitespace, line breaks of
a quoted cell included, become one space.

Untrusted input: the whole file (bounded: `MAX_FILE_BYTES`, `MAX_ROWS`,
`MAX_COLUMNS`, `MAX_FIELD_CHARS`); every step is linear in it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from postroom.campaign.contact_fields import (
    DATE_FORMS,
    check_label,
    check_variable_name,
    parse_channels,
    parse_moment,
)
from postroom.core.errors import cannot

TEMPLATE = (
    "email,name,stage,state,channels,registered,first_name,company,city\r\n"
    "ann.smith@example.com,Ann Smith,customer,onboarding,telegram;whatsapp,2024-03-15,"
    "Ann,Example Ltd,Berlin\r\n"
    "bob@example.org,Bob Brown,lead,,,15.01.2025,Bob,,Paris\r\n"
)
EMAIL_COLUMNS = ("email", "e-mail", "mail", "email address", "e-mail address", "address")
NAME_COLUMNS = ("name", "full name", "full_name")
STAGE_COLUMNS = ("stage", "crm stage", "crm_stage")
STATE_COLUMNS = ("state", "funnel state", "funnel_state", "funnel step", "funnel_step")
CHANNEL_COLUMNS = ("channels", "channel")
REGISTERED_COLUMNS = ("registered", "registered_at", "registration date", "registration_date")
DELIMITERS = ",;\t|"
# Ties go to the candidate least likely to appear inside text: a tab, then ";" and
# "|"; a comma last (names such as "Smith, Ann" carry one).
_TIE_ORDER = "\t;|,"
MAX_ROWS = 2_000_000
MAX_COLUMNS = 256
MAX_FIELD_CHARS = 10_000
MAX_FILE_BYTES = 512 * 1024 * 1024  # read whole: 2,000,000 rows of ~250 bytes
# The delimiter is guessed from the first records within the first characters.
_SNIFF_RECORDS = 20
_SNIFF_CHARS = 32 * 1024
# States of the delimiter guess's reading of a record.
_FIELD_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)


class CsvError(Exception):
    """The file cannot be read as a contacts CSV; the message names file and line."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    email: str
    name: str
    variables: dict[str, str]
    stage: str = ""
    state: str = ""
    channels: tuple[str, ...] = ()
    registered_at: float | None = None  # None: when it is imported


@dataclass(frozen=True, slots=True)
class ParsedCsv:
    encoding: str
    delimiter: str
    columns: tuple[str, ...]
    rows: tuple[CsvRow, ...]


@dataclass(frozen=True, slots=True)
class RowOutcome:
    line: int
    input: str
    address: str | None
    category: str  # accepted | fixed | invalid | risky | duplicate
    reasons: tuple[str, ...]
    suggestion: str | None
    duplicate_of: str | None


@dataclass(slots=True)
class ImportPlan:
    to_import: list[tuple[CsvRow, str]] = field(default_factory=list)  # (row, address)
    outcomes: list[RowOutcome] = field(default_factory=list)

    def count(self, category: str) -> int:
        return sum(outcome.category == category for outcome in self.outcomes)


def read_contacts_csv(path: Path) -> ParsedCsv:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # bounded, for pipes and devices too
    except OSError as error:
        raise CsvError(cannot(path, "read", error)) from None
    if len(data) > MAX_FILE_BYTES:
        raise CsvError(f"{path}: larger than {MAX_FILE_BYTES} bytes: split it into parts")
    text, encoding = _decode(data)
    del data
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise CsvError(
            f"{path}: line {line}: NUL byte: not a text CSV (a UTF-16 export? save it as CSV UTF-8)"
        )
    delimiter = guess_delimiter(text[:_SNIFF_CHARS], complete=len(text) <= _SNIFF_CHARS)
    # The limit is process-wide state of the csv module: set for this read only.
    previous_limit = csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        return _read_rows(path, text, encoding, delimiter)
    finally:
        csv.field_size_limit(previous_limit)


def _read_rows(path: Path, text: str, encoding: str, delimiter: str) -> ParsedCsv:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header_line, header = 1, next(reader, None)  # the line where the header starts
        while header is not None and not any(cell.strip() for cell in header):
            header_line, header = reader.line_num + 1, next(reader, None)  # blank lines above
        if header is None:
            raise CsvError(f"{path}: line 1: empty file: expected a header row with 'email'")
        if len(header) > MAX_COLUMNS:
            raise CsvError(
                f"{path}: line {header_line}: {len(header)} columns, more than {MAX_COLUMNS}: "
                "keep the email, the name and the variables campaigns use"
            )
        columns = tuple(cell.strip().lstrip("\ufeff") for cell in header)
        seen: set[str] = set()
        for column in columns:
            if column and column.lower() in seen:
                raise CsvError(f"{path}: line {header_line}: column {column!r} appears twice")
            seen.add(column.lower())
        email_index = _column(columns, EMAIL_COLUMNS)
        if email_index is None:
            found = ", ".join(repr(c) for c in columns[:8])
            raise CsvError(f"{path}: line {header_line}: no 'email' column (found {found})")
        name_index = _column(columns, NAME_COLUMNS)
        fields = _FieldColumns(
            path,
            columns,
            stage=_column(columns, STAGE_COLUMNS),
            state=_column(columns, STATE_COLUMNS),
            channels=_column(columns, CHANNEL_COLUMNS),
            registered=_column(columns, REGISTERED_COLUMNS),
        )
        known = {email_index, name_index, *fields.indexes()}
        variable_columns = [
            (index, name) for index, name in enumerate(columns) if index not in known and name
        ]
        for _, name in variable_columns:
            try:
                check_variable_name(name)
            except ValueError as error:
                shown = name if len(name) <= 80 else f"{name[:80]}…"
                raise CsvError(f"{path}: line {header_line}: column {shown!r}: {error}") from None
        rows = []
        line = reader.line_num + 1
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not rows
            if len(rows) >= MAX_ROWS:
                raise CsvError(f"{path}: line {start}: more than {MAX_ROWS} rows")
            rows.append(
                CsvRow(
                    line=start,
                    email=_cell(cells, email_index),
                    name=" ".join(_cell(cells, name_index).split()),
                    variables={name: _cell(cells, index) for index, name in variable_columns},
                    **fields.read(cells, start),
                )
            )
    except csv.Error as error:
        raise CsvError(f"{path}: line {reader.line_num}: {error}") from None
    return ParsedCsv(encoding, delimiter, columns, tuple(rows))


@dataclass(frozen=True, slots=True)
class _FieldColumns:
    """Where the contact fields are in the header, and how a row's cells become them."""

    path: Path
    columns: tuple[str, ...]
    stage: int | None
    state: int | None
    channels: int | None
    registered: int | None

    def indexes(self) -> list[int]:
        found = (self.stage, self.state, self.channels, self.registered)
        return [index for index in found if index is not None]

    def read(self, cells: Sequence[str], line: int) -> dict[str, Any]:
        """The CsvRow fields of one row; CsvError naming line and column when a cell
        does not read as its field."""
        return {
            "stage": self._parsed(cells, line, self.stage, partial(check_label, "stage")),
            "state": self._parsed(cells, line, self.state, partial(check_label, "state")),
            "channels": self._parsed(cells, line, self.channels, parse_channels),
            "registered_at": self._parsed(cells, line, self.registered, _registration_date),
        }

    def _parsed(
        self, cells: Sequence[str], line: int, index: int | None, parse: Callable[[str], Any]
    ) -> Any:
        try:
            return parse(_cell(cells, index))
        except ValueError as error:
            column = self.columns[index] if index is not None else ""
            raise CsvError(f"{self.path}: line {line}: column {column!r}: {error}") from None


def _registration_date(text: str) -> float | None:
    if not text.strip():
        return None
    moment = parse_moment(text)
    if moment is None:
        raise ValueError(f"{text[:80]!r} is not a date (expected {DATE_FORMS})")
    return moment


# The validator's reasons that come with a corrected domain in `suggestion`, and how a
# report says why a row was fixed with it ("{}": the corrected domain).
FIX_REASONS = MappingProxyType(
    {
        "typo_domain": "typo of {}",
        "typo_domain_suspected": "likely a typo of {}",
        "confusable": "lookalike of {}",
        "mixed_script": "mixed scripts, read as {}",
    }
)
# Notes that the input was cleaned: the row is imported as "fixed".
_CLEANED = frozenset({"junk_trimmed", "display_name"})


def plan_import(
    rows: Sequence[CsvRow],
    verdicts: Sequence[object],
    *,
    suggested: dict[int, object] | None = None,
    include_risky: bool = False,
) -> ImportPlan:
    """Sort rows by their verdicts. `suggested` maps a row's index to the verdict of
    its suggested address, for rows whose suggestion the operator chose to apply."""
    plan = ImportPlan()
    for index, (row, verdict) in enumerate(zip(rows, verdicts, strict=True)):
        outcome = _outcome(row, verdict, (suggested or {}).get(index))
        plan.outcomes.append(outcome)
        if outcome.category in ("accepted", "fixed") or (
            outcome.category == "risky" and include_risky
        ):
            plan.to_import.append((row, outcome.address or ""))
    return plan


def _outcome(row: CsvRow, verdict, applied) -> RowOutcome:  # type: ignore[no-untyped-def]
    """The row's outcome. With a suggestion `applied` (the corrected address's verdict),
    the report must still say what was wrong and what it became: the reasons are the
    original's that made the suggestion (why it was fixed) or cleaned the input (its
    other reasons were about the domain now replaced), then the correction's own, and
    `suggestion` is the correction."""
    final = applied if applied is not None else verdict
    reasons = tuple(verdict.reasons)
    if applied is not None:
        reasons = tuple(r for r in reasons if r in FIX_REASONS or r in _CLEANED)
        reasons += tuple(reason for reason in applied.reasons if reason not in reasons)
    category = {"valid": "accepted"}.get(final.verdict, final.verdict)
    fixed = applied is not None or not _CLEANED.isdisjoint(reasons)
    if category == "accepted" and fixed:
        category = "fixed"
    return RowOutcome(
        line=row.line,
        input=row.email,
        address=final.address,
        category=category,
        reasons=reasons,
        suggestion=verdict.suggestion,
        duplicate_of=final.duplicate_of,
    )


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("cp1251", "replace"), "cp1251"


def guess_delimiter(sample: str, *, complete: bool) -> str:
    """The candidate of `DELIMITERS` that splits the first records of `sample` most
    consistently: the header must contain it, and the most records must have as many
    as the header (then: the most in the header; then `_TIE_ORDER`). "," when no
    candidate is in the header (one column). `complete` says `sample` is the whole
    file; otherwise its last record may be cut off and counts only if it is the first.
    One pass over the sample per candidate: linear in `len(sample)`."""
    best, best_score = ",", (0, 0, 0)
    for candidate in DELIMITERS:
        counts = _separators_per_record(sample, candidate, complete=complete)
        if not counts or counts[0] == 0:
            continue
        consistent = sum(count == counts[0] for count in counts)
        score = (consistent, counts[0], -_TIE_ORDER.index(candidate))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _separators_per_record(sample: str, delimiter: str, *, complete: bool) -> list[int]:
    """How many fields `delimiter` separates in each non-blank record of `sample`, read
    as `csv.reader` reads with that delimiter: a quote opens a quoted field only at
    the start of a field, "" inside one is a quote, and a line break inside one does
    not end the record. Stops after `_SNIFF_RECORDS` records."""
    counts: list[int] = []
    separators, blank, state = 0, True, _FIELD_START
    for char in sample:
        if state == _QUOTED:
            state = _QUOTE_IN_QUOTED if char == '"' else _QUOTED
            continue
        if state == _QUOTE_IN_QUOTED:
            if char == '"':  # a doubled quote: still inside
                state = _QUOTED
                continue
            state = _UNQUOTED  # the closing quote; the rest of the field is plain text
        if char == delimiter:
            separators, blank, state = separators + 1, False, _FIELD_START
        elif char in "\r\n":
            if not blank:
                counts.append(separators)
                if len(counts) == _SNIFF_RECORDS:
                    return counts
            separators, blank, state = 0, True, _FIELD_START
        elif char == '"' and state == _FIELD_START:
            blank, state = False, _QUOTED
        else:
            blank = blank and char.isspace()
            state = _UNQUOTED
    if not blank and (complete or not counts):
        counts.append(separators)
    return counts


def _column(columns: Sequence[str], names: Sequence[str]) -> int | None:
    folded = [column.strip().lower() for column in columns]
    for name in names:
        if name in folded:
            return folded.index(name)
    return None


def _cell(cells: Sequence[str], index: int | None) -> str:
    if index is None or index >= len(cells):
        return ""
    return cells[index][:MAX_FIELD_CHARS]
