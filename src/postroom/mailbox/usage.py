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
  ignores a conflict (a refused reservation may leave that month's row at 0).
  Committed before it returns: the count survives a crash. `reserve_batch` and
  `release_batch` do the same inside a caller's transaction, as group-commit
  batch operations: the SMTP sessions' reservations then share the queue's
  transaction and fsync instead of each paying its own.
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
        # (project, month) rows known to exist: the common case is one UPDATE.
        self._known_rows: set[tuple[int, str]] = set()

    def period(self) -> str:
        """The current UTC calendar month, "YYYY-MM"."""
        return time.strftime("%Y-%m", time.gmtime(self.clock()))

    def reserve(self, project_id: int, count: int = 1) -> Reservation | None:
        """`reserve_batch` for one request, in a transaction of its own."""
        with self.engine.begin() as conn:
            return self.reserve_batch(conn, [(project_id, count)])[0]

    def release(self, reservation: Reservation) -> None:
        with self.engine.begin() as conn:
            self.release_batch(conn, [reservation])

    def reserve_batch(
        self, conn: Connection, requests: list[tuple[int, int]]
    ) -> list[Reservation | None]:
        """(project id, count) each, in `conn`'s transaction: a group-commit batch
        operation, so that the SMTP sessions' reservations share the queue's fsync."""
        period = self.period()
        results: list[Reservation | None] = []
        for project_id, count in requests:
            if count < 1:
                raise ValueError(f"count {count}: reserve at least one message")
            done = self._add(conn, project_id, period, count)
            if done == 0 and (project_id, period) in self._known_rows:
                # Our memory of the month's row may be stale (a restore, a cleanup).
                self._known_rows.discard((project_id, period))
                done = self._add(conn, project_id, period, count)
            results.append(Reservation(project_id, period, count) if done == 1 else None)
        return results

    def _add(self, conn: Connection, project_id: int, period: str, count: int) -> int:
        """The conditional increment; rows changed (0: over the limit)."""
        if (project_id, period) not in self._known_rows:
            if (
                conn.execute(select(projects.c.id).where(projects.c.id == project_id)).first()
                is None
            ):
                raise LookupError(f"no project with id {project_id}")
            _ensure_row(conn, project_id, period)
            # If this transaction rolls back, the row is missing next time: the increment
            # then changes nothing and `reserve_batch` forgets the row and tries again.
            self._known_rows.add((project_id, period))
        limit = (
            select(projects.c.message_limit).where(projects.c.id == project_id).scalar_subquery()
        )
        done = conn.execute(
            update(project_usage)
            .where(
                project_usage.c.project_id == project_id,
                project_usage.c.period == period,
                or_(limit.is_(None), project_usage.c.used + count <= limit),
            )
            .values(used=project_usage.c.used + count)
        )
        return done.rowcount

    def release_batch(self, conn: Connection, reservations: list[Reservation]) -> list[None]:
        used = project_usage.c.used
        for reservation in reservations:
            conn.execute(
                update(project_usage)
                .where(
                    project_usage.c.project_id == reservation.project_id,
                    project_usage.c.period == reservation.period,
                )
                .values(used=case((used > reservation.count, used - reservation.count), else_=0))
            )
        return [None] * len(reservations)

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
