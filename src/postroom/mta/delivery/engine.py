"""The delivery engine: claimed jobs → destination → lane → outcome → queue store.

- `submit(jobs)` takes jobs that this node has claimed (fresh from a session,
  claimed from the store, or DSNs the store produced) and routes each to the
  lane of (a source of its pool, its destination site), resolving MX once per
  domain for all jobs waiting on it.
- Outcomes are recorded in batches through the store's group commit; DSNs that
  come back are submitted like any other job.
- Periodically: claim due deliveries (retries, expired leases of crashed nodes)
  while fewer than `max_in_memory` deliveries are held, and renew this node's
  leases.
- With a `Withholder` (`withhold.py`): a job it says must wait is taken back
  from its lane right before a connection would send it, and a deferred
  outcome of such a job is recorded, then the job withheld as well; the
  recorder hands withheld jobs over after the outcomes recorded before them.
  Claimed jobs are shown to it before they are routed.
- `drain()` stops claiming, closes lanes, and flushes outcomes; what is still
  waiting keeps its lease and returns to the queue at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import replace

from postroom.config.schema import DeliveryConfig
from postroom.core.dns import Resolver
from postroom.mta.bounce.verp import Verp
from postroom.mta.delivery.client import ConnectSettings
from postroom.mta.delivery.mx import Destination, DestinationError, resolve_destination
from postroom.mta.delivery.outcome import (
    Outcome,
    Stage,
    Verdict,
    from_destination_error,
    from_error,
)
from postroom.mta.delivery.withhold import Withholder
from postroom.mta.lanes.lane import Lane, limits_for
from postroom.mta.lanes.pools import PoolTable
from postroom.mta.queue.records import ClaimedDelivery, DeliveryResult, Job, split_job
from postroom.mta.queue.store import QueueStore

log = logging.getLogger("postroom.delivery")

DESTINATION_CACHE_S = 60.0


class DeliveryEngine:
    def __init__(
        self,
        store: QueueStore,
        resolver: Resolver,
        pools: PoolTable,
        config: DeliveryConfig,
        *,
        max_in_memory: int = 20000,
        claim_interval_s: float = 1.0,
        verp: Verp | None = None,
        verp_origins: frozenset[str] = frozenset(),
        withholder: Withholder | None = None,
    ) -> None:
        self.store = store
        self.withholder = withholder
        self.verp = verp
        self.verp_origins = verp_origins
        self.resolver = resolver
        self.max_in_memory = max_in_memory
        self.claim_interval_s = claim_interval_s
        self._destinations: dict[str, tuple[float, Destination]] = {}
        self._waiting: dict[str, list[Job]] = defaultdict(list)
        self._lanes: dict[tuple[str, str], Lane] = {}
        self._results: list[DeliveryResult] = []
        self._withheld: list[Job] = []  # handed to the withholder after `_results`
        self._results_ready = asyncio.Event()
        self._in_memory = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.reconfigure(pools, config)

    def reconfigure(self, pools: PoolTable, config: DeliveryConfig) -> None:
        """New pools, rules, limits and connection settings (SIGHUP). Lanes take their
        new limits at once; jobs already routed keep the source they were given."""
        self.pools = pools
        self.config = config
        self.settings = ConnectSettings(
            port=config.port,
            connect_timeout_s=config.connect_timeout,
            command_timeout_s=config.command_timeout,
            starttls=config.starttls == "opportunistic",
        )
        for lane in self._lanes.values():
            lane.reconfigure(limits_for(lane.destination, config), self.settings)

    @property
    def backlog(self) -> int:
        """Deliveries this node holds in memory (routed, waiting or being sent): a
        producer hands over more only while this stays below its bound."""
        return self._in_memory

    # -- intake ---------------------------------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._in_memory += len(job.deliveries)
            for transaction in self._transactions(job):
                self._route(transaction)

    def _transactions(self, job: Job) -> list[Job]:
        """With VERP (for the origins `[bounce] verp` names) each recipient gets its own
        return path, hence its own transaction; the null sender (our DSNs) stays null."""
        if self.verp is None or not job.mail_from or job.origin not in self.verp_origins:
            return split_job(job, self.config.max_recipients_per_transaction)
        return [
            replace(job, mail_from=self.verp.address(delivery.delivery_id), deliveries=[delivery])
            for delivery in job.deliveries
        ]

    def _route(self, job: Job) -> None:
        cached = self._destinations.get(job.domain)
        if cached is not None and cached[0] > time.monotonic():
            self._to_lane(job, cached[1])
            return
        waiting = self._waiting[job.domain]
        waiting.append(job)
        if len(waiting) == 1:
            self._spawn(self._resolve(job.domain))

    async def _resolve(self, domain: str) -> None:
        failure: Outcome | None = None
        try:
            destination = await resolve_destination(self.resolver, domain)
        except DestinationError as error:
            failure = from_destination_error(error)
        except Exception as error:  # a resolver bug must not lose the jobs: defer them
            log.exception("resolving %s failed", domain)
            failure = from_error(Stage.DNS, f"DNS lookup for {domain} failed: {error}")
        jobs = self._waiting.pop(domain, [])
        if failure is not None:
            for job in jobs:
                self.report(job, [(d, failure) for d in job.deliveries], "")
            return
        self._destinations[domain] = (time.monotonic() + DESTINATION_CACHE_S, destination)
        for job in jobs:
            self._to_lane(job, destination)

    def _to_lane(self, job: Job, destination: Destination) -> None:
        source = self.pools.pick_source(job.pool)
        key = (source.name, destination.site)
        lane = self._lanes.get(key)
        if lane is None:
            lane = Lane(
                source,
                destination,
                limits_for(destination, self.config),
                self.settings,
                self,
                suspend_s=min(60.0, self.config.min_backoff),
            )
            self._lanes[key] = lane
        lane.destination = destination
        lane.add(job)

    # -- LaneHost ---------------------------------------------------------------

    def withheld(self, job: Job) -> bool:
        if self.withholder is None or not self.withholder.must_wait(job):
            return False
        self._in_memory -= len(job.deliveries)
        self._withhold(job)
        return True

    def _withhold(self, job: Job) -> None:
        self._withheld.append(job)
        self._results_ready.set()

    async def body_for(self, job: Job) -> bytes | None:
        if job.body is not None:
            return job.body
        try:
            return await self.store.load_body(job.message_id)
        except LookupError:
            # Deleted by an operator meanwhile: nothing to send, nothing to record.
            self._in_memory -= len(job.deliveries)
            return None

    def report(self, job: Job, results: list[tuple[ClaimedDelivery, Outcome]], source: str) -> None:
        for delivery, outcome in results:
            self._results.append(
                DeliveryResult(
                    delivery_id=delivery.delivery_id,
                    verdict=outcome.verdict.value,
                    status=outcome.status,
                    diagnostic=outcome.diagnostic,
                    stage=outcome.stage.value,
                    remote_mta=outcome.remote_mta,
                    source=source,
                )
            )
            log.info(
                "queue_id=%s to=<%s> source=%s remote=%s status=%s verdict=%s (%s)",
                job.message_id,
                delivery.recipient,
                source or "-",
                outcome.remote_host or "-",
                outcome.status,
                outcome.verdict.value,
                outcome.diagnostic,
            )
        self._in_memory -= len(results)
        self._results_ready.set()
        if self.withholder is not None:
            # Its retry must not go out while its producer stops it: recorded first
            # (the recorder keeps the order), then withheld.
            deferred = [d for d, outcome in results if outcome.verdict is Verdict.DEFERRED]
            if deferred and self.withholder.must_wait(job):
                self._withhold(replace(job, deliveries=deferred))

    # -- background work ------------------------------------------------------

    def _spawn(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Record outcomes, claim due work and renew leases until `drain()`."""
        recorder = asyncio.create_task(self._record_loop(), name="delivery-recorder")
        try:
            next_renewal = time.monotonic() + self.store.lease_s / 3
            while not self._stopping.is_set():
                room = self.max_in_memory - self._in_memory
                if room > 0:
                    jobs = await self.store.claim_due(min(room, 1000))
                    if jobs and self.withholder is not None:
                        await self._show_claimed(jobs)
                    self.submit(jobs)
                if time.monotonic() >= next_renewal:
                    await self.store.renew_leases()
                    next_renewal = time.monotonic() + self.store.lease_s / 3
                    self._prune()
                    purged = await self.store.purge_history(self.config.history)
                    if purged:
                        log.info("purged %d finished messages older than the history", purged)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.claim_interval_s)
        finally:
            for lane in self._lanes.values():
                lane.close()
            await asyncio.gather(*(lane.wait_closed() for lane in self._lanes.values()))
            self._results_ready.set()
            await recorder

    def _prune(self) -> None:
        """Forget expired destinations and idle lanes, so that a campaign to many
        domains does not leave one of each behind for the life of the process."""
        now = time.monotonic()
        self._destinations = {
            domain: entry for domain, entry in self._destinations.items() if entry[0] > now
        }
        self._lanes = {key: lane for key, lane in self._lanes.items() if not lane.is_idle()}

    async def _show_claimed(self, jobs: list[Job]) -> None:
        assert self.withholder is not None
        try:
            await self.withholder.claimed(jobs)
        except Exception:  # unmarked, they are sent as they would have been
            log.exception("the withholder could not look at %d claimed jobs", len(jobs))

    async def _record_loop(self) -> None:
        while True:
            if not self._results and not self._withheld:
                if self._stopping.is_set():
                    return
                self._results_ready.clear()
                await self._results_ready.wait()
                continue
            batch, self._results = self._results, []
            withheld, self._withheld = self._withheld, []
            if batch:
                await self._record(batch)
            if withheld:
                await self._hand_over_withheld(withheld)

    async def _record(self, batch: list[DeliveryResult]) -> None:
        try:
            dsn_jobs = await self.store.record(batch)
        except Exception:
            # The leases stay; the deliveries return to the queue and are retried.
            log.exception("recording %d delivery outcomes failed", len(batch))
            return
        if dsn_jobs and not self._stopping.is_set():
            self.submit(dsn_jobs)

    async def _hand_over_withheld(self, jobs: list[Job]) -> None:
        assert self.withholder is not None
        try:
            await self.withholder.withhold(jobs)
        except Exception:
            # The leases stay (renewed while this node runs); they return at its next start.
            log.exception("withholding %d jobs failed", len(jobs))

    def drain(self) -> None:
        self._stopping.set()
