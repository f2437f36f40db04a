"""Turning failed deliveries into a DSN message for the outbound queue.

`BounceFactory(hostname, pools)` is the queue store's `bounce_builder`: given
the original message and its recipients that failed in one batch, it returns
the DSN as a `NewMessage` from the null sender to the original envelope sender,
or None when no DSN may be sent: the original came from the null sender (a
bounce of a bounce would loop, RFC 5321 4.5.5) or was itself a DSN; or none is
wanted: a campaign's message (its failure is recorded on the contact, rating event
naming the campaign, and counted by `campaign status`; mailing it back would put a
DSN per bad address of a 100,000-contact audience into the sender's mailbox).
Expired deliveries are reported as failed with status 4.4.7 (RFC 3463: delivery
time expired) and the last remote reply as their diagnostic.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from postroom.db.models import MessageOrigin
from postroom.mta.bounce.dsn import DsnRequest, RecipientStatus, build_dsn
from postroom.mta.queue.ids import new_queue_id
from postroom.mta.queue.records import FailedDelivery, NewMessage, OriginalMessage

log = logging.getLogger("postroom.bounce")


class BounceFactory:
    def __init__(self, hostname: str, pool: str) -> None:
        self.hostname = hostname
        self.pool = pool

    def __call__(
        self, original: OriginalMessage, failed: list[FailedDelivery]
    ) -> NewMessage | None:
        if not original.mail_from or original.origin == MessageOrigin.DSN:
            log.info("queue_id=%s: no DSN for a message from the null sender", original.queue_id)
            return None
        if original.origin == MessageOrigin.CAMPAIGN:
            log.info(
                "queue_id=%s: a campaign message's failure stays on its contact", original.queue_id
            )
            return None
        recipients = tuple(
            RecipientStatus(
                final_recipient=delivery.recipient,
                action="failed",
                # RFC 3463 4.4.7 "delivery time expired"; the last reply stays the diagnostic.
                status="4.4.7" if delivery.expired else delivery.status,
                diagnostic=delivery.diagnostic,
                remote_mta=delivery.remote_mta,
                last_attempt=datetime.fromtimestamp(delivery.updated_at, UTC),
            )
            for delivery in failed
        )
        dsn = build_dsn(
            DsnRequest(
                reporting_mta=self.hostname,
                queue_id=original.queue_id,
                original_sender=original.mail_from,
                arrival_date=datetime.fromtimestamp(original.created_at, UTC),
                recipients=recipients,
                original_message=original.body,
                envelope_id=original.envelope_id,
            )
        )
        queue_id = new_queue_id()
        log.info(
            "queue_id=%s: DSN %s to <%s> for %d recipient(s)",
            original.queue_id,
            queue_id,
            original.mail_from,
            len(recipients),
        )
        return NewMessage(
            queue_id=queue_id,
            mail_from="",
            recipients=(original.mail_from,),
            body=dsn,
            pool=self.pool,
            origin=MessageOrigin.DSN,
            created_at=datetime.now(UTC).timestamp(),
        )
