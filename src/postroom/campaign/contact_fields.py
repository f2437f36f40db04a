"""Contact variables in the form audiences filter on.

A contact's variables are strings (a CSV cell, a `contact set NAME=VALUE`).
Filters compare numbers as numbers and dates as dates, so each variable is
stored with what it reads as: `parse_number` (a plain decimal: `42`, `-3.5`,
`1e3`; not `inf`, `nan`, `0x10` or `1,5`) and `parse_moment` (an ISO 8601 date
or date-time, or a day as `DD.MM.YYYY`; without a zone it is UTC) — NULL when
it does not read as one. `variable_rows(contact_id, variables)` gives the rows
of `contact_variables` for one contact; `store_variables(conn, contact_id,
variables)` replaces a contact's variables in both forms (the JSON object
templates see and the rows filters use) — the only writer of either, so they
never disagree.

Untrusted input: variable values (bounded by the importer: `MAX_FIELD_CHARS`);
every step is linear in the value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime

from sqlalchemy import Connection, delete, insert, update

from postroom.db.models import contact_variables, contacts

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DOTTED_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_MAX_PARSED_CHARS = 64  # longer text is neither a number nor a date


def parse_number(value: str) -> float | None:
    text = value.strip()
    if len(text) > _MAX_PARSED_CHARS or not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def parse_moment(value: str) -> float | None:
    """Unix seconds (UTC) of a date or date-time, None when the text is neither."""
    text = value.strip()
    if len(text) > _MAX_PARSED_CHARS or len(text) < 8:
        return None
    dotted = _DOTTED_DAY.fullmatch(text)
    try:
        if dotted:
            day, month, year = (int(part) for part in dotted.groups())
            moment = datetime(year, month, day, tzinfo=UTC)
        elif len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        elif text[:4].isdigit() and text[4:5] == "-":
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        else:
            return None
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


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
        .values(variables=json.dumps(dict(variables), ensure_ascii=False))
    )
    conn.execute(delete(contact_variables).where(contact_variables.c.contact_id == contact_id))
    rows = variable_rows(contact_id, variables)
    if rows:
        conn.execute(insert(contact_variables), rows)
