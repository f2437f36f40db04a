"""Values that travel between producers, the queue store and the delivery engine.

- `NewMessage`: what a producer (SMTP session, DSN generator, campaigns)
  hands to the queue: envelope, bytes, pool, origin, release time.
- `Job`: the claimed deliveries of one message to one destination domain; what a
  lane sends in one SMTP transaction. Its `campaign_id` (in memory only, never
  stored by the queue) lets the campaign that produced it stop it before it is
  sent (`mta.delivery.withhold`).
- `DeliveryResult`: what happened to one delivery, as the store records it.
- `FailedDelivery`, `OriginalMessage`: what the DSN builder and the queue's
  observer (`QueueObserver`: the rating engine) learn of final failures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from sqlalchemy.engine import Connection

from postroom.db.models import MessageOrigin


@dataclass(frozen=True, slots=True)
class NewMessage:
    queue_id: str
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes
    pool: str
    origin: MessageOrigin
    created_at: float
    client_ip: str = ""
    envelope_id: str = ""
    project_id: int | None = None  # the sender's linked domain's project, if any
    held: frozenset[str] = frozenset()  # recipients queued as held (blocked contacts)
    # Not to be sent before this time (a campaign's release time): a delivery due later
    # than its insert is stored `queued` for the delivery engine's claim loop.
    release_at: float = 0.0
    campaign_id: int | None = None  # the campaign that produced it (copied to its jobs)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    delivery_id: int
    recipient: str
    attempts: int


@dataclass(slots=True)
class Job:
    message_id: str
    mail_from: str
    domain: str
    pool: str
    created_at: float
    size_bytes: int
    deliveries: list[ClaimedDelivery]
    origin: str = ""  # MessageOrigin value: decides whether the return path is VERP
    # Kept in memory for fresh small messages; None means "read it from the store".
    body: bytes | None = field(default=None, repr=False)
    # The campaign whose message this is, when known: set by the producer for fresh
    # jobs, looked up by the withholder for claimed ones; None for other mail.
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One delivery's outcome. `verdict` is delivered | deferred | failed."""

    delivery_id: int
    verdict: str
    status: str  # RFC 3463, e.g. 5.1.1
    diagnostic: str  # "smtp; 550 5.1.1 ..." verbatim, or "X-Postroom; connect ... refused"
    stage: str  # the SMTP stage that produced it
    remote_mta: str = ""
    source: str = ""  # egress source name


def split_job(job: Job, max_recipients: int) -> list[Job]:
    """The job as transactions of at most `max_recipients` recipients each
    (`[delivery] max_recipients_per_transaction`; RFC 5321 4.5.3.1.8 lets a
    server refuse past 100)."""
    if len(job.deliveries) <= max_recipients:
        return [job]
    return [
        replace(job, deliveries=job.deliveries[start : start + max_recipients])
        for start in range(0, len(job.deliveries), max_recipients)
    ]


def recipient_domain(address: str) -> str:
    """The lower-cased domain of an address (the part after the last @)."""
    return address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """What the DSN builder needs to know about one failed recipient."""

    recipient: str
    status: str
    diagnostic: str
    remote_mta: str
    updated_at: float
    expired: bool
    delivery_id: int = 0
    stage: str = ""  # the SMTP stage (or "dns") of the last attempt


@dataclass(frozen=True, slots=True)
class OriginalMessage:
    queue_id: str
    mail_from: str
    origin: str
    created_at: float
    envelope_id: str
    body: bytes


BounceBuilder = Callable[[OriginalMessage, list[FailedDelivery]], NewMessage | None]


class QueueObserver(Protocol):
    """Told of queue events inside the transaction that records them (crash-safe):
    the rating engine creates contacts and moves ratings this way. `messages_queued`
    hears only of messages of a project (`project_id` set)."""

    def messages_queued(self, conn: Connection, new_messages: list[NewMessage]) -> None: ...

    def deliveries_failed(
        self, conn: Connection, failed: dict[str, list[FailedDelivery]]
    ) -> None: ...
