"""Durable enqueues per second with one and with several writer processes on one SQLite file.

Contract (`.venv/bin/python bench/queue_writers.py [--messages N] [--sessions S]
[--processes 1,2] [--repeat R] [--json]`, from the repo root): for each process
count P, a fresh SQLite database (production settings: WAL, synchronous=FULL,
busy_timeout; `db.engine.make_engine`) is shared by P spawned processes, each a
worker of a multi-process `serve` reduced to its queue: its own `QueueStore`
(own group-commit thread, node name `bench/w<index>`) and S/P concurrent
"sessions" that each enqueue one message (one recipient, 2,111 bytes, like
bench/relay.py) after another, every enqueue returning only once committed. All
processes start together (a barrier); N messages in all. Per run it prints the
durable enqueues per second (N / wall time from the barrier until the last
process finished) and the CPU time of all the writers per enqueue (their
utime+stime from the barrier on, threads included; start-up excluded). Runs alternate between
the process counts R times; the medians follow. Every run is checked: the
database holds exactly N messages with N deliveries. No peer: this measures
what sharing one SQLite file between worker processes costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

BODY_BYTES = 2111
BARRIER_TIMEOUT_S = 120.0
RESULT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Run:
    processes: int
    messages: int
    wall_s: float
    enqueues_per_s: float
    cpu_ms_per_enqueue: float


def writer(
    url: str, index: int, messages: int, sessions: int, barrier: Barrier, results: Queue
) -> None:
    """One worker process: `sessions` concurrent enqueuers share `messages` messages;
    puts (CPU seconds it spent enqueueing, instant the last enqueue committed)."""
    cpu_s = asyncio.run(_enqueue_all(url, index, messages, sessions, barrier))
    results.put((cpu_s, time.time()))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _enqueue_all(
    url: str, index: int, messages: int, sessions: int, barrier: Barrier
) -> float:
    from postroom.db.engine import make_engine
    from postroom.db.models import MessageOrigin
    from postroom.mta.queue.records import NewMessage
    from postroom.mta.queue.store import QueueStore

    store = QueueStore(make_engine(url), node_name=f"bench/w{index}")
    store.start()
    body = b"Subject: bench\r\n\r\n" + b"x" * (BODY_BYTES - 18)
    numbers = iter(range(messages))

    async def session() -> None:
        for number in numbers:
            await store.enqueue(
                NewMessage(
                    queue_id=f"B{index}M{number:08d}",
                    mail_from="bench@src.test",
                    recipients=("user@bench.test",),
                    body=body,
                    pool="default",
                    origin=MessageOrigin.RELAY,
                    created_at=time.time(),
                )
            )

    await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT_S)
    started_cpu_s = _cpu_s()
    try:
        await asyncio.gather(*(session() for _ in range(sessions)))
    finally:
        await store.close()
    return _cpu_s() - started_cpu_s


def run_once(workdir: Path, processes: int, messages: int, sessions: int) -> Run:
    from sqlalchemy import func, select

    from postroom.db.engine import make_engine
    from postroom.db.migrate import upgrade
    from postroom.db.models import deliveries
    from postroom.db.models import messages as messages_table

    url = f"sqlite:///{workdir}/queue-{processes}-{time.monotonic_ns()}.sqlite"
    engine = make_engine(url)
    upgrade(engine)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    shares = [messages // processes + (i < messages % processes) for i in range(processes)]
    workers = [
        context.Process(
            target=writer,
            args=(url, index, shares[index], max(1, sessions // processes), barrier, results),
        )
        for index in range(processes)
    ]
    for process in workers:
        process.start()
    barrier.wait(BARRIER_TIMEOUT_S)
    started = time.time()
    outcomes = [results.get(timeout=RESULT_TIMEOUT_S) for _ in workers]
    for process in workers:
        process.join(RESULT_TIMEOUT_S)
    if any(process.exitcode != 0 for process in workers):
        raise SystemExit("a writer process failed")
    wall_s = max(finished for _, finished in outcomes) - started
    cpu_s = sum(cpu for cpu, _ in outcomes)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(messages_table)).scalar_one()
        rows = conn.execute(select(func.count()).select_from(deliveries)).scalar_one()
    engine.dispose()
    if stored != messages or rows != messages:
        raise SystemExit(f"{processes} processes: {stored} messages, {rows} deliveries stored")
    return Run(processes, messages, wall_s, messages / wall_s, cpu_s * 1000 / messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=20, help="in all, split among processes")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(count) for count in args.processes.split(",")]
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="postroom-bench-") as workdir:
        for _ in range(args.repeat):
            for processes in counts:
                run = run_once(Path(workdir), processes, args.messages, args.sessions)
                runs.append(run)
                if not args.json:
                    print(
                        f"{run.processes} process(es): {run.enqueues_per_s:8.0f} durable "
                        f"enqueues/s, {run.cpu_ms_per_enqueue:.3f} ms CPU/enqueue "
                        f"({run.wall_s:.2f} s)",
                        file=sys.stderr,
                    )
    medians = {
        processes: {
            "enqueues_per_s": statistics.median(
                r.enqueues_per_s for r in runs if r.processes == processes
            ),
            "cpu_ms_per_enqueue": statistics.median(
                r.cpu_ms_per_enqueue for r in runs if r.processes == processes
            ),
        }
        for processes in counts
    }
    if args.json:
        print(json.dumps({"runs": [asdict(r) for r in runs], "medians": medians}, indent=2))
    else:
        for processes, median in medians.items():
            print(
                f"median, {processes} process(es): {median['enqueues_per_s']:.0f} durable "
                f"enqueues/s, {median['cpu_ms_per_enqueue']:.3f} ms CPU/enqueue"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
