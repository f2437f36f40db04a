"""The bounce and complaint inbox: mail to the bounce domain, processed, never stored.

Port 25 accepts `bounce+TOKEN@<bounce domain>` when TOKEN is a valid VERP
token of ours (`Verp`), `<feedback_local_part>@<bounce domain>` for ARF
complaint reports, and `unsubscribe+TOKEN@<bounce domain>` (a campaign's
List-Unsubscribe mailto) when TOKEN is a valid unsubscribe token
(`campaign.unsubscribe`); anything else at those names is refused at RCPT, so
a forged bounce or unsubscribe changes nothing. Mail to an unsubscribe address
unsubscribes its contact at once, whatever it says (RFC 8058's mailto).
At the end of DATA, `BounceInbox.process` parses the message (`parse_bounce`)
and, in one transaction, applies the rules to the contact each named delivery
went to:
- an ARF report → complaint (blocked);
- a bounce → its reason for that recipient (the report's entry for the
  delivery's address, else its first entry): suspicious address → blocked,
  mailbox full → minus one, the rest (delays, network, success, vacation) → no change;
- an auto-reply or anything that is not a bounce → no change (logged);
- a delivery already rated for this kind of report (the same bounce sent twice,
  e.g. after our 4xx) → no second change, also when both copies are processed
  at once by two worker processes (the check and the change are serialised
  per delivery: SQLite's write lock, PostgreSQL's row lock).
The delivery comes from the token, not from what the report claims, so a
report cannot touch any other contact.

Blocking (database): the SMTP session runs it on the feedback worker
(worker.py, whose deadline bounds the parse) and says 250 after.
Untrusted input: the whole message (parsed by `parse_bounce`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select

from postroom.campaign.unsubscribe import (
    UnsubscribeClaim,
    UnsubscribeTokens,
    is_mailto_local,
    unsubscribe,
)
from postroom.core.reply import Reply
from postroom.db.engine import write_transaction
from postroom.db.models import contact_events, deliveries, messages
from postroom.mta.bounce.classify import Classifier
from postroom.mta.bounce.parse import BounceReport, parse_bounce
from postroom.mta.bounce.verp import PREFIX, Verp
from postroom.mta.bounce.worker import FeedbackWorker
from postroom.rating.contacts import Cause, Contacts
from postroom.rating.observer import project_of_sender

log = logging.getLogger("postroom.bounce")

NO_RATING_CHANGE = frozenset({"delivered", "vacation", "undefined"})


@dataclass(frozen=True, slots=True)
class Processed:
    delivery_id: int
    recipient: str
    kind: str  # complaint | bounce | ignored
    reason: str


class BounceInbox:
    def __init__(
        self, engine: Engine, contacts: Contacts, verp: Verp, classifier: Classifier
    ) -> None:
        self.engine = engine
        self.contacts = contacts
        self.verp = verp
        self.classifier = classifier

    def process(
        self,
        content: bytes,
        delivery_ids: Sequence[int],
        *,
        feedback: bool,
        deadline: float | None = None,
    ) -> list[Processed]:
        """Parse (by `deadline`, a time.monotonic() instant) and apply; the outcomes."""
        report = parse_bounce(content, self.classifier, deadline=deadline)
        ids = list(delivery_ids)
        if feedback:
            # A feedback loop writes to one fixed address; the original's VERP
            # return path, quoted in the report, names the delivery.
            ids += [found for found in self.verp.find(content) if found not in ids]
        done: list[Processed] = []
        # The same report may be processed twice at once (a sender retrying after our
        # timeout, reaching another worker process): "already counted" and the change
        # it guards must see each other. SQLite: the write lock from the first read on;
        # PostgreSQL: the delivery rows locked (a second copy waits, then sees the event).
        with write_transaction(self.engine) as conn:
            rows = conn.execute(
                select(
                    deliveries.c.id,
                    deliveries.c.recipient,
                    deliveries.c.message_id,
                    messages.c.mail_from,
                )
                .join(messages, messages.c.id == deliveries.c.message_id)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.id)
                .with_for_update(of=deliveries)
            ).all()
            for row in rows:
                project_id = project_of_sender(conn, row.mail_from)
                outcome = self._apply(conn, report, row, project_id)
                done.append(outcome)
        for outcome in done:
            log.info(
                "bounce inbox: delivery=%d rcpt=<%s> %s %s",
                outcome.delivery_id,
                outcome.recipient,
                outcome.kind,
                outcome.reason,
            )
        if not rows:
            log.info("bounce inbox: no known delivery named (ids %s)", ids)
        return done

    def _apply(self, conn, report: BounceReport, row, project_id: int | None) -> Processed:  # type: ignore[no-untyped-def]
        recipient = row.recipient.lower()
        rules = self.contacts.rules
        kind = "complained" if report.feedback_type is not None else "bounced"
        if _already_counted(conn, row.id, kind):
            # The same report again (a sender retrying after our 4xx, a duplicate
            # feedback-loop message): one delivery moves a rating once per kind.
            return Processed(row.id, recipient, "repeat", kind)
        if report.feedback_type is not None:
            cause = Cause(
                "complained",
                reason="feedback",
                message_id=row.message_id,
                delivery_id=row.id,
                detail=f"ARF report, feedback type {report.feedback_type}",
            )
            if project_id is not None:
                self.contacts.record(conn, project_id, recipient, rules.complained, cause)
            return Processed(row.id, recipient, "complaint", "feedback")
        if not report.is_bounce or not report.recipients:
            return Processed(row.id, recipient, "ignored", report.kind)
        entry = next(
            (r for r in report.recipients if r.address.lower() == recipient),
            report.recipients[0],
        )
        reason = str(entry.reason)
        if entry.action.lower() == "delayed" or reason in NO_RATING_CHANGE:
            return Processed(row.id, recipient, "ignored", reason)
        if project_id is not None:
            self.contacts.record(
                conn,
                project_id,
                recipient,
                lambda state: rules.bounced(state, reason),
                Cause(
                    "bounced",
                    reason=reason,
                    message_id=row.message_id,
                    delivery_id=row.id,
                    detail=f"asynchronous bounce: {entry.status} {entry.diagnostic}".strip(),
                ),
            )
        return Processed(row.id, recipient, "bounce", reason)


FEEDBACK = -1  # the "delivery id" of the feedback address: tokens come from the report

InboxTarget = int | UnsubscribeClaim  # a delivery id, FEEDBACK, or an unsubscribe


@dataclass(frozen=True, slots=True)
class BounceIntake:
    """Which RCPT addresses are the inbox's, for the SMTP session, and the worker
    that processes their mail."""

    inbox: BounceInbox
    feedback_local_part: str
    worker: FeedbackWorker
    unsubscribe_tokens: UnsubscribeTokens | None = None  # None: no mailto intake

    def target(self, address: str) -> InboxTarget | Reply | None:
        """A delivery id (or FEEDBACK, or an unsubscribe claim) for an inbox address; a
        refusal for a bad token on the bounce domain; None when the address is not the
        inbox's business."""
        local, _, domain = address.rpartition("@")
        if domain.lower().rstrip(".") != self.inbox.verp.domain:
            return None
        if local.lower() == self.feedback_local_part.lower():
            return FEEDBACK
        if self.unsubscribe_tokens is not None and is_mailto_local(local):
            claim = self.unsubscribe_tokens.read_address(address, self.inbox.verp.domain)
            if claim is None:
                return Reply(550, "5.1.1", f"<{address}>: not an unsubscribe address of ours")
            return claim
        if not local.lower().startswith(PREFIX):
            return None
        delivery_id = self.inbox.verp.delivery_id(address)
        if delivery_id is None:
            return Reply(550, "5.1.1", f"<{address}>: not a bounce address of ours")
        return delivery_id

    def process(
        self, content: bytes, targets: Iterable[InboxTarget], deadline: float | None
    ) -> None:
        """On the feedback worker: the unsubscribes, then the bounces and complaints."""
        wanted = list(targets)
        for claim in wanted:
            if isinstance(claim, UnsubscribeClaim):
                done = unsubscribe(self.inbox.engine, claim, "mailto")
                log.info(
                    "unsubscribe by mail: project=%d contact=%d campaign=%d %s",
                    claim.project_id,
                    claim.contact_id,
                    claim.campaign_id,
                    "unknown contact" if done is None else f"first={done.first_time}",
                )
        ids = [target for target in wanted if isinstance(target, int) and target != FEEDBACK]
        feedback = FEEDBACK in wanted
        if ids or feedback:
            self.inbox.process(content, ids, feedback=feedback, deadline=deadline)


def _already_counted(conn, delivery_id: int, kind: str) -> bool:  # type: ignore[no-untyped-def]
    return (
        conn.execute(
            select(contact_events.c.id)
            .where(contact_events.c.delivery_id == delivery_id, contact_events.c.kind == kind)
            .limit(1)
        ).first()
        is not None
    )
