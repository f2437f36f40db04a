"""Where an accepted message goes: today, the outbound queue.

`Router.accept(message)` stores the message durably (the queue's group
commit) and only then hands its claimed deliveries to the delivery engine; the
caller says 250 after it returns. Later issues add local mailboxes and the
bounce inbox as destinations beside the queue.
"""

from __future__ import annotations

from typing import Protocol

from postroom.mta.queue.records import Job, NewMessage
from postroom.mta.queue.store import QueueStore


class JobSink(Protocol):
    def submit(self, jobs: list[Job]) -> None: ...


class Router:
    def __init__(self, store: QueueStore, delivery: JobSink) -> None:
        self.store = store
        self.delivery = delivery

    async def accept(self, message: NewMessage) -> None:
        jobs = await self.store.enqueue(message)
        self.delivery.submit(jobs)
