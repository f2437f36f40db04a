"""The queue's events that move contacts, applied in the queue's own transaction.

`RatingObserver` is the queue store's `QueueObserver`:
- `messages_queued`: mail sent by a project (its sender on a linked domain)
  makes each new recipient a contact at the automatic rating (a campaign's
  messages do not: they go to contacts, or are test copies); with
  `log_blocked_sends` (`[rating] blocked_transactional = "send"`), recipients
  that are blocked contacts are logged, one query per group commit;
- `deliveries_failed`: a delivery that failed for good is classified from the
  remote reply (the same `Classifier` as asynchronous bounces) and the rules
  decide: a nonexistent user or domain blocks the contact, a full mailbox
  lowers it by one; an expiry counts only when its last reply was "mailbox
  full" (the message went undelivered because of it). Temporary trouble
  elsewhere (network, our IP blocked) moves nothing: the recipient is not at fault.
  Only replies about the recipient count: those at RCPT, after DATA (with VERP a
  transaction carries one recipient) and the recipient domain's DNS; a refusal
  of our sender at MAIL or of our connection says nothing about the recipient.

Running inside the queue's transaction makes the rating change exactly as
durable as the outcome it follows: a crash loses both or neither.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.engine import Connection

from postroom.db.models import DomainState, MessageOrigin, domains, messages
from postroom.mailbox.names import lookup_form
from postroom.mta.queue.records import FailedDelivery, NewMessage
from postroom.rating.contacts import Cause, Contacts
from postroom.rating.suppression import BLOCKED_LOG

log = logging.getLogger("postroom.rating")

Classify = Callable[[int | None, str | None, str], str]

RATED_STAGES = frozenset({"rcpt", "data", "dns"})

_REPLY = re.compile(
    r"^(?:[a-z-]+;\s*)?(\d{3})(?:[ -]+(\d\.\d{1,3}\.\d{1,3}))?\s*(.*)$", re.I | re.S
)


class RatingObserver:
    def __init__(
        self, contacts: Contacts, classify: Classify, log_blocked_sends: bool = False
    ) -> None:
        self.contacts = contacts
        self.classify = classify
        self.log_blocked_sends = log_blocked_sends

    def messages_queued(self, conn: Connection, new_messages: list[NewMessage]) -> None:
        # A campaign's recipients are its audience's contacts, never blocked ones (the
        # producer checks both as it commits); its test copies make no contact. Ensuring
        # them again cost an INSERT per message and a worker-memory cache of every address.
        wanted = [
            (message.project_id, recipient, message.queue_id)
            for message in new_messages
            if message.project_id is not None and message.origin != MessageOrigin.CAMPAIGN
            for recipient in message.recipients
        ]
        self.contacts.ensure_many(conn, wanted, detail="mail sent to a new address")  # type: ignore[arg-type]
        if self.log_blocked_sends and wanted:
            blocked = self.contacts.blocked_among(conn, wanted)  # type: ignore[arg-type]
            for project_id, recipient, queue_id in wanted:
                if (project_id, recipient.lower()) in blocked:
                    log.info(BLOCKED_LOG, queue_id, recipient, "send")

    def deliveries_failed(self, conn: Connection, failed: dict[str, list[FailedDelivery]]) -> None:
        senders = dict(
            conn.execute(
                select(messages.c.id, messages.c.mail_from).where(messages.c.id.in_(list(failed)))
            ).all()
        )
        rated = []
        for message_id, deliveries in failed.items():
            project_id = project_of_sender(conn, senders.get(message_id, ""))
            if project_id is None:
                continue
            for delivery in deliveries:
                if delivery.stage not in RATED_STAGES:
                    continue
                reason = self.reason_of(delivery)
                if delivery.expired and reason != "mailboxfull":
                    continue
                rated.append((project_id, delivery.recipient.lower(), message_id, delivery, reason))
        # In one order for every writer: on PostgreSQL `record` locks each contact, and
        # two workers locking the same two contacts in opposite orders would deadlock.
        rated.sort(key=lambda entry: entry[:2])
        for project_id, recipient, message_id, delivery, reason in rated:
            self.contacts.record(
                conn,
                project_id,
                recipient,
                lambda state, reason=reason: self.contacts.rules.bounced(state, reason),
                Cause(
                    "bounced",
                    reason=reason,
                    message_id=message_id,
                    delivery_id=delivery.delivery_id or None,
                    detail=delivery.diagnostic,
                ),
            )

    def reason_of(self, delivery: FailedDelivery) -> str:
        match = _REPLY.match(delivery.diagnostic.strip())
        if match is None:
            return str(self.classify(None, delivery.status or None, delivery.diagnostic))
        code, status, text = match.groups()
        return str(self.classify(int(code), status or delivery.status or None, text))


def project_of_sender(conn: Connection, sender: str) -> int | None:
    """The project whose verified domain the envelope sender is on, if any. Domains
    are stored in A-labels; an SMTPUTF8 sender may spell its domain in Unicode."""
    domain = lookup_form(sender.rpartition("@")[2])
    if not domain:
        return None
    found = conn.execute(
        select(domains.c.project_id).where(
            domains.c.name == domain, domains.c.state == DomainState.VERIFIED.value
        )
    ).scalar()
    return None if found is None else int(found)
