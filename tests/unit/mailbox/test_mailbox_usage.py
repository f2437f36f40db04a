"""The project message limit in a real SQLite database: reservations within the limit,
none past it (nothing changed), unlimited projects still counted, release, the UTC month
rollover with an injected clock, and exactness when threads race."""

from __future__ import annotations

import threading
from calendar import timegm
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from postroom.db.engine import make_engine
from postroom.db.migrate import upgrade
from postroom.db.models import project_usage
from postroom.mailbox.directory import Directory
from postroom.mailbox.usage import ProjectUsage, Reservation

JAN_31_LATE = timegm((2026, 1, 31, 23, 59, 59))  # UTC
FEB_1_EARLY = JAN_31_LATE + 1


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(JAN_31_LATE)


@pytest.fixture
def usage(engine: Engine, clock: Clock) -> ProjectUsage:
    return ProjectUsage(engine, clock)


def project(engine: Engine, name: str, limit: int | None) -> int:
    return Directory(engine).add_project(name, message_limit=limit).id


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(project_usage)).scalar_one()


def test_reservations_count_up_to_the_limit_and_not_past_it(
    engine: Engine, usage: ProjectUsage
) -> None:
    acme = project(engine, "acme", 5)
    assert usage.reserve(acme) == Reservation(acme, "2026-01", 1)
    assert usage.reserve(acme, 3) == Reservation(acme, "2026-01", 3)
    assert usage.reserve(acme, 2) is None  # 4 + 2 > 5: nothing changed
    assert usage.usage(acme) == (4, 5)
    assert usage.reserve(acme) is not None  # exactly the limit is allowed
    assert usage.reserve(acme) is None
    assert usage.usage(acme) == (5, 5)


def test_a_refusal_counts_nothing(engine: Engine, usage: ProjectUsage) -> None:
    closed = project(engine, "closed", 0)
    assert usage.reserve(closed) is None
    assert usage.usage(closed) == (0, 0)
    with engine.connect() as conn:  # at most the month's row, at zero
        assert conn.execute(select(func.sum(project_usage.c.used))).scalar() in (None, 0)


def test_unlimited_projects_always_succeed_and_still_count(
    engine: Engine, usage: ProjectUsage
) -> None:
    free = project(engine, "free", None)
    for _ in range(3):
        assert usage.reserve(free, 1000) is not None
    assert usage.usage(free) == (3000, None)


def test_projects_are_counted_apart(engine: Engine, usage: ProjectUsage) -> None:
    acme, beta = project(engine, "acme", 2), project(engine, "beta", 2)
    assert usage.reserve(acme, 2) and usage.reserve(beta, 1)
    assert (usage.usage(acme), usage.usage(beta)) == ((2, 2), (1, 2))


def test_release_gives_back_and_never_goes_below_zero(engine: Engine, usage: ProjectUsage) -> None:
    acme = project(engine, "acme", 3)
    held = usage.reserve(acme, 3)
    assert held is not None and usage.reserve(acme) is None
    usage.release(held)
    assert usage.usage(acme) == (0, 3)
    usage.release(held)  # a double release must not make room that was never used
    assert usage.usage(acme) == (0, 3)
    assert usage.reserve(acme, 3) is not None


def test_a_new_utc_month_starts_at_zero(engine: Engine, usage: ProjectUsage, clock: Clock) -> None:
    acme = project(engine, "acme", 2)
    january = usage.reserve(acme, 2)
    assert january is not None and usage.reserve(acme) is None
    clock.now = FEB_1_EARLY
    assert usage.period() == "2026-02"
    assert usage.usage(acme) == (0, 2)
    february = usage.reserve(acme)
    assert february == Reservation(acme, "2026-02", 1)
    # A transaction that started in January gives back to January, not to February.
    usage.release(january)
    assert usage.usage(acme) == (1, 2)
    clock.now = JAN_31_LATE
    assert usage.usage(acme) == (0, 2)


def test_a_lowered_limit_applies_to_the_next_reservation(
    engine: Engine, usage: ProjectUsage
) -> None:
    acme = project(engine, "acme", 10)
    assert usage.reserve(acme, 5) is not None
    Directory(engine).set_message_limit("acme", 5)
    assert usage.reserve(acme) is None
    Directory(engine).set_message_limit("acme", None)
    assert usage.reserve(acme) is not None
    assert usage.usage(acme) == (6, None)


def test_unknown_projects_and_bad_counts(engine: Engine, usage: ProjectUsage) -> None:
    with pytest.raises(LookupError, match="no project with id 99"):
        usage.reserve(99)
    with pytest.raises(LookupError, match="no project with id 99"):
        usage.usage(99)
    acme = project(engine, "acme", 1)
    with pytest.raises(ValueError, match="at least one"):
        usage.reserve(acme, 0)
    assert rows(engine) == 0


def test_racing_threads_never_pass_the_limit(tmp_path: Path) -> None:
    # A file database, and one engine per thread as separate processes would have.
    url = f"sqlite:///{tmp_path}/race.sqlite"
    setup = make_engine(url)
    upgrade(setup)
    acme = project(setup, "acme", 500)
    workers = 4
    engines = [make_engine(url) for _ in range(workers)]
    granted: list[list[Reservation]] = [[] for _ in range(workers)]
    refused = [0] * workers
    start = threading.Barrier(workers)

    def hammer(index: int) -> None:
        usage = ProjectUsage(engines[index])
        start.wait()
        for attempt in range(250):
            reservation = usage.reserve(acme, 1 + attempt % 3)
            if reservation is None:
                refused[index] += 1
            else:
                granted[index].append(reservation)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        total = sum(r.count for grants in granted for r in grants)
        assert total == ProjectUsage(setup).usage(acme)[0]  # every grant counted once
        # Never past the limit; and the later 1-message tries fill it exactly.
        assert total == 500
        assert sum(refused) > 0
    finally:
        for engine in (setup, *engines):
            engine.dispose()
