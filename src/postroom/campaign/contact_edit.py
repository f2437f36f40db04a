"""An operator's edit of one contact's fields: `contact set ADDRESS NAME=VALUE...`.

`parse_assignments(texts)` (pure) reads the assignments into `FieldChanges`:
- `name=TEXT`, `stage=TEXT`, `state=TEXT` (empty clears it);
- `registered=DATE` (`contact_fields.DATE_FORMS`; also `registered_at`);
- `channels=LIST` replaces the set (names separated by spaces, `,`, `;` or `|`;
  empty: none), `channels+=NAME` and `channels-=NAME` add or remove one;
- any other NAME is a template variable (names keep their case); an empty
  VALUE removes it.
The built-in names compare case-insensitively. `email`, `rating` and `blocked`
are refused (an address is the contact's identity; ratings have their own
verbs, whose events say why they moved). A bad assignment is a ValueError
whose message starts with it.

`apply_changes(engine, project, address, changes)` applies them in one
transaction (variables through `contact_fields.store_variables`, channels
through `store_channels`); a missing project or contact is a ContactError and
changes nothing.

Untrusted input: the assignments (command line); values are bounded by
`MAX_VALUE_CHARS`; every step is linear in them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine, select, update

from postroom.campaign.contact_fields import (
    DATE_FORMS,
    channels_of,
    check_channel,
    check_label,
    check_variable_name,
    parse_channels,
    parse_moment,
    store_channels,
    store_variables,
)
from postroom.db.models import contacts
from postroom.rating.contacts import contact_id_of, project_id_of

MAX_VALUE_CHARS = 10_000  # as a CSV cell (csv_import.MAX_FIELD_CHARS)
_REFUSED = {
    "email": "the address is the contact itself: add a new contact instead",
    "address": "the address is the contact itself: add a new contact instead",
    "rating": "use `contact set-rating`",
    "blocked": "use `contact block` or `contact unblock`",
}


@dataclass(slots=True)
class FieldChanges:
    """What one `contact set` changes; None: left as it is."""

    name: str | None = None
    stage: str | None = None
    state: str | None = None
    registered_at: float | None = None
    channels: tuple[str, ...] | None = None  # the new set
    channels_added: list[str] = field(default_factory=list)
    channels_removed: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # "" removes one


def parse_assignments(texts: Iterable[str]) -> FieldChanges:
    changes = FieldChanges()
    seen: set[str] = set()
    for text in texts:
        try:
            _assign(changes, text, seen)
        except ValueError as error:
            raise ValueError(f"{text[:80]!r}: {error}") from None
    return changes


def _assign(changes: FieldChanges, text: str, seen: set[str]) -> None:
    target, equals, value = text.partition("=")
    if not equals:
        raise ValueError("expected NAME=VALUE")
    if len(value) > MAX_VALUE_CHARS:
        raise ValueError(f"a value is at most {MAX_VALUE_CHARS} characters")
    key = target.strip().lower()
    if key in ("channels+", "channels-"):
        channel = check_channel(value)
        (changes.channels_added if key[-1] == "+" else changes.channels_removed).append(channel)
        return
    builtin = key if key in ("name", "stage", "state", "registered", "channels") else None
    if key == "registered_at":
        builtin = "registered"
    if key in _REFUSED:
        raise ValueError(f"{target.strip()} cannot be set here: {_REFUSED[key]}")
    name = builtin or check_variable_name(target.strip())
    if name in seen:
        raise ValueError(f"{name} is set twice")
    seen.add(name)
    if builtin == "name":
        changes.name = " ".join(value.split())
    elif builtin in ("stage", "state"):
        setattr(changes, builtin, check_label(builtin, value))
    elif builtin == "registered":
        moment = parse_moment(value)
        if moment is None:
            raise ValueError(f"{value[:80]!r} is not a date (expected {DATE_FORMS})")
        changes.registered_at = moment
    elif builtin == "channels":
        changes.channels = parse_channels(value)
    else:
        changes.variables[name] = value


def apply_changes(engine: Engine, project: str, address: str, changes: FieldChanges) -> None:
    with engine.begin() as conn:
        contact_id = contact_id_of(conn, project_id_of(conn, project), address)
        values: dict[str, object] = {
            column: getattr(changes, column)
            for column in ("name", "stage", "state", "registered_at")
            if getattr(changes, column) is not None
        }
        conn.execute(
            update(contacts)
            .where(contacts.c.id == contact_id)
            .values(**values, updated_at=time.time())
        )
        if changes.variables:
            stored = json.loads(
                conn.execute(
                    select(contacts.c.variables).where(contacts.c.id == contact_id)
                ).scalar_one()
                or "{}"
            )
            for name, value in changes.variables.items():
                if value:
                    stored[name] = value
                else:
                    stored.pop(name, None)
            store_variables(conn, contact_id, stored)
        if changes.channels is not None or changes.channels_added or changes.channels_removed:
            current = channels_of(conn, contact_id) if changes.channels is None else []
            wanted = [*(changes.channels or current), *changes.channels_added]
            removed = set(changes.channels_removed)
            store_channels(conn, contact_id, [name for name in wanted if name not in removed])
