"""Paused and cancelled campaigns, as a delivery engine holding their jobs must see them.

`campaign pause|cancel` change what waits in the queue; what a serve worker's
delivery engine already holds in memory (claimed, leased `inflight`: up to the
producer's backlog of jobs per worker) is this module's. `StoppedCampaigns(engine,
store, cancelled_horizon_s)` is the engine's `Withholder` (mta/delivery/withhold.py):
- `refresh()` (blocking; every worker re-runs it in a thread every `refresh_s`,
  about once a second, through `core.refresh.keep_fresh`): ONE query, the ids of the
  campaigns now `paused`, and of those `cancelled` less than `cancelled_horizon_s`
  ago (`[delivery] max_queue_lifetime`: no message of an older one is retried).
- `must_wait(job)`: the job's `campaign_id` is one of them (a set lookup, on the
  event loop). Fresh jobs carry it from the producer; `claimed(jobs)` looks it up
  for campaign jobs claimed from the queue (one indexed query, in a thread), since
  a campaign may be paused or cancelled while they wait in memory.
- `withhold(jobs)`: ONE queue transaction (`QueueStore.transact`). The campaigns'
  states are read there (PostgreSQL: `FOR SHARE`, as the producer's commit does, so
  a pause, resume or cancel running meanwhile is waited for and seen); the jobs'
  deliveries this node still leases go back to the queue (`release_leases`), then,
  with the lifecycle's own statements:
  - paused → held by the campaign (`lifecycle.hold_waiting`, as the pause holds
    what waits): its resume releases them, shifted by the pause;
  - cancelled → removed (`lifecycle.cancel_messages`, as the cancel removes what
    waits: the delivery, its message when it has no other, the history row; the
    recipient row says cancelled);
  - resumed meanwhile → they stay queued, due: the claim loop sends them.
  A deferred attempt of such a job reaches here after its outcome was recorded
  (deferred: a waiting state), so it is held or removed the same way.
`campaign pause|cancel` count only what they changed; `campaign status` counts
held deliveries and cancelled rows in the database, these included.

Config keys: [delivery] max_queue_lifetime (through app.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import Connection, Engine, and_, or_, select

from postroom.campaign.lifecycle import cancel_messages, hold_waiting
from postroom.db.engine import is_postgresql
from postroom.db.models import (
    CampaignState,
    MessageOrigin,
    campaigns,
    deliveries,
)
from postroom.mta.queue.records import Job
from postroom.mta.queue.store import QueueStore, leases_of, release_leases
from postroom.rating.contacts import campaigns_of_messages

log = logging.getLogger("postroom.campaign")

REFRESH_S = 1.0


class StoppedCampaigns:
    def __init__(
        self,
        engine: Engine,
        store: QueueStore,
        cancelled_horizon_s: float,
        *,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.refresh_s = refresh_s  # how often serve re-runs `refresh`
        self.store = store
        self.cancelled_horizon_s = cancelled_horizon_s
        self.clock = clock
        self._stopped: frozenset[int] = frozenset()
        self._postgresql = is_postgresql(engine)

    # -- the in-memory view (refreshed in a thread) ---------------------------------

    def refresh(self) -> None:
        cancelled_since = self.clock() - self.cancelled_horizon_s
        with self.engine.connect() as conn:
            ids = conn.execute(
                select(campaigns.c.id).where(
                    or_(
                        campaigns.c.state == CampaignState.PAUSED.value,
                        and_(
                            campaigns.c.state == CampaignState.CANCELLED.value,
                            campaigns.c.finished_at >= cancelled_since,
                        ),
                    )
                )
            ).scalars()
            self._stopped = frozenset(ids)  # one assignment: the loop sees old or new

    def must_wait(self, job: Job) -> bool:
        return job.campaign_id is not None and job.campaign_id in self._stopped

    async def claimed(self, jobs: list[Job]) -> None:
        unmarked = [
            job
            for job in jobs
            if job.campaign_id is None and job.origin == MessageOrigin.CAMPAIGN.value
        ]
        if not unmarked:
            return
        owners = await asyncio.to_thread(self._campaigns_of, [job.message_id for job in unmarked])
        for job in unmarked:
            job.campaign_id = owners.get(job.message_id)

    def _campaigns_of(self, message_ids: list[str]) -> dict[str, int]:
        with self.engine.connect() as conn:
            return campaigns_of_messages(conn, message_ids)

    # -- taking jobs back (the queue's commit thread) -----------------------------------

    async def withhold(self, jobs: list[Job]) -> None:
        await self.store.transact(self._withhold_batch, jobs)

    def _withhold_batch(self, conn: Connection, batches: list[list[Job]]) -> list[None]:
        now = self.clock()
        jobs_of: dict[int, list[Job]] = defaultdict(list)
        for job in (job for jobs in batches for job in jobs):
            if job.campaign_id is not None:
                jobs_of[job.campaign_id].append(job)
        if not jobs_of:
            return [None] * len(batches)
        states_query = select(campaigns.c.id, campaigns.c.state).where(
            campaigns.c.id.in_(sorted(jobs_of))
        )
        if self._postgresql:  # a pause, resume or cancel under way is waited for
            states_query = states_query.with_for_update(read=True)
        states = {row.id: row.state for row in conn.execute(states_query)}
        for campaign_id, its_jobs in jobs_of.items():
            taken = deliveries.c.id.in_([d.delivery_id for job in its_jobs for d in job.deliveries])
            # Back in the queue first: the lifecycle's statements act on what waits there.
            release_leases(conn, leases_of(self.store.node_name) & taken)
            state = states.get(campaign_id)
            if state == CampaignState.PAUSED:
                done = hold_waiting(conn, taken, now)
                verb = "held"
            elif state == CampaignState.CANCELLED:
                done = cancel_messages(conn, campaign_id, [job.message_id for job in its_jobs], now)
                verb = "removed"
            else:
                continue  # resumed meanwhile: queued and due, the claim loop sends them
            log.info(
                "campaign %d %s: %d deliveries taken back from the delivery engine and %s",
                campaign_id,
                state,
                done,
                verb,
            )
        return [None] * len(batches)
