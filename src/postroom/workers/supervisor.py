"""`postroom serve` with `[server] workers` > 1: one supervisor, one node per worker.

The supervisor handles no mail. Start: apply the migrations (once, before any worker),
return every lease this node and its workers held (none of them runs now) — both in a
short-lived child (prepare.py), so the supervisor never loads the database layer — bind the
listeners (sockets.py) and load the TLS certificate, so that a mistake in either is one
line and exit 2 before any worker starts; then start N workers (`postroom -c FILE serve
--worker I/N`, role.py), each on its own port 25 sockets (SO_REUSEPORT) and, with
`[server] pin_workers` and a CPU for each, on a CPU of its own; worker 0 also
on the submission sockets (shares.py says why), with one table of port 25 session
counts they all share (shared_limits.py), and send systemd READY once every worker
said `ready`. A worker that exits before it is ready fails the start: the others are
stopped, exit 2.
Signal handlers are in place before the first worker starts: a SIGTERM during the start
stops what started (exit 2); a SIGHUP then is ignored (the workers read the config as
they start).
While running:
- a worker that dies is logged (exit status or signal) and started again under the same
  index: at once the first time, then after 1, 2, 4 ... 30 s while it keeps dying within
  a minute of its start. Its successor has the same node name and takes back the dead
  one's leases before it accepts anything, so its deliveries resume at once. After
  `MAX_QUICK_DEATHS` such deaths in a row (a config broken on disk since the last
  reload, a full disk) the supervisor stops the node and exits 2: a node that has lost
  a worker for good must not go on looking healthy to systemd;
- SIGHUP: the config is read here first; a broken one is refused (logged, no worker
  disturbed). Otherwise RELOADING, every worker that is ready reloads, READY once all
  said `reloaded` (or after a bound);
- SIGTERM/SIGINT: STOPPING, SIGTERM to every worker, which drains as a single-process
  serve does (`[server] drain_timeout`, twice), and the listening sockets are closed at
  once (no handshakes left for nobody to answer). A worker still running after both
  drains and a grace period is killed: its leases come back at the next start. Exit 0.
Logs: the supervisor's lines come from `postroom.supervisor`; a worker's carry `[wI]`.
Untrusted input: none. Config keys: [server] workers, drain_timeout, node_name; the
listen lists; [tls] cert, key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from postroom.config import Config, ConfigError, load_config
from postroom.core import sdnotify
from postroom.core.tls import server_context
from postroom.mta.inbound.shared_limits import SharedCounts
from postroom.mta.inbound.sockets import Listening, bind_listeners
from postroom.workers.role import (
    CONNECTION_COUNTS_ENV,
    LISTEN_FDS_ENV,
    READY,
    RELOADED,
    SUPERVISOR_PID_ENV,
    WORKER_CPU_ENV,
)
from postroom.workers.shares import limits_below_workers

log = logging.getLogger("postroom.supervisor")

START_TIMEOUT_S = 120.0  # imports, DKIM keys, the queue: seconds; a wedged worker: never
RELOAD_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
QUICK_DEATH_S = 60.0
MAX_QUICK_DEATHS = 5
MAX_RESTART_DELAY_S = 30.0


@dataclass(slots=True)
class _Worker:
    index: int
    listening: Listening
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    reported: dict[str, int] = field(default_factory=dict)
    alive: bool = False


class Supervisor:
    def __init__(
        self, config_path: str, config: Config, listening: list[Listening], count: int
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.count = count
        self._counts = SharedCounts.create(count)
        self._workers = [_Worker(i, listening[i]) for i in range(count)]
        self._cpus = worker_cpus(config, count)
        self._news = asyncio.Condition()
        self._stop = asyncio.Event()
        self._stopping = False
        self._ready = False
        self._gave_up = False
        self._listening = listening
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Before any worker starts: a stop asked during the start drains what started.
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._background(self._reload()))
        for worker in self._workers:
            await self._spawn(worker)
        started = self._background(
            self._until_all(READY, dict.fromkeys(range(self.count), 0)), keep=True
        )
        stopped = self._background(self._stop.wait(), keep=True)
        done, _ = await asyncio.wait(
            {started, stopped}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if started not in done or started.exception() is not None:
            reason = started.exception() if started.done() else None
            log.error(
                "start failed: %s",
                reason
                or ("stopped while starting" if stopped in done else "")
                or f"workers not ready in {START_TIMEOUT_S:.0f}s",
            )
            started.cancel()
            await self._stop_workers()
            return 2
        self._ready = True
        for worker in self._workers:
            self._background(self._watch(worker))
        log.info("postroom ready: %d workers", self.count)
        sdnotify.ready(f"{self.count} workers")
        await self._stop.wait()
        if self._gave_up:
            await self._stop_workers()
            return 2
        sdnotify.stopping()
        log.info("stopping: every worker drains")
        await self._stop_workers()
        log.info("stopped")
        return 0

    # -- workers -------------------------------------------------------------------

    async def _spawn(self, worker: _Worker) -> None:
        described, fds = worker.listening.inherit_env()
        env = {
            key: value
            for key, value in os.environ.items()
            if key != "NOTIFY_SOCKET"  # systemd hears the supervisor only
        }
        env[LISTEN_FDS_ENV] = described
        env[CONNECTION_COUNTS_ENV] = str(self._counts.fd)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        if self._cpus:
            env[WORKER_CPU_ENV] = str(self._cpus[worker.index])
        # A predecessor's sessions died with it; its successor starts from zero.
        self._counts.clear_row(worker.index)
        worker.reported = {}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "postroom.cli.main",
            "-c",
            self.config_path,
            "serve",
            "--worker",
            f"{worker.index}/{self.count}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=[*fds, self._counts.fd],
            env=env,
        )
        worker.process = process
        if self._stopping:  # the stop came while it was being started
            process.send_signal(signal.SIGTERM)
        worker.alive = True
        worker.started_at = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)
        self._background(self._read_reports(worker, worker.process))

    async def _read_reports(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            word = line.decode(errors="replace").strip()
            worker.reported[word] = worker.reported.get(word, 0) + 1
            async with self._news:
                self._news.notify_all()
        await process.wait()
        if worker.process is process:
            worker.alive = False
        async with self._news:
            self._news.notify_all()

    async def _until_all(self, word: str, before: dict[int, int]) -> None:
        """Until every worker in `before` reported `word` more often than it had then;
        `_WorkerGone` names one that exits first."""

        def done() -> bool:
            for worker in self._workers:
                if worker.index not in before:
                    continue
                if worker.reported.get(word, 0) > before[worker.index]:
                    continue
                if not worker.alive:
                    raise _WorkerGone(f"worker {worker.index} exited ({self._status(worker)})")
                return False
            return True

        async with self._news:
            await self._news.wait_for(done)

    async def _watch(self, worker: _Worker) -> None:
        while not self._stopping:
            assert worker.process is not None
            await worker.process.wait()
            if self._stopping:
                return
            lived_s = time.monotonic() - worker.started_at
            worker.quick_deaths = worker.quick_deaths + 1 if lived_s < QUICK_DEATH_S else 0
            if worker.quick_deaths >= MAX_QUICK_DEATHS:
                # Its successors die as it did (a config broken on disk since the last
                # reload, a full disk...): a node missing a worker must not go on
                # looking healthy. Stop, so that systemd's Restart= and alerts see it.
                log.error(
                    "worker %d died %d times within %.0fs of its start (%s): stopping",
                    worker.index,
                    worker.quick_deaths,
                    QUICK_DEATH_S,
                    self._status(worker),
                )
                self._gave_up = True
                self._stop.set()
                return
            delay = (
                0.0
                if worker.quick_deaths <= 1
                else min(MAX_RESTART_DELAY_S, 2.0 ** (worker.quick_deaths - 2))
            )
            log.error(
                "worker %d (pid %d) died (%s) after %.0fs; starting it again in %.0fs",
                worker.index,
                worker.process.pid,
                self._status(worker),
                lived_s,
                delay,
            )
            sdnotify.status(f"{self.count} workers, worker {worker.index} restarting")
            await asyncio.sleep(delay)
            while not self._stopping:
                try:
                    await self._spawn(worker)
                    break
                except OSError as error:  # EAGAIN, ENOMEM, EMFILE: try again shortly
                    log.error("cannot start worker %d: %s", worker.index, error)
                    await asyncio.sleep(MAX_RESTART_DELAY_S)

    @staticmethod
    def _status(worker: _Worker) -> str:
        code = worker.process.returncode if worker.process is not None else None
        if code is None:
            return "running"
        if code < 0:
            return f"signal {signal.Signals(-code).name}"
        return f"exit status {code}"

    # -- signals -------------------------------------------------------------------

    async def _reload(self) -> None:
        if not self._ready:
            log.warning("reload ignored: the workers are still starting")
            return
        sdnotify.reloading()
        try:
            reloaded = load_config(self.config_path)
        except ConfigError as error:
            log.error("reload refused, keeping the running config: %s", error)
            sdnotify.ready("reload refused")
            return
        if reloaded.server.worker_count() != self.count:
            log.warning("[server] workers changed: takes effect at the next start")
        # A worker still starting reads the new config anyway (and has no handler yet).
        live = [w for w in self._workers if w.alive and w.reported.get(READY)]
        before = {w.index: w.reported.get(RELOADED, 0) for w in live}
        for worker in live:
            assert worker.process is not None
            worker.process.send_signal(signal.SIGHUP)
        try:
            await asyncio.wait_for(self._until_all(RELOADED, before), RELOAD_TIMEOUT_S)
        except (_WorkerGone, TimeoutError) as failure:
            # A worker that died is started again with the new config anyway.
            log.warning("reload: %s", str(failure) or "a worker did not confirm in time")
        sdnotify.ready(f"{self.count} workers, reloaded")

    async def _stop_workers(self) -> None:
        self._stopping = True
        running = [w.process for w in self._workers if w.process is not None and w.alive]
        for process in running:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        # The workers close their copies as they start to drain; with ours open the
        # kernel would go on completing handshakes nobody answers until we exit.
        for sockets in self._listening:
            sockets.close()
        bound = 2 * float(self.config.server.drain_timeout) + STOP_GRACE_S
        waits = [asyncio.create_task(process.wait()) for process in running]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=bound)
        for process in running:
            if process.returncode is None:
                log.warning("worker pid %d did not drain in %.0fs: killed", process.pid, bound)
                process.kill()
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()

    def _background(self, work: Coroutine[Any, Any, Any], keep: bool = False) -> asyncio.Task[Any]:
        """A task the supervisor cancels when it stops (`keep`: the caller awaits it)."""
        task = asyncio.get_running_loop().create_task(work)
        if not keep:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task


def worker_cpus(config: Config, count: int) -> list[int]:
    """The CPU of each worker (`[server] pin_workers`, and a CPU for each); else []."""
    allowed = sorted(os.sched_getaffinity(0))
    if not config.server.pin_workers or len(allowed) < count:
        return []
    return allowed[:count]


class _WorkerGone(Exception):
    pass


async def _prepare(config_path: str) -> int:
    """`serve --prepare` (prepare.py) in a child: the migrations and the leases; its
    exit status."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postroom.cli.main",
        "-c",
        config_path,
        "serve",
        "--prepare",
        stdin=asyncio.subprocess.DEVNULL,
    )
    return await child.wait()


async def supervise(config_path: str, config: Config, count: int) -> int:
    """Prepare what the workers share, then run them until SIGTERM; the exit status."""
    prepared = await _prepare(config_path)
    if prepared != 0:
        return 2  # the child said why, in one line
    for key in limits_below_workers(config, count):
        log.warning("%s is below the %d workers: each worker allows 1", key, count)
    listening = bind_listeners(config, count)
    try:
        if listening[0].submission or listening[0].submission_tls:
            server_context(config.tls.cert, config.tls.key)  # a StartupError, before workers
        return await Supervisor(config_path, config, listening, count).run()
    finally:
        for sockets in listening:
            sockets.close()
