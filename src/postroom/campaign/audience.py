"""An audience: a stored filter over a project's contacts, compiled to one SQL query.

`AudienceFilter` holds the conditions, all ANDed (an empty filter is every
contact of the project):
- `lists`: a member of any of them; `exclude_lists`: a member of none;
- `stages`, `states`: the contact's CRM stage / funnel state is one of them;
- `channels`: connected on any of them;
- `variables`: `VarCondition`s `NAME OP VALUE`, OP one of `OPERATORS`:
  `exists` (no VALUE); `contains` (the text contains VALUE); `=` and `!=`
  compare as numbers when VALUE reads as a number, as dates when it reads as a
  date, else as text (exactly, case included, the same on SQLite and
  PostgreSQL); `< <= > >=` compare numbers or dates only. A date VALUE is its
  whole UTC day: `= 2024-05-01` is any time that day, `> 2024-05-01` from the
  next day on. `!=` is the negation of `=`: a contact without the variable
  matches it. Variable names compare exactly;
- `registered_after` / `registered_before`: a date (or date-time) as the
  operator wrote it; the span is half-open: registered on or after the first
  instant of "after", before the first instant of "before" (after 2024-01-01
  before 2024-02-01 = January);
- `min_rating`: rating at least N.
`to_json()` / `from_json(text)` are the form stored in `campaigns.audience`;
`from_json` checks everything as the flags are checked (`AudienceError`).

`filter_from_values(values, labels, base)` checks raw values (the CLI's flags:
`postroom.cli.audience_flags`); one that does not parse is one `AudienceError`
line naming the flag (its label) and the value.

`audience_query(conn, project_id, audience)` is ONE SQLAlchemy Core SELECT of
`RECIPIENT_COLUMNS` (EXISTS / NOT EXISTS over list_members, contact_channels
and contact_variables; the same text on SQLite and PostgreSQL); an unknown
list is an `AudienceError` naming it. `audience_conditions` gives its WHERE
clauses for callers that page through it. The report (skips, rating gate,
missing variables) and the recipients' stream are in `audience_report.py`.

Untrusted input: flag values and stored JSON (bounded: `MAX_CONDITIONS`,
`MAX_VALUE_CHARS`); every step is linear in them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, select
from sqlalchemy.engine import Connection

from postroom.campaign.contact_fields import (
    DATE_FORMS,
    check_channel,
    check_label,
    check_variable_name,
    moment_span,
    parse_number,
)
from postroom.db.models import contact_channels, contact_variables, contacts, list_members, lists

MAX_CONDITIONS = 64  # per kind: lists, stages, variables, ...
MAX_VALUE_CHARS = 1000
RECIPIENT_COLUMNS = (
    contacts.c.id,
    contacts.c.address,
    contacts.c.name,
    contacts.c.rating,
    contacts.c.blocked,
    contacts.c.unsubscribed_at,
    contacts.c.stage,
    contacts.c.state,
    contacts.c.registered_at,
    contacts.c.variables,
)
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "contains", "exists")
_SYMBOLS = re.compile(r"[<>=!]+")
_WORD_OPERATOR = re.compile(r"\s(contains|exists)(?=\s|$)", re.IGNORECASE)
_ORDERING = ("<", "<=", ">", ">=")


class AudienceError(Exception):
    """A filter that does not parse, or names what does not exist; one line."""


@dataclass(frozen=True, slots=True)
class VarCondition:
    name: str
    operator: str
    value: str = ""  # "" for exists

    @classmethod
    def parse(cls, text: str) -> VarCondition:
        """`NAME OP VALUE`; ValueError saying what is wrong. The operator is the first
        run of `<>=!` or the first free-standing `contains`/`exists`; VALUE is the
        rest, trimmed (one pair of enclosing double quotes is removed)."""
        symbol = _SYMBOLS.search(text)
        word = _WORD_OPERATOR.search(text)
        if word is not None and (symbol is None or word.start() < symbol.start()):
            name, operator, value = text[: word.start()], word.group(1).lower(), text[word.end() :]
        elif symbol is not None:
            name, operator, value = text[: symbol.start()], symbol.group(), text[symbol.end() :]
        else:
            raise ValueError(f"expected NAME OP VALUE, OP one of {' '.join(OPERATORS)}")
        if operator not in OPERATORS:
            raise ValueError(f"unknown operator {operator!r} (expected {' '.join(OPERATORS)})")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return cls.checked(name.strip(), operator, value)

    @classmethod
    def checked(cls, name: str, operator: str, value: str) -> VarCondition:
        check_variable_name(name)
        if operator not in OPERATORS:
            raise ValueError(f"unknown operator {operator!r} (expected {' '.join(OPERATORS)})")
        if len(value) > MAX_VALUE_CHARS:
            raise ValueError(f"a value is at most {MAX_VALUE_CHARS} characters")
        if operator == "exists":
            if value:
                raise ValueError("exists takes no value")
        elif not value:
            raise ValueError(f"{operator} needs a value")
        elif operator in _ORDERING and _comparable(value) is None:
            raise ValueError(
                f"{operator} compares numbers or dates; {value!r} is neither (a date: {DATE_FORMS})"
            )
        return cls(name, operator, value)

    def __str__(self) -> str:
        return f"{self.name} {self.operator} {self.value}".rstrip()


@dataclass(frozen=True, slots=True)
class AudienceFilter:
    lists: tuple[str, ...] = ()
    exclude_lists: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    variables: tuple[VarCondition, ...] = ()
    registered_after: str | None = None
    registered_before: str | None = None
    min_rating: int | None = None

    def list_names(self) -> frozenset[str]:
        """Every list the filter names, included or excluded."""
        return frozenset(self.lists + self.exclude_lists)

    def to_json(self) -> str:
        return json.dumps(
            {
                "lists": list(self.lists),
                "exclude_lists": list(self.exclude_lists),
                "stages": list(self.stages),
                "states": list(self.states),
                "channels": list(self.channels),
                "variables": [
                    {"name": item.name, "operator": item.operator, "value": item.value}
                    for item in self.variables
                ],
                "registered_after": self.registered_after,
                "registered_before": self.registered_before,
                "min_rating": self.min_rating,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> AudienceFilter:
        """The filter stored by `to_json` ("" or "{}": every contact); AudienceError
        naming the key that does not parse."""
        try:
            stored = json.loads(text or "{}")
        except ValueError as error:
            raise AudienceError(f"stored audience: not JSON ({error})") from None
        if not isinstance(stored, dict):
            raise AudienceError("stored audience: not a JSON object")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(stored) - known)
        if unknown:
            raise AudienceError(f"stored audience: unknown key {unknown[0]!r}")
        values: dict[str, Any] = {}
        for key, value in stored.items():
            if value is None or value == []:
                continue
            many = isinstance(value, list) and all(isinstance(item, str) for item in value)
            if key == "variables":
                values[key] = [_stored_condition(item) for item in _as_list(value)]
            elif key == "min_rating":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise AudienceError(f"stored audience: min_rating {value!r} is not a number")
                values[key] = value
            elif isinstance(value, str) if key.startswith("registered_") else many:
                values[key] = value
            else:
                raise AudienceError(f"stored audience: {key} has the wrong type")
        return _checked_filter(values, "stored audience: ")


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise AudienceError("stored audience: variables is not a list")
    return value


def _stored_condition(item: object) -> VarCondition:
    parts = item if isinstance(item, dict) else {}
    name, operator, value = (parts.get(key) for key in ("name", "operator", "value"))
    if sorted(parts) != ["name", "operator", "value"] or not all(
        isinstance(part, str) for part in (name, operator, value)
    ):
        raise AudienceError(f"stored audience: variable condition {str(item)[:80]!r} is malformed")
    try:
        return VarCondition.checked(name, operator, value)  # type: ignore[arg-type]
    except ValueError as error:
        raise AudienceError(f"stored audience: variables {name!r}: {error}") from None


def filter_from_values(
    values: dict[str, Any], labels: dict[str, str], base: AudienceFilter | None = None
) -> AudienceFilter:
    """The filter of raw flag values (by field; `labels` names each field's flag in
    errors); with `base`, they replace those fields of `base` and the others stay."""
    checked = _checked_filter(values, "", labels=labels)
    if base is None:
        return checked
    return replace(base, **{name: getattr(checked, name) for name in values})


def _checked_filter(
    values: dict[str, Any], prefix: str, *, labels: dict[str, str] | None = None
) -> AudienceFilter:
    """An AudienceFilter from raw values (strings, lists of strings), each checked;
    AudienceError `PREFIX--flag 'value': why` (or `PREFIX key ...` for stored JSON)."""
    checked: dict[str, Any] = {}
    for field_name, raw in values.items():
        if raw is None:
            continue
        label = labels[field_name] if labels else field_name
        items = [raw] if isinstance(raw, str | int) else list(raw)
        if len(items) > MAX_CONDITIONS:
            raise AudienceError(f"{prefix}{label}: at most {MAX_CONDITIONS} values")
        parsed = []
        for item in items:
            try:
                parsed.append(_checked_value(field_name, item))
            except ValueError as error:
                raise AudienceError(f"{prefix}{label} {str(item)[:80]!r}: {error}") from None
        many = field_name not in ("registered_after", "registered_before", "min_rating")
        checked[field_name] = tuple(dict.fromkeys(parsed)) if many else parsed[0]
    return replace(AudienceFilter(), **checked)


def _checked_value(field_name: str, value: Any) -> Any:
    if field_name in ("lists", "exclude_lists"):
        from postroom.rating.contacts import ContactError, check_list_name

        try:
            return check_list_name(value)
        except ContactError as error:
            raise ValueError(str(error)) from None
    if field_name in ("stages", "states"):
        return check_label(field_name[:-1], value)
    if field_name == "channels":
        return check_channel(value)
    if field_name == "variables":
        return value if isinstance(value, VarCondition) else VarCondition.parse(value)
    if field_name == "min_rating":
        rating = value if isinstance(value, int) else parse_number(value)
        if rating is None or rating != int(rating) or not 1 <= rating <= 10:
            raise ValueError("expected a whole number from 1 to 10")
        return int(rating)
    if moment_span(value) is None:  # registered_after, registered_before
        raise ValueError(f"not a date (expected {DATE_FORMS})")
    return value.strip()


def audience_query(conn: Connection, project_id: int, audience: AudienceFilter) -> Select:  # type: ignore[type-arg]
    """The contacts the filter matches, as one SELECT of `RECIPIENT_COLUMNS`."""
    return select(*RECIPIENT_COLUMNS).where(*audience_conditions(conn, project_id, audience))


def audience_conditions(
    conn: Connection, project_id: int, audience: AudienceFilter
) -> list[ColumnElement[bool]]:
    """The WHERE clauses over `contacts` (list names resolved now: AudienceError when
    one does not exist)."""
    conditions: list[ColumnElement[bool]] = [contacts.c.project_id == project_id]
    list_ids = _list_ids(conn, project_id, audience.list_names())
    member = list_members.c.contact_id == contacts.c.id
    if audience.lists:
        wanted = [list_ids[name] for name in audience.lists]
        conditions.append(exists().where(member, list_members.c.list_id.in_(wanted)))
    if audience.exclude_lists:
        unwanted = [list_ids[name] for name in audience.exclude_lists]
        conditions.append(~exists().where(member, list_members.c.list_id.in_(unwanted)))
    if audience.stages:
        conditions.append(contacts.c.stage.in_(audience.stages))
    if audience.states:
        conditions.append(contacts.c.state.in_(audience.states))
    if audience.channels:
        conditions.append(
            exists().where(
                contact_channels.c.contact_id == contacts.c.id,
                contact_channels.c.channel.in_(audience.channels),
            )
        )
    dialect = conn.dialect.name
    conditions += [_variable_condition(condition, dialect) for condition in audience.variables]
    if audience.registered_after is not None:
        start = _span(audience.registered_after)[0]
        conditions.append(contacts.c.registered_at >= start)
    if audience.registered_before is not None:
        start = _span(audience.registered_before)[0]
        conditions.append(contacts.c.registered_at < start)
    if audience.min_rating is not None:
        conditions.append(contacts.c.rating >= audience.min_rating)
    return conditions


def _list_ids(conn: Connection, project_id: int, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(names)
    if not wanted:
        return {}
    found = dict(
        conn.execute(
            select(lists.c.name, lists.c.id).where(
                lists.c.project_id == project_id, lists.c.name.in_(wanted)
            )
        ).all()
    )
    for name in wanted:
        if name not in found:
            raise AudienceError(f"no list named {name!r} in this project")
    return found


def _variable_condition(condition: VarCondition, dialect: str) -> ColumnElement[bool]:
    row = contact_variables.c
    named = and_(row.contact_id == contacts.c.id, row.name == condition.name)
    operator = condition.operator
    if operator == "exists":
        return exists().where(named)
    if operator == "contains":
        position = func.strpos if dialect == "postgresql" else func.instr
        return exists().where(named, position(row.value, condition.value) > 0)
    if operator == "!=":
        return not_(_variable_condition(replace(condition, operator="="), dialect))
    return exists().where(named, _compared(condition))


def _compared(condition: VarCondition) -> ColumnElement[bool]:
    """`row OP value` on the form VALUE reads as: number, date (a span), else text."""
    row = contact_variables.c
    number = parse_number(condition.value)
    if number is not None:
        return _ordered(row.number, condition.operator, number, number)
    span = moment_span(condition.value)
    if span is not None:
        return _ordered(row.moment, condition.operator, *span)
    return row.value == condition.value  # text: only `=` (VarCondition.checked)


def _ordered(column: Any, operator: str, start: float, end: float) -> ColumnElement[bool]:
    """`column OP [start, end)`: a span (a day) when end > start, else one point."""
    if end == start:
        return {
            "=": column == start,
            "<": column < start,
            "<=": column <= start,
            ">": column > start,
            ">=": column >= start,
        }[operator]
    return {
        "=": and_(column >= start, column < end),
        "<": column < start,
        "<=": column < end,
        ">": column >= end,
        ">=": column >= start,
    }[operator]


def _comparable(value: str) -> tuple[float, float] | None:
    number = parse_number(value)
    return (number, number) if number is not None else moment_span(value)


def _span(value: str) -> tuple[float, float]:
    span = moment_span(value)
    if span is None:  # from_json and filter_from_values checked it
        raise AudienceError(f"{value!r} is not a date (expected {DATE_FORMS})")
    return span
