"""A worker process's side of the supervisor protocol (`postroom serve --worker I/N`).

The supervisor (supervisor.py) starts each worker as `postroom -c FILE serve --worker
I/N` with three environment values: `POSTROOM_LISTEN_FDS` (the inherited listening
sockets, `sockets.Listening.inherit_env`), `POSTROOM_CONNECTION_COUNTS` (the inherited
descriptor of the node's port 25 session counts, `shared_limits.SharedCounts`) and
`POSTROOM_SUPERVISOR_PID`. The worker:
- dies with the supervisor: a SIGKILL from the kernel when its parent goes
  (PR_SET_PDEATHSIG), so a supervisor killed with -9 leaves no worker serving on with
  leases a restarted service would hand out again (a worker whose parent is already
  gone when it starts refuses to run);
- runs on the CPU `POSTROOM_WORKER_CPU` names, when the supervisor pins workers
  (`[server] pin_workers`);
- applies its share of the node's lane limits and its own node name (shares.py), and
  counts port 25 sessions in its row of the shared table (`connection_limits`);
- reports on its stdout, one word a line: `ready` once its listeners serve and its
  delivery engine runs, `reloaded` after each SIGHUP; its log goes to stderr, each
  line naming the worker (`[w1]`).
Untrusted input: none (the supervisor writes the environment). Config keys: none here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

from postroom.config import Config
from postroom.core.errors import StartupError
from postroom.mta.inbound.shared_limits import SharedConnectionLimits, SharedCounts
from postroom.mta.inbound.sockets import Listening
from postroom.workers.shares import worker_config

LISTEN_FDS_ENV = "POSTROOM_LISTEN_FDS"
WORKER_CPU_ENV = "POSTROOM_WORKER_CPU"
CONNECTION_COUNTS_ENV = "POSTROOM_CONNECTION_COUNTS"
SUPERVISOR_PID_ENV = "POSTROOM_SUPERVISOR_PID"
READY = "ready"
RELOADED = "reloaded"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class WorkerRole:
    index: int
    count: int
    listening: Listening
    counts: SharedCounts

    @property
    def tag(self) -> str:
        return f"w{self.index}"

    def configure(self, config: Config) -> Config:
        return worker_config(config, self.index, self.count)

    def connection_limits(self, config: Config) -> SharedConnectionLimits:
        inbound = config.smtp.inbound
        return SharedConnectionLimits(
            self.counts,
            self.index,
            max_total=inbound.max_connections,
            max_per_ip=inbound.max_connections_per_ip,
        )

    def report(self, word: str) -> None:
        sys.stdout.write(word + "\n")
        sys.stdout.flush()

    @classmethod
    def from_environment(cls, spec: str) -> WorkerRole:
        """The role `--worker I/N` names, with the sockets the supervisor passed on."""
        index_text, _, count_text = spec.partition("/")
        if not (index_text.isdigit() and count_text.isdigit()) or not (
            0 <= int(index_text) < int(count_text)
        ):
            raise StartupError(f"--worker {spec!r}: expected INDEX/COUNT, e.g. 0/2")
        if any(
            key not in os.environ
            for key in (LISTEN_FDS_ENV, CONNECTION_COUNTS_ENV, SUPERVISOR_PID_ENV)
        ):
            raise StartupError("--worker is for the processes `postroom serve` starts itself")
        _die_with(int(os.environ[SUPERVISOR_PID_ENV]))
        # Until serve's own handler is in: a reload asked meanwhile must not kill us
        # (the config we are about to read is the reloaded one anyway).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if WORKER_CPU_ENV in os.environ:
            # Before any thread starts: the threads serve makes inherit it. Refused (a
            # seccomp filter, a cpuset changed meanwhile), the worker runs unpinned.
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, {int(os.environ[WORKER_CPU_ENV])})
        count = int(count_text)
        return cls(
            int(index_text),
            count,
            Listening.from_env(os.environ[LISTEN_FDS_ENV]),
            SharedCounts(int(os.environ[CONNECTION_COUNTS_ENV]), count),
        )


def _die_with(supervisor_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise StartupError(f"cannot follow the supervisor: {os.strerror(ctypes.get_errno())}")
    # Asked after prctl: a supervisor that died before it would never signal us.
    if os.getppid() != supervisor_pid:
        raise StartupError("the supervisor that started this worker is gone")
