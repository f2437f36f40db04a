"""`campaign launch` at scale: the snapshot's time, and how long it keeps other writers out.

Contract (`.venv/bin/python bench/launch.py [--contacts N] [--repeat R] [--profile FILE]`,
from the repo root; no peer, no root): per round, a fresh SQLite file (production
durability: WAL, synchronous=FULL) with the producer tests' world
(tests/unit/campaign/producer_world.py: a project, its verified domain, a confirmed
sender, a template greeting `contact.first_name`) and N contacts (default 100,000)
on the list "customers", each with a first_name, bulk-inserted untimed; then the
real `campaign.launch.launch` of a draft over that list, timed: wall seconds and the
launching thread's CPU seconds.

The write lock, two ways: the launch's own write transactions are timed from the
lock taken to the commit done (the longest is the longest write-lock hold; with
the launching thread's CPU time in it, which a busy machine does not inflate); and
another process stands for a serve worker's group commit: it takes
`write_transaction` (the flock, then BEGIN IMMEDIATE), writes one row, commits,
sleeps `PROBE_GAP_S`, again, for as long as the launch runs, each wait for the lock
recorded (the longest is what SMTP's 250 would have waited for at worst). Printed
with their medians and how many writes got through during the launch.

Prints each round and the medians over R rounds (default 3). `--profile FILE`: one
more launch under cProfile, stats to FILE and the top functions printed.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.unit.campaign

from sqlalchemy import Connection, Engine, text
from tests.unit.campaign.producer_world import ProducerWorld

from postroom.campaign import launch_lease
from postroom.db.engine import make_engine, write_transaction

PROBE_GAP_S = 0.005
INSERT_ROWS = 20_000


@dataclass
class Round:
    launch_s: float = 0.0
    launch_cpu_s: float = 0.0
    recipients: int = 0
    holds_s: list[float] = field(default_factory=list)  # the launch's write transactions
    holds_cpu_s: list[float] = field(default_factory=list)  # their CPU (a busy machine)
    waits_s: list[float] = field(default_factory=list)  # the other writer's, for the lock


def populate(world: ProducerWorld, count: int) -> None:
    """Contacts 2..count (the world made the first) on the list, bulk-inserted."""
    now = time.time()
    with world.engine.begin() as conn:
        list_id = conn.execute(text("SELECT id FROM lists WHERE name = 'customers'")).scalar_one()
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for start in range(1, count, INSERT_ROWS):
            ids = range(start + 1, min(start + INSERT_ROWS, count) + 1)
            cursor.executemany(
                "INSERT INTO contacts (id, project_id, address, rating, blocked, blocked_cause,"
                " source, created_at, updated_at, name, variables)"
                " VALUES (?, ?, ?, 10, 0, '', 'import', ?, ?, '', '{\"first_name\": \"Ann\"}')",
                [(i, world.project_id, f"user{i:06d}@dest{i % 97}.test", now, now) for i in ids],
            )
            cursor.executemany(
                "INSERT INTO list_members (list_id, contact_id) VALUES (?, ?)",
                [(list_id, i) for i in ids],
            )
    with world.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def probe_writer(url: str, stop: Any, waits: Any) -> None:
    """Another process writing as the queue's group commit does, until `stop` is set;
    its waits for the lock are sent through `waits`."""
    engine = make_engine(url)
    seen: list[float] = []
    while not stop.is_set():
        asked = time.monotonic()
        with write_transaction(engine) as conn:
            seen.append(time.monotonic() - asked)
            conn.execute(text("UPDATE projects SET created_at = created_at + 0"))
        stop.wait(PROBE_GAP_S)
    waits.send(seen)
    engine.dispose()


@contextmanager
def timed_holds(result: Round) -> Iterator[None]:
    """The launch's write transactions (all through launch_lease) timed, lock to commit:
    wall time, and the CPU time of the thread (what a quiet machine would take, fsync
    waits aside)."""
    original = launch_lease.write_transaction

    @contextmanager
    def timed(engine: Engine, **kwargs: Any) -> Iterator[Connection]:
        with original(engine, **kwargs) as conn:
            taken, cpu_taken = time.monotonic(), time.thread_time()
            yield conn
        result.holds_s.append(time.monotonic() - taken)
        result.holds_cpu_s.append(time.thread_time() - cpu_taken)

    launch_lease.write_transaction = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        launch_lease.write_transaction = original


def one_round(count: int, profile: Path | None = None) -> Round:
    result = Round()
    with tempfile.TemporaryDirectory(prefix="postroom-launch-bench-") as directory:
        url = f"sqlite:///{directory}/state.db"
        world = ProducerWorld(url, Path(directory), 1)
        populate(world, count)
        world.engine.dispose()  # nothing pooled crosses the fork
        forked = multiprocessing.get_context("fork")
        stop = forked.Event()
        received, sent = forked.Pipe(duplex=False)
        probe = forked.Process(target=probe_writer, args=(url, stop, sent))
        probe.start()
        profiler = cProfile.Profile() if profile else None
        with timed_holds(result):
            started, cpu_started = time.monotonic(), time.thread_time()
            if profiler:
                profiler.enable()
            launched = world.launch()
            if profiler:
                profiler.disable()
            result.launch_s = time.monotonic() - started
            result.launch_cpu_s = time.thread_time() - cpu_started
        stop.set()
        result.waits_s = received.recv() if received.poll(60) else []
        probe.join(timeout=60)
        result.recipients = launched.recipients
        world.engine.dispose()
    if profiler and profile:
        profiler.dump_stats(profile)
        pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(30)
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(25)
    return result


def describe(result: Round) -> str:
    waits = result.waits_s or [float("nan")]
    return (
        f"launch {result.launch_s:6.2f} s wall, {result.launch_cpu_s:5.2f} s CPU, "
        f"{result.recipients:,} recipients; its {len(result.holds_s)} write transactions: "
        f"longest {max(result.holds_s) * 1000:.0f} ms, median "
        f"{statistics.median(result.holds_s) * 1000:.0f} ms (CPU: longest "
        f"{max(result.holds_cpu_s) * 1000:.0f} ms, median "
        f"{statistics.median(result.holds_cpu_s) * 1000:.0f} ms); the other writer: "
        f"{len(result.waits_s)} writes, longest wait {max(waits) * 1000:.0f} ms, "
        f"median {statistics.median(waits) * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="one more launch under cProfile")
    args = parser.parse_args()
    if args.contacts < 1 or args.repeat < 1:
        parser.error("--contacts and --repeat must be >= 1")
    rounds = []
    for index in range(args.repeat):
        rounds.append(one_round(args.contacts))
        print(f"round {index + 1}: {describe(rounds[-1])}", flush=True)
    print(
        f"launch of {args.contacts:,} contacts, medians of {args.repeat}: "
        f"{statistics.median(r.launch_s for r in rounds):.2f} s wall, "
        f"{statistics.median(r.launch_cpu_s for r in rounds):.2f} s CPU; longest write "
        f"transaction {statistics.median(max(r.holds_s) for r in rounds) * 1000:.0f} ms; "
        "longest wait of the other writer "
        f"{statistics.median(max(r.waits_s or [0.0]) for r in rounds) * 1000:.0f} ms"
    )
    if args.profile:
        one_round(args.contacts, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
