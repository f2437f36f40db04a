"""Who of an audience gets the mail, who is skipped and why, and the rating gate.

A contact the filter matches (`audience.audience_query`) is skipped, for the
first of these reasons that applies, in this order:
- `blocked`: its rating blocked it (or a complaint, or an operator);
- `unsubscribed`: `contacts.unsubscribed_at` is set;
- `invalid`: the address validator (`Validator.check_with_mailbox`, DNS off:
  it must scale to a million contacts) says invalid;
- `duplicate`: an earlier contact (lower id) among those not skipped so far
  reaches the same mailbox (the validator's dedupe rules: case, Gmail dots,
  provider tags); the first one wins.
The others are the recipients.

- `recipients(conn, project_id, audience, validator)` streams them as lists of
  `Recipient` (at most `batch_rows` each), in contact id order, from ONE query
  read in batches (`yield_per`: a server-side cursor on PostgreSQL, SQLite's
  own stepping), so the producer and previews walk a million contacts in
  bounded memory. Not pages by id: with a selective index on another column
  (registration date) each page would sort the whole match again, N² in all.
- `audience_report(engine, project_id, audience, validator, rating_config)`
  counts the same walk: matched, skipped by reason, recipients, their average
  rating and rating histogram, and the gate's verdict (`rating.rules.gate`,
  the rule of `Contacts.gate`: over the recipients and the blocked contacts —
  blocked ones are skipped but still say the audience is bad). Below
  `[rating] campaign_minimum` the launch will be refused; the reason says which
  share drags it down. `AudienceReport.to_json()` is the shape of
  `campaign audience ID --json`.
- `classified(conn, project_id, audience, validator, required_variables=...)`
  is that walk itself: every matched row with its skip reason (None: a
  recipient). With `required_variables` (the launch: the variables the
  template needs without a default) a contact lacking one is skipped as
  `undefined_variable`, checked before `duplicate` so that a later contact of
  the same mailbox that has them is the one that gets the mail. `GateTally`
  counts what the gate looks at, row by row, for the report and the launch.
- `missing_variables(conn, project_id, audience, names)`: for each variable
  name a template uses, how many matched contacts that are neither blocked
  nor unsubscribed lack it (one SQL query, NOT EXISTS per name; the validator's
  skips are not SQL, so invalid and duplicate contacts count too).

Config keys: [rating] campaign_minimum (through `RatingConfig`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

from sqlalchemy import Engine, case, exists, func, select
from sqlalchemy.engine import Connection

from postroom.campaign.addresses.validator import Validator
from postroom.campaign.audience import AudienceFilter, audience_conditions, audience_query
from postroom.campaign.skip_reasons import SKIP_REASONS, UNDEFINED_VARIABLE
from postroom.config.schema import RatingConfig
from postroom.db.models import contact_variables, contacts
from postroom.rating.rules import ContactState, GateResult, gate

BATCH_ROWS = 5000


@dataclass(frozen=True, slots=True)
class Recipient:
    contact_id: int
    address: str
    name: str
    rating: int
    stage: str
    state: str
    registered_at: float | None
    variables: dict[str, str]
    blocked: bool = False  # always False in the recipients' stream (skipped)
    unsubscribed_at: float | None = None


@dataclass(slots=True)
class AudienceReport:
    matched: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    recipients: int = 0
    ratings: Counter[int] = field(default_factory=Counter)  # recipients by rating
    gate: GateResult | None = None
    minimum: float = 0.0

    @property
    def average_rating(self) -> float | None:
        if not self.recipients:
            return None
        return sum(rating * count for rating, count in self.ratings.items()) / self.recipients

    def to_json(self) -> dict[str, Any]:
        average = self.average_rating
        assert self.gate is not None
        return {
            "audience": self.recipients,
            "matched": self.matched,
            "skipped": dict(self.skipped),
            "average_rating": None if average is None else round(average, 3),
            "gate": {
                "ok": self.gate.allowed,
                "minimum": self.minimum,
                "reason": self.gate.message,
                "average": round(self.gate.average, 3),
                "blocked": self.gate.blocked,
                "low": self.gate.low,
            },
            "ratings": {str(rating): self.ratings[rating] for rating in sorted(self.ratings)},
        }

    def text_lines(self) -> list[str]:
        """The report for people (`campaign audience ID` without --json)."""
        skipped = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
        average = self.average_rating
        lines = [
            f"audience: {self.recipients} recipient(s) of {self.matched} matched contact(s)",
            f"  skipped: {skipped}",
            "  average rating: " + ("-" if average is None else f"{average:.2f}"),
        ]
        if self.ratings:
            shares = ", ".join(
                f"{rating}: {count / self.recipients:.0%}"
                for rating, count in sorted(self.ratings.items())
            )
            lines.append(f"  ratings: {shares}")
        assert self.gate is not None
        verdict = "launch allowed" if self.gate.allowed else "launch refused"
        lines.append(f"  gate: {verdict}: {self.gate.message}")
        return lines


class GateTally:
    """What `rating.rules.gate` judges, counted one classified contact at a time: the
    recipients and the blocked contacts (skipped, but they still say the audience is
    bad). Kept as counts per distinct state: memory does not grow with the audience."""

    def __init__(self) -> None:
        self.states: Counter[ContactState] = Counter()

    def count(self, rating: int, reason: str | None) -> None:
        if reason is None:
            self.states[ContactState(rating)] += 1
        elif reason == "blocked":
            self.states[ContactState(rating, True)] += 1

    def verdict(self, rating_config: RatingConfig) -> GateResult:
        # The gate's rule, fed one shared object per distinct state: a list of
        # references, not a million objects.
        states = chain.from_iterable(repeat(state, count) for state, count in self.states.items())
        return gate(list(states), rating_config)


def recipients(
    conn: Connection,
    project_id: int,
    audience: AudienceFilter,
    validator: Validator,
    *,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[list[Recipient]]:
    batch: list[Recipient] = []
    for row, reason in classified(conn, project_id, audience, validator, batch_rows=batch_rows):
        if reason is None:
            batch.append(recipient_from_row(row))
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    if batch:
        yield batch


def audience_report(
    engine: Engine,
    project_id: int,
    audience: AudienceFilter,
    validator: Validator,
    rating_config: RatingConfig,
) -> AudienceReport:
    report = AudienceReport(minimum=rating_config.campaign_minimum)
    tally = GateTally()
    with engine.connect() as conn:
        for row, reason in classified(conn, project_id, audience, validator):
            report.matched += 1
            tally.count(row.rating, reason)
            if reason is None:
                report.recipients += 1
                report.ratings[row.rating] += 1
            else:
                report.skipped[reason] += 1
    report.gate = tally.verdict(rating_config)
    return report


def missing_variables(
    conn: Connection, project_id: int, audience: AudienceFilter, names: Sequence[str]
) -> dict[str, int]:
    if not names:
        return {}
    wanted = list(dict.fromkeys(names))
    counts = [
        func.coalesce(
            func.sum(
                case(
                    (
                        ~exists().where(
                            contact_variables.c.contact_id == contacts.c.id,
                            contact_variables.c.name == name,
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
            0,
        )
        for name in wanted
    ]
    row = conn.execute(
        select(*counts).where(
            *audience_conditions(conn, project_id, audience),
            contacts.c.blocked == 0,
            contacts.c.unsubscribed_at.is_(None),
        )
    ).one()
    return {name: int(count) for name, count in zip(wanted, row, strict=True)}


def classified(
    conn: Connection,
    project_id: int,
    audience: AudienceFilter,
    validator: Validator,
    *,
    required_variables: frozenset[str] = frozenset(),
    batch_rows: int = BATCH_ROWS,
) -> Iterator[tuple[Any, str | None]]:
    """Every matched contact row with its skip reason (None: a recipient), by id."""
    query = audience_query(conn, project_id, audience).order_by(contacts.c.id)
    seen_mailboxes: set[str] = set()
    # On the statement, not the connection (which would keep it, and a caller writing
    # through the same connection would get server-side cursors for its inserts too).
    result = conn.execute(query.execution_options(yield_per=batch_rows))
    with result:
        for row in result:
            yield row, _skip_reason(row, validator, seen_mailboxes, required_variables)


def _skip_reason(
    row: Any, validator: Validator, seen_mailboxes: set[str], required: frozenset[str]
) -> str | None:
    if row.blocked:
        return "blocked"
    if row.unsubscribed_at is not None:
        return "unsubscribed"
    verdict, mailbox = validator.check_with_mailbox(row.address)
    if verdict.verdict == "invalid" or mailbox is None:
        return "invalid"
    if required and not required <= json.loads(row.variables or "{}").keys():
        return UNDEFINED_VARIABLE
    if mailbox in seen_mailboxes:
        return "duplicate"
    seen_mailboxes.add(mailbox)
    return None


def recipient_from_row(row: Any) -> Recipient:
    """A row of `RECIPIENT_COLUMNS` as a Recipient."""
    return Recipient(
        contact_id=row.id,
        address=row.address,
        name=row.name,
        rating=row.rating,
        stage=row.stage,
        state=row.state,
        registered_at=row.registered_at,
        variables=json.loads(row.variables or "{}"),
        blocked=bool(row.blocked),
        unsubscribed_at=row.unsubscribed_at,
    )


def count_matched(conn: Connection, project_id: int, audience: AudienceFilter) -> int:
    """How many contacts the filter matches (one COUNT over `audience_query`)."""
    query = audience_query(conn, project_id, audience)
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())
