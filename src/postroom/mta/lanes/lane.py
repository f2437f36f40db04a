"""Lanes: the messages waiting for one (egress source, destination site), and their limits.

A lane owns a FIFO of jobs and opens up to `max_connections` connections to
the site, each sending up to `max_messages_per_connection` messages, within
`max_per_minute` / `max_per_hour`. Limits come from `[delivery]` with
per-destination overrides (`[[delivery.destination]] match` = a domain, or a
suffix such as ".google.com" matched against the site's MX host names).

Failure scope decides who pays: when the site cannot be reached at all (every
MX failed), the lane reports that outcome for every job it holds and suspends
itself for a while, so that a dead site does not take a connection attempt per
message (Postfix's dead-destination rule). Recipient and message outcomes only
reach their own deliveries.

Right before a connection takes a job, the lane asks its host whether the job
is withheld (its producer stopped it: `mta.delivery.withhold`); such a job
leaves the lane unsent and takes no slot of the rate window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postroom.config.schema import DeliveryConfig
from postroom.mta.delivery.client import ConnectSettings, SiteConnection, SiteUnreachable
from postroom.mta.delivery.mx import Destination
from postroom.mta.delivery.outcome import Outcome
from postroom.mta.lanes.pools import Source
from postroom.mta.queue.records import ClaimedDelivery, Job

log = logging.getLogger("postroom.delivery")


@dataclass(frozen=True, slots=True)
class LaneLimits:
    max_connections: int
    max_messages_per_connection: int
    max_per_minute: int  # 0 = unlimited
    max_per_hour: int
    idle_connection_timeout_s: float


def limits_for(destination: Destination, config: DeliveryConfig) -> LaneLimits:
    """The default limits, overridden by every matching `[[delivery.destination]]`."""
    values = {
        "max_connections": config.max_connections,
        "max_messages_per_connection": config.max_messages_per_connection,
        "max_per_minute": config.max_per_minute,
        "max_per_hour": config.max_per_hour,
    }
    hosts = [host.name.lower().rstrip(".") for host in destination.hosts]
    for override in config.destination:
        match = override.match.lower().rstrip(".")
        if match.startswith("."):
            hit = destination.domain.endswith(match) or any(h.endswith(match) for h in hosts)
        else:
            hit = destination.domain == match
        if hit:
            for key in values:
                if getattr(override, key):
                    values[key] = getattr(override, key)
    return LaneLimits(**values, idle_connection_timeout_s=config.idle_connection_timeout)


class RateWindow:
    """Sends in the last minute and hour; `wait_s()` says how long until the next is allowed."""

    def __init__(self, per_minute: int, per_hour: int, clock: Callable[[], float]) -> None:
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._clock = clock
        self._sent: deque[float] = deque()

    def wait_s(self) -> float:
        if not self.per_minute and not self.per_hour:
            return 0.0
        now = self._clock()
        while self._sent and now - self._sent[0] >= 3600:
            self._sent.popleft()
        waits = [0.0]
        if self.per_hour and len(self._sent) >= self.per_hour:
            waits.append(self._sent[-self.per_hour] + 3600 - now)
        if self.per_minute:
            recent = [t for t in self._sent if now - t < 60]
            if len(recent) >= self.per_minute:
                waits.append(recent[-self.per_minute] + 60 - now)
        return max(waits)

    def record(self) -> None:
        if self.per_minute or self.per_hour:
            self._sent.append(self._clock())


class LaneHost(Protocol):
    """What a lane needs from the delivery engine."""

    def withheld(self, job: Job) -> bool:
        """True: `job` must not be sent now, and the host has taken it back."""
        ...

    async def body_for(self, job: Job) -> bytes | None: ...

    def report(
        self, job: Job, results: list[tuple[ClaimedDelivery, Outcome]], source: str
    ) -> None: ...


class Lane:
    def __init__(
        self,
        source: Source,
        destination: Destination,
        limits: LaneLimits,
        settings: ConnectSettings,
        host: LaneHost,
        *,
        suspend_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.destination = destination
        self.limits = limits
        self._settings = settings
        self._host = host
        self._suspend_s = suspend_s
        self._clock = clock
        self._jobs: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._rate = RateWindow(limits.max_per_minute, limits.max_per_hour, clock)
        self._connections: set[asyncio.Task[None]] = set()
        self._idle = 0
        self._suspended_until = 0.0
        self._suspended_outcome: Outcome | None = None
        self._closing = False
        self._reopen: asyncio.TimerHandle | None = None

    def add(self, job: Job) -> None:
        if self._suspended_outcome is not None and self._clock() < self._suspended_until:
            self._host.report(
                job, [(d, self._suspended_outcome) for d in job.deliveries], self.source.name
            )
            return
        self._jobs.append(job)
        self._arrived.set()
        self._open_if_needed()

    def close(self) -> None:
        """No new connections; idle ones end at once, busy ones after their message."""
        self._closing = True
        self._arrived.set()
        if self._reopen is not None:
            self._reopen.cancel()

    def _reopen_fired(self) -> None:
        self._reopen = None
        self._open_if_needed()

    def _open_if_needed(self, *, replacing: bool = False) -> None:
        """A new connection when jobs wait that no idle connection will take."""
        open_now = len(self._connections) - (1 if replacing else 0)
        if self._closing or not self._jobs or open_now >= self.limits.max_connections:
            return
        if open_now and len(self._jobs) <= self._idle:
            return
        wait = self._rate.wait_s()
        if wait > 0:
            # Rate-limited: come back when the window allows, holding no connection.
            if self._reopen is None:
                self._reopen = asyncio.get_running_loop().call_later(wait, self._reopen_fired)
            return
        task = asyncio.get_running_loop().create_task(self._connection())
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    def reconfigure(self, limits: LaneLimits, settings: ConnectSettings) -> None:
        self.limits = limits
        self._settings = settings
        self._rate.per_minute = limits.max_per_minute
        self._rate.per_hour = limits.max_per_hour

    def is_idle(self) -> bool:
        """Nothing waiting, nothing open, no suspension to remember: safe to forget."""
        return (
            not self._jobs
            and not self._connections
            and self._reopen is None
            and self._clock() >= self._suspended_until
        )

    async def wait_closed(self) -> None:
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _next_job(self) -> Job | None:
        deadline = self._clock() + self.limits.idle_connection_timeout_s
        while not self._closing:
            if self._jobs:
                if self._host.withheld(self._jobs[0]):
                    self._jobs.popleft()
                    continue
                wait = self._rate.wait_s()
                if wait <= 0:
                    self._rate.record()
                    return self._jobs.popleft()
                if wait > self.limits.idle_connection_timeout_s:
                    return None  # not worth holding the connection; the lane reopens later
                await asyncio.sleep(wait)
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            self._arrived.clear()
            self._idle += 1
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return None
            finally:
                self._idle -= 1
        return None

    async def _connection(self) -> None:
        try:
            connection = await SiteConnection.open(self.destination, self.source, self._settings)
        except SiteUnreachable as unreachable:
            self._suspend(unreachable.outcome)
            return
        try:
            while (
                connection.usable
                and connection.messages_sent < self.limits.max_messages_per_connection
            ):
                job = await self._next_job()
                if job is None:
                    break
                body = await self._host.body_for(job)
                if body is None:
                    continue
                results = await connection.send(job, body)
                self._host.report(job, results, self.source.name)
        finally:
            await connection.close()
            # Jobs may still wait (message limit reached, or the rate window).
            self._open_if_needed(replacing=True)

    def _suspend(self, outcome: Outcome) -> None:
        log.info(
            "site unreachable source=%s site=%s: %s; %d waiting jobs get the same outcome",
            self.source.name,
            self.destination.site,
            outcome.detail,
            len(self._jobs),
        )
        self._suspended_outcome = outcome
        self._suspended_until = self._clock() + self._suspend_s
        while self._jobs:
            job = self._jobs.popleft()
            self._host.report(job, [(d, outcome) for d in job.deliveries], self.source.name)
