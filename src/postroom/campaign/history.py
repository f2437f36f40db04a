"""A contact's history: what the project sent it, and what it sent us.

`contact_history(conn, contact_id, address)` lists, oldest first:
- sent: every campaign message (`campaign_sends`: the campaign itself, test
  copies, resends) with its campaign, subject, time and outcome — the delivery's
  state and last reply while the queue keeps it (`[delivery] history`), else the
  rating event the outcome caused (bounced, complained), else "unknown";
- received: the mail it sent to the project's mailboxes (`replied` events).
A contact belongs to one project: its id is the project's own.

Config keys: none.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, select

from postroom.db.models import campaign_sends, campaigns, contact_events, deliveries

_OUTCOME_EVENTS = ("bounced", "complained")


@dataclass(frozen=True, slots=True)
class SentItem:
    at: float
    campaign_id: int
    campaign: str
    kind: str  # campaign | test | resend
    subject: str
    queue_id: str
    outcome: str
    reply: str

    def as_json(self) -> dict[str, object]:
        return {
            "at": self.at,
            "campaign": self.campaign_id,
            "campaign_name": self.campaign,
            "kind": self.kind,
            "subject": self.subject,
            "queue_id": self.queue_id,
            "outcome": self.outcome,
            "reply": self.reply,
        }


@dataclass(frozen=True, slots=True)
class ReceivedItem:
    at: float
    queue_id: str
    detail: str

    def as_json(self) -> dict[str, object]:
        return {"at": self.at, "queue_id": self.queue_id, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ContactHistory:
    address: str
    sent: list[SentItem]
    received: list[ReceivedItem]


def contact_history(conn: Connection, contact_id: int, address: str) -> ContactHistory:
    sent_rows = conn.execute(
        select(
            campaign_sends,
            campaigns.c.name.label("campaign_name"),
            deliveries.c.state.label("delivery_state"),
            deliveries.c.last_reply,
        )
        .select_from(
            campaign_sends.join(
                campaigns, campaigns.c.id == campaign_sends.c.campaign_id
            ).outerjoin(
                deliveries,
                and_(
                    deliveries.c.message_id == campaign_sends.c.message_id,
                    deliveries.c.recipient == campaign_sends.c.recipient,
                ),
            )
        )
        .where(campaign_sends.c.contact_id == contact_id)
        .order_by(campaign_sends.c.created_at, campaign_sends.c.id)
    ).all()
    events = conn.execute(
        select(
            contact_events.c.kind,
            contact_events.c.message_id,
            contact_events.c.reason,
            contact_events.c.created_at,
            contact_events.c.detail,
        )
        .where(contact_events.c.contact_id == contact_id)
        .order_by(contact_events.c.created_at, contact_events.c.id)
    ).all()
    outcome_by_message = {
        event.message_id: f"{event.kind} ({event.reason})" if event.reason else event.kind
        for event in events
        if event.kind in _OUTCOME_EVENTS and event.message_id
    }
    sent = [
        SentItem(
            at=row.created_at,
            campaign_id=row.campaign_id,
            campaign=row.campaign_name,
            kind=row.kind,
            subject=row.subject,
            queue_id=row.message_id,
            outcome=row.delivery_state or outcome_by_message.get(row.message_id, "unknown"),
            reply=row.last_reply or "",
        )
        for row in sent_rows
    ]
    received = [
        ReceivedItem(event.created_at, event.message_id or "", event.detail)
        for event in events
        if event.kind == "replied"
    ]
    return ContactHistory(address, sent, received)
