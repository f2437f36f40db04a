"""CPU seconds of a server under test: its whole process tree, children included.

A server may be many processes: Postfix's master and its daemons, `postroom
serve` as a supervisor with worker processes (`[server] workers`) that may die
and be restarted. Two ways to count all of it:

- cgroup v2 (`CgroupMeter`, preferred: the maintainers' method): a child cgroup
  of our own, created under the cgroup2 mount (/proc/self/mounts) next to
  /proc/self/cgroup's path. `with meter.spawning():` moves the calling process
  into it while the server is started, so the server and everything it ever
  forks is born inside; `cpu.stat` `usage_usec` then counts every process,
  live or exited. What else was started with it and is not below its root
  process (`postfix start` leaves `postfix-script check-warn` running in the
  background for seconds: find, postconf) is waited for by `wait_for_strays`
  before the clock starts, so it neither counts nor competes for the CPUs.
  `close()` moves any leftover out and removes the cgroup.
- /proc (`TreeMeter`, the fallback): utime+stime of every live process below
  the root pid plus the cutime+cstime (reaped children) of each of them, so an
  exited worker or daemon still counts once its parent has reaped it. Misses a
  process reparented away from the tree (a daemon that double-forks).

`open_meter(prefer)` returns the first that works ("auto": cgroup, else /proc)
with a `source` naming it for the output. `sample_tree` and `cpu_by_name` give
the by-process breakdown (from /proc, whichever meter counts the total);
`settle` waits, bounded, until a meter's CPU stops moving. Input: only /proc
and /sys/fs/cgroup of this machine; needs root for the cgroup.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_INTERVAL_S = 0.5
SETTLE_QUIET_CPU_S = 0.02
MAX_TREE_PROCESSES = 10_000
CGROUP_REMOVE_TIMEOUT_S = 5.0


# -- /proc: a process tree ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcSample:
    """CPU seconds of a process tree: live processes by pid (name, own CPU), and the
    reaped children of all of them."""

    live: dict[int, tuple[str, float]]
    reaped: float

    @property
    def total(self) -> float:
        return sum(cpu for _, cpu in self.live.values()) + self.reaped


def _read_stat(pid: int) -> tuple[str, int, float, float] | None:
    """(comm, ppid, own CPU s, reaped children's CPU s) from /proc/PID/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    comm = raw[raw.index(b"(") + 1 : raw.rindex(b")")].decode(errors="replace")
    fields = raw[raw.rindex(b")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    reaped = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return comm, int(fields[1]), own, reaped


def sample_tree(root: int) -> ProcSample:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    if root not in stats:
        return ProcSample({}, 0.0)
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (_, ppid, _, _) in stats.items():
        children[ppid].append(pid)
    live: dict[int, tuple[str, float]] = {}
    reaped = 0.0
    pending = [root]
    while pending and len(live) < MAX_TREE_PROCESSES:
        pid = pending.pop()
        name, _, own, reaped_children = stats[pid]
        live[pid] = (name, own)
        # A live process's cutime holds only children already gone from `live`:
        # each exited process is counted once, by whoever reaped it.
        reaped += reaped_children
        pending.extend(children.get(pid, []))
    return ProcSample(live, reaped)


def cpu_by_name(before: ProcSample, after: ProcSample) -> dict[str, float]:
    """CPU seconds between two samples by process name ("python x3": three live
    processes of that name, e.g. a supervisor and two workers)."""
    by_name: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for pid, (name, cpu) in after.live.items():
        old = before.live.get(pid)
        by_name[name] += cpu - (old[1] if old and old[0] == name else 0.0)
        count[name] += 1
    reaped = after.reaped - before.reaped
    if reaped:
        by_name["(exited processes)"] += reaped
    return {
        name if count[name] < 2 else f"{name} x{count[name]}": round(cpu, 3)
        for name, cpu in sorted(by_name.items())
        if round(cpu, 3)
    }


# -- the meters --------------------------------------------------------------------


class CpuMeter(Protocol):
    """CPU seconds (user + system) of one server, counted from `watch(root)` on."""

    source: str  # what the output says was used

    def spawning(self) -> contextlib.AbstractContextManager[None]:
        """Around starting the server: what starts inside is counted."""
        ...

    def watch(self, root: int) -> None:
        """The server's root process, once started."""
        ...

    def wait_for_strays(self, timeout_s: float) -> None:
        """Until only the server's tree is left of what started with it (bounded)."""
        ...

    def total(self) -> float: ...

    def close(self) -> None: ...


class TreeMeter:
    """/proc: the tree below the root pid (see the module docstring)."""

    source = "/proc process tree (utime+stime, reaped children's cutime+cstime)"

    def __init__(self) -> None:
        self.root: int | None = None

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        yield

    def watch(self, root: int) -> None:
        self.root = root

    def wait_for_strays(self, timeout_s: float) -> None:
        pass  # invisible here: only the tree is known

    def total(self) -> float:
        if self.root is None:
            raise RuntimeError("TreeMeter.watch() was not called")
        return sample_tree(self.root).total

    def close(self) -> None:
        pass


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def _own_cgroup2(mount: Path) -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    raise OSError("no cgroup v2 entry in /proc/self/cgroup")


class CgroupMeter:
    """cgroup v2: a child cgroup the server is born in (see the module docstring)."""

    source = "cgroup v2 cpu.stat usage_usec"

    def __init__(self) -> None:
        mount = _cgroup2_mount()
        if mount is None:
            raise OSError("no cgroup2 mount")
        self.home = _own_cgroup2(mount)
        self.path = self.home / f"postroom-bench-{os.getpid()}-{time.monotonic_ns()}"
        self.root: int | None = None
        self.path.mkdir()
        try:
            self.total()  # cpu.stat readable
            with self.spawning():  # and we may move processes in and out
                pass
        except OSError:
            self.path.rmdir()
            raise

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        (self.path / "cgroup.procs").write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            (self.home / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def watch(self, root: int) -> None:
        self.root = root  # everything the server forks is born in the cgroup

    def strays(self) -> list[int]:
        """Processes in the cgroup outside the server's tree."""
        tree = sample_tree(self.root).live if self.root is not None else {}
        return [int(pid) for pid in self._procs() if int(pid) not in tree]

    def wait_for_strays(self, timeout_s: float) -> None:
        """Bounded; past `timeout_s` the strays are moved out (no longer counted)."""
        deadline = time.monotonic() + timeout_s
        while strays := self.strays():
            if time.monotonic() > deadline:
                self._move_home(strays)
                return
            time.sleep(0.05)

    def _procs(self) -> list[str]:
        return (self.path / "cgroup.procs").read_text().split()

    def _move_home(self, pids: list[int] | list[str]) -> None:
        for pid in pids:
            with contextlib.suppress(OSError):  # it may have exited meanwhile
                (self.home / "cgroup.procs").write_text(f"{pid}\n")

    def total(self) -> float:
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise OSError(f"{self.path}/cpu.stat has no usage_usec")

    def close(self) -> None:
        """Remove the cgroup; a process still in it (a straggler) goes back home."""
        deadline = time.monotonic() + CGROUP_REMOVE_TIMEOUT_S
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            self._move_home(self._procs())
            time.sleep(0.05)


def open_meter(prefer: str) -> CpuMeter:
    """ "cgroup", "proc", or "auto" (cgroup when this machine allows it, else /proc)."""
    if prefer == "proc":
        return TreeMeter()
    try:
        return CgroupMeter()
    except OSError:
        if prefer == "cgroup":
            raise
        return TreeMeter()


def settle(meter: CpuMeter, deadline_s: float) -> float:
    """Wait (bounded) until the server uses almost no CPU for two intervals in a row;
    its CPU total then."""
    previous = meter.total()
    quiet = 0
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and quiet < 2:
        time.sleep(SETTLE_INTERVAL_S)
        current = meter.total()
        quiet = quiet + 1 if current - previous < SETTLE_QUIET_CPU_S else 0
        previous = current
    return previous
