"""A project's message limit: accepted recipients counted per UTC calendar month.

`ProjectUsage(engine, clock)` keeps one `project_usage` row per (project, month
"YYYY-MM" in UTC). Every accepted recipient of the project's mail counts one.

- `reserve(project_id, count)` adds `count` to this month's row if that keeps it
  within `projects.message_limit` and returns a `Reservation`; otherwise it
  changes nothing and returns None. A NULL limit is unlimited: it always succeeds
  and still counts, so `project list` shows the traffic. Exact under concurrency
  (threads, processes, several nodes on one PostgreSQL): the check and the
  increment are one conditional UPDATE (`used + n <= limit`), which the database
  serialises per row; the month's row is created before it with an INSERT that
  ignores a conflict. One short transaction, committed before it returns: the
  count survives a crash.
- `release(reservation)` gives back what a refused or aborted transaction
  reserved, to the month it was taken from, never below zero.
- `usage(project_id)` is (used this month, limit).

An unknown project id is a `LookupError`. Blocking database I/O: the SMTP
session calls these in a thread. Config keys: none (limits are per project,
`postroom project limit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from postroom.db.models import project_usage, projects


@dataclass(frozen=True, slots=True)
class Reservation:
    """Messages counted for `project_id` in `period` ("YYYY-MM"), until released."""

    project_id: int
    period: str
    count: int


class ProjectUsage:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def period(self) -> str:
        """The current UTC calendar month, "YYYY-MM"."""
        return time.strftime("%Y-%m", time.gmtime(self.clock()))

    def reserve(self, project_id: int, count: int = 1) -> Reservation | None:
        if count < 1:
            raise ValueError(f"count {count}: reserve at least one message")
        period = self.period()
        limit = (
            select(projects.c.message_limit).where(projects.c.id == project_id).scalar_subquery()
        )
        row = (project_usage.c.project_id == project_id) & (project_usage.c.period == period)
        with self.engine.connect() as conn, conn.begin() as transaction:
            try:
                _ensure_row(conn, project_id, period)
            except IntegrityError:
                raise LookupError(f"no project with id {project_id}") from None
            done = conn.execute(
                update(project_usage)
                .where(row, or_(limit.is_(None), project_usage.c.used + count <= limit))
                .values(used=project_usage.c.used + count)
            )
            if done.rowcount != 1:
                # Over the limit: not even the month's empty row stays ("nothing changed").
                transaction.rollback()
                return None
        return Reservation(project_id=project_id, period=period, count=count)

    def release(self, reservation: Reservation) -> None:
        used = project_usage.c.used
        with self.engine.begin() as conn:
            conn.execute(
                update(project_usage)
                .where(
                    project_usage.c.project_id == reservation.project_id,
                    project_usage.c.period == reservation.period,
                )
                .values(used=case((used > reservation.count, used - reservation.count), else_=0))
            )

    def usage(self, project_id: int) -> tuple[int, int | None]:
        """(messages counted this month, the project's limit or None for unlimited)."""
        period = self.period()
        with self.engine.connect() as conn:
            found = conn.execute(
                select(projects.c.message_limit, project_usage.c.used)
                .select_from(projects)
                .outerjoin(
                    project_usage,
                    (project_usage.c.project_id == projects.c.id)
                    & (project_usage.c.period == period),
                )
                .where(projects.c.id == project_id)
            ).first()
        if found is None:
            raise LookupError(f"no project with id {project_id}")
        return int(found.used or 0), found.message_limit


def _ensure_row(conn: Connection, project_id: int, period: str) -> None:
    """The month's row, created at 0 unless it exists (a concurrent creator wins quietly)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(project_usage)
        .values(project_id=project_id, period=period, used=0)
        .on_conflict_do_nothing(index_elements=["project_id", "period"])
    )
