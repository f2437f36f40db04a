"""The contact fields audiences filter on: variables, channels, stage, state, dates.

A contact's variables are strings (a CSV cell, a `contact set NAME=VALUE`).
Filters compare numbers as numbers and dates as dates, so each variable is
stored with what it reads as: `parse_number` (a plain decimal: `42`, `-3.5`,
`1e3`; not `inf`, `nan`, `0x10` or `1,5`) and `parse_moment` (an ISO 8601 date
or date-time, or a day as `DD.MM.YYYY`; without a zone it is UTC) — NULL when
it does not read as one. `moment_span` says which stretch of time a value names
(a whole UTC day for a date, one instant for a date-time), so that a filter
`= 2024-05-01` matches any time that day.

Writers (the only ones, so that the two forms of variables never disagree):
- `store_variables(conn, contact_id, variables)` replaces one contact's
  variables in both forms: the JSON object templates see (`variables_json`)
  and the `contact_variables` rows filters use (`variable_rows`);
- `insert_new_fields(conn, [(contact_id, variables, channels)...])` writes the
  rows of contacts just created with their JSON (bulk: one executemany each);
- `store_channels(conn, contact_id, channels)` replaces a contact's channels.

Checks: `check_channel` (lower-case letters, digits, `_ . -`, at most 32
characters: `email`, `telegram`, `whatsapp`), `parse_channels(text)` (names
separated by runs of spaces, `,`, `;` or `|`, each kept once, in order),
`check_label` (a stage or state: at most 64 printable characters),
`check_variable_name` (1 to 128 printable characters). Each raises ValueError
with a message that names the bad value.

Untrusted input: values from CSV files and the command line (bounded by the
importer: `MAX_FIELD_CHARS`); every step is linear in the value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime

from sqlalchemy import Connection, delete, insert, select, update

from postroom.db.models import contact_channels, contact_variables, contacts

MAX_CHANNEL_CHARS = 32  # contact_channels.channel
MAX_LABEL_CHARS = 64  # contacts.stage, contacts.state
MAX_VARIABLE_NAME_CHARS = 128  # contact_variables.name
DAY_S = 86_400.0
DATE_FORMS = "YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][+HH:MM] or DD.MM.YYYY"

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DOTTED_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_MAX_PARSED_CHARS = 64  # longer text is neither a number nor a date
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_CHANNEL_SEPARATORS = re.compile(r"[\s,;|]+")


def parse_number(value: str) -> float | None:
    text = value.strip()
    if len(text) > _MAX_PARSED_CHARS or not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def parse_moment(value: str) -> float | None:
    """Unix seconds (UTC) of a date or date-time, None when the text is neither."""
    span = moment_span(value)
    return None if span is None else span[0]


def moment_span(value: str) -> tuple[float, float] | None:
    """(start, end) in Unix seconds: a date is its whole UTC day (end = start + one
    day, exclusive), a date-time one instant (end = start); None when neither."""
    text = value.strip()
    if len(text) > _MAX_PARSED_CHARS or len(text) < 8:
        return None
    dotted = _DOTTED_DAY.fullmatch(text)
    whole_day = True
    try:
        if dotted:
            day, month, year = (int(part) for part in dotted.groups())
            moment = datetime(year, month, day, tzinfo=UTC)
        elif len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        elif text[:4].isdigit() and text[4:5] == "-":
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            whole_day = False
        else:
            return None
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start = moment.timestamp()
    return (start, start + DAY_S) if whole_day else (start, start)


def check_channel(name: str) -> str:
    """The channel's stored form (lower case); ValueError naming a bad one."""
    channel = name.strip().lower()
    if not channel or len(channel) > MAX_CHANNEL_CHARS or not _CHANNEL.fullmatch(channel):
        raise ValueError(
            f"channel {name[:80]!r}: expected a name of letters, digits, '_', '.' or '-' "
            f"(at most {MAX_CHANNEL_CHARS} characters), such as email or telegram"
        )
    return channel


def parse_channels(text: str) -> tuple[str, ...]:
    """The channels of a list cell (`telegram, whatsapp`), each once, in order."""
    names = (check_channel(part) for part in _CHANNEL_SEPARATORS.split(text) if part)
    return tuple(dict.fromkeys(names))


def check_label(kind: str, value: str) -> str:
    """A stage or state, trimmed; `kind` names it in the ValueError."""
    label = " ".join(value.split())
    if len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"{kind} {value[:80]!r}…: at most {MAX_LABEL_CHARS} characters")
    if not label.isprintable():
        raise ValueError(f"{kind} {value!r}: no control characters")
    return label


def check_variable_name(name: str) -> str:
    if not name.strip():
        raise ValueError("a variable name cannot be empty")
    if len(name) > MAX_VARIABLE_NAME_CHARS:
        raise ValueError(
            f"variable name {name[:80]!r}…: at most {MAX_VARIABLE_NAME_CHARS} characters"
        )
    if not name.isprintable():
        raise ValueError(f"variable name {name!r}: no control characters")
    return name


def variables_json(variables: Mapping[str, str]) -> str:
    return json.dumps(dict(variables), ensure_ascii=False)


def variable_rows(contact_id: int, variables: Mapping[str, str]) -> list[dict[str, object]]:
    return [
        {
            "contact_id": contact_id,
            "name": name,
            "value": value,
            "number": parse_number(value),
            "moment": parse_moment(value),
        }
        for name, value in variables.items()
    ]


def store_variables(conn: Connection, contact_id: int, variables: Mapping[str, str]) -> None:
    """Replace the contact's variables (both forms) with `variables`."""
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(variables=variables_json(variables))
    )
    conn.execute(delete(contact_variables).where(contact_variables.c.contact_id == contact_id))
    rows = variable_rows(contact_id, variables)
    if rows:
        conn.execute(insert(contact_variables), rows)


def insert_new_fields(
    conn: Connection, created: Iterable[tuple[int, Mapping[str, str], Sequence[str]]]
) -> None:
    """The `contact_variables` and `contact_channels` rows of contacts just inserted
    with `variables_json(variables)` (contact id, variables, channels): one
    executemany per table, so a bulk import stays a few statements per chunk."""
    variables: list[dict[str, object]] = []
    channels: list[dict[str, object]] = []
    for contact_id, values, names in created:
        variables += variable_rows(contact_id, values)
        channels += [{"contact_id": contact_id, "channel": name} for name in names]
    if variables:
        conn.execute(insert(contact_variables), variables)
    if channels:
        conn.execute(insert(contact_channels), channels)


def store_channels(conn: Connection, contact_id: int, channels: Sequence[str]) -> None:
    """Replace the contact's channels with `channels` (checked names)."""
    conn.execute(delete(contact_channels).where(contact_channels.c.contact_id == contact_id))
    if channels:
        conn.execute(
            insert(contact_channels),
            [{"contact_id": contact_id, "channel": name} for name in dict.fromkeys(channels)],
        )


def channels_of(conn: Connection, contact_id: int) -> list[str]:
    return list(
        conn.execute(
            select(contact_channels.c.channel)
            .where(contact_channels.c.contact_id == contact_id)
            .order_by(contact_channels.c.channel)
        ).scalars()
    )
