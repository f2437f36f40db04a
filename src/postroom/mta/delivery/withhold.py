"""Withholding: a producer stops its own mail that the delivery engine already holds.

A producer that can take back what it handed over (a campaign paused or
cancelled after its messages were queued, claimed and routed to lanes) gives
the delivery engine a `Withholder`. The engine asks it:
- `must_wait(job)`, on the event loop, per job and from memory only (a set
  lookup): right before a lane hands the job to a connection, and when an
  attempt of it comes back deferred. A job already in an SMTP transaction
  (MAIL FROM sent) is never asked: that transaction finishes.
- `withhold(jobs)` for the jobs it said must wait: their deliveries are still in
  flight and leased by this node (or, after a deferred outcome that the engine
  recorded first, deferred); the withholder writes what becomes of them (held,
  removed, or back in the queue when its producer changed its mind meanwhile)
  in one queue transaction. The engine no longer holds them. If that write
  fails, the leases stay and the deliveries return at this node's next start.
- `claimed(jobs)` for the jobs it claimed from the store (retries, released
  holds, a dead node's leases): they carry no producer's mark, so the
  withholder may look up and set theirs (`Job.campaign_id`) before they are
  routed.

This package stays generic: it names no producer; `app.py` plugs in the
campaigns' (`campaign.stopped.StoppedCampaigns`).
"""

from __future__ import annotations

from typing import Protocol

from postroom.mta.queue.records import Job


class Withholder(Protocol):
    def must_wait(self, job: Job) -> bool: ...

    async def withhold(self, jobs: list[Job]) -> None: ...

    async def claimed(self, jobs: list[Job]) -> None: ...
