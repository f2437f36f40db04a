"""Where an accepted message goes: local mailboxes and the outbound queue.

`Router.accept(message, local_targets)` stores the copies for local mailboxes
(Maildir, fsynced) and the message for remote recipients (the queue's group
commit), and only then hands the claimed deliveries to the delivery engine;
the caller says 250 after it returns. Local copies are written first: if the
queue commit then fails the client retries and a mailbox may see the message
twice — a duplicate, never a loss. Later issues add the bounce inbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from postroom.mailbox.accounts import LocalTarget
from postroom.mailbox.local import LocalMail
from postroom.mta.queue.records import Job, NewMessage
from postroom.mta.queue.store import QueueStore


class JobSink(Protocol):
    def submit(self, jobs: list[Job]) -> None: ...


class Router:
    def __init__(self, store: QueueStore, delivery: JobSink, local: LocalMail) -> None:
        self.store = store
        self.delivery = delivery
        self.local = local

    async def accept(self, message: NewMessage, local_targets: Sequence[LocalTarget] = ()) -> None:
        """`message.recipients` are the remote ones; local copies go to `local_targets`."""
        if local_targets:
            copy = return_path(message.mail_from) + message.body
            await asyncio.to_thread(self.local.store, copy, local_targets)
        if message.recipients:
            jobs = await self.store.enqueue(message)
            self.delivery.submit(jobs)


def return_path(sender: str) -> bytes:
    """RFC 5321 4.4: the final delivery records the envelope sender."""
    return f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")
