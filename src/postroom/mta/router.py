"""Where an accepted message goes: local mailboxes and the outbound queue.

`Router.accept(message, local_targets)` stores the copies for local mailboxes
(Maildir, fsynced) and the message for remote recipients (the queue's group
commit), and only then hands the claimed deliveries to the delivery engine;
the caller says 250 after it returns. The queued copy is DKIM-signed first
(`OutboundSigner`, in a thread: OpenSSL releases the GIL, so the RSA operation
runs beside the event loop); local copies are not signed. Local copies are written first: if the
queue commit then fails the client retries and a mailbox may see the message
twice — a duplicate, never a loss. Once begun, `accept` runs to its end even if
its caller is cancelled (aiosmtpd cancels a session whose client hangs up, a
half-close is enough): a message that commits always reaches the delivery
engine, instead of staying leased `inflight` with nobody holding it
(`ShieldedTasks`; `serve` waits for them before closing the queue, and
submission settles its project reservations there too). Mail stored locally from a non-null sender
tells the rating engine that the sender is alive (`Contacts.received`) when
the checks authenticated that sender (else anyone could lift a rating); that
bookkeeping runs on the feedback worker (mta/bounce/worker.py), not on the
threads Maildir writes and RCPT lookups use, and its failing never fails the
mail: a full worker skips it, a time limit passed leaves it to finish alone
(both logged). (The bounce inbox is reached from the SMTP session: its mail is
processed, not routed.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from postroom.core.shielded import ShieldedTasks
from postroom.mailbox.accounts import LocalTarget
from postroom.mailbox.local import LocalMail
from postroom.mta.bounce.worker import FeedbackBusy, FeedbackTimeout, FeedbackWorker
from postroom.mta.queue.records import Job, NewMessage
from postroom.mta.queue.store import QueueStore
from postroom.mta.signing.outbound import OutboundSigner
from postroom.rating.contacts import Contacts

log = logging.getLogger("postroom.router")


class JobSink(Protocol):
    def submit(self, jobs: list[Job]) -> None: ...


class Router:
    def __init__(
        self,
        store: QueueStore,
        delivery: JobSink,
        local: LocalMail,
        contacts: Contacts | None = None,
        signer: OutboundSigner | None = None,
        feedback: FeedbackWorker | None = None,
    ) -> None:
        if contacts is not None and feedback is None:
            raise ValueError("a Router that rates contacts needs the feedback worker")
        self.store = store
        self.delivery = delivery
        self.local = local
        self.contacts = contacts
        self.signer = signer
        self.feedback = feedback
        # Work begun for SMTP sessions that must end even if the session is cancelled.
        self.shielded = ShieldedTasks("router")

    async def accept(
        self,
        message: NewMessage,
        local_targets: Sequence[LocalTarget] = (),
        *,
        folder: str = "",
        sender_verified: bool = True,
    ) -> None:
        """`message.recipients` are the remote ones; local copies go to `local_targets`
        (into `folder`, e.g. ".Junk", when given). A reply counts for the sender's rating
        only when `sender_verified` (the checks authenticated the envelope sender).
        Returns once everything is stored and committed; raises only when the queue
        insert did not commit. Cancelling the caller does not stop it."""
        await self.shielded.run(self._accept(message, local_targets, folder, sender_verified))

    async def _accept(
        self,
        message: NewMessage,
        local_targets: Sequence[LocalTarget],
        folder: str,
        sender_verified: bool,
    ) -> None:
        if local_targets:
            copy = return_path(message.mail_from) + message.body
            await asyncio.to_thread(self.local.store, copy, local_targets, folder)
            if self.contacts is not None and message.mail_from and sender_verified:
                await self._received(message, local_targets)
        if message.recipients:
            if self.signer is not None and self.signer.keys:
                body = await asyncio.to_thread(self.signer.sign, message.body, message.queue_id)
                message = dataclasses.replace(message, body=body)
            jobs = await self.store.enqueue(message)
            try:
                self.delivery.submit(jobs)
            except Exception:
                # Committed: the 250 must stand (a 451 now would make the client send a
                # duplicate); the leases return to the queue at the next start.
                log.exception("hand-over to delivery failed queue_id=%s", message.queue_id)

    async def _received(self, message: NewMessage, targets: Sequence[LocalTarget]) -> None:
        projects = [target.project_id for target in targets if target.project_id]
        contacts, feedback = self.contacts, self.feedback
        assert contacts is not None and feedback is not None  # both, or neither: __init__
        try:
            await feedback.run(
                lambda _deadline: contacts.received(projects, message.mail_from, message.queue_id)
            )
        except FeedbackBusy:
            log.warning("rating update skipped queue_id=%s: feedback worker full", message.queue_id)
        except FeedbackTimeout as timeout:
            log.warning("rating update queue_id=%s: %s", message.queue_id, timeout)
        except Exception:  # the mail is stored; a missed rating update must not undo that
            log.exception("rating update failed queue_id=%s", message.queue_id)


def return_path(sender: str) -> bytes:
    """RFC 5321 4.4: the final delivery records the envelope sender."""
    return f"Return-Path: <{sender}>\r\n".encode("utf-8", "surrogateescape")
