"""The launch tests' world: the sender world plus a confirmed two-way sender
(news@acme.test), a confirmed send-only one (news@far.test), a template that
needs `contact.first_name`, contacts on the list "customers", drafts, launches at
the world's clock, a campaign another host is launching (`launching_elsewhere`), and a
stand-in for the producer (`produce`: what `serve`
does to one pending row, through the queue's own `store_queued`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from tests.unit.campaign.senders_world import SenderWorld

from postroom.campaign.addresses import ValidationPolicy, Validator
from postroom.campaign.audience import AudienceFilter
from postroom.campaign.contact_edit import apply_changes, parse_assignments
from postroom.campaign.drafts import Campaigns
from postroom.campaign.launch import Launched, launch
from postroom.campaign.launch_settings import sending_settings
from postroom.campaign.render import TemplateSource
from postroom.campaign.templates import Templates
from postroom.db.models import (
    MessageOrigin,
    campaign_recipients,
    campaigns,
    contacts,
    deliveries,
)
from postroom.mta.queue.outbox import store_queued
from postroom.rating.contacts import Contacts
from postroom.rating.rules import Rules

SENDER = "news@acme.test"
SEND_ONLY = "news@far.test"
TEMPLATE = TemplateSource(
    subject="Hello {{ contact.first_name }}",
    html="<p>Hi {{ contact.first_name }}, {{ contact.city | default('friend') }}</p>",
)
CUSTOMERS = AudienceFilter(lists=("customers",))
STRICT_DMARC = "far.test publishes DMARC policy reject (_dmarc.far.test) and postroom cannot sign"
ELSEWHERE = "4242.0badf00d@other-host.test"  # a launch's owner: pid 4242 on another host


class CampaignWorld(SenderWorld):
    def __init__(self, directory: Path, url: str | None = None) -> None:
        super().__init__(directory, url)
        for address, name in ((SENDER, "Acme News"), (SEND_ONLY, "Far News")):
            record = self.senders.add("acme", address, name)
            self.senders.confirm(address, self.mailed_code(record))
        Templates(self.engine).add("acme", "spring", TEMPLATE)
        self.contacts = Contacts(self.engine, Rules(self.config.rating))
        self.validator = Validator(ValidationPolicy(dns=False))
        self.dmarc_lookups: list[str] = []

    def contact(
        self,
        address: str,
        *,
        first_name: str | None = "Ann",
        rating: int | None = None,
        blocked: bool = False,
        unsubscribed: bool = False,
        list_name: str = "customers",
    ) -> None:
        self.contacts.add("acme", address, list_name)
        if first_name is not None:
            apply_changes(
                self.engine, "acme", address, parse_assignments([f"first_name={first_name}"])
            )
        if rating is not None:
            self.contacts.set_rating("acme", address, rating)
        if blocked:
            self.contacts.block("acme", address)
        if unsubscribed:
            with self.engine.begin() as conn:
                conn.execute(
                    update(contacts)
                    .where(contacts.c.address == address.lower())
                    .values(unsubscribed_at=self.clock.now)
                )

    def draft(self, sender: str = SENDER, audience: AudienceFilter = CUSTOMERS) -> int:
        return Campaigns(self.engine).create("acme", "spring", sender, "spring", audience)

    def launch(self, campaign_id: int, *, dmarc_risk: str | None = None, **flags: Any) -> Launched:
        settings = sending_settings(self.config, now=self.clock.now, **flags)

        def dmarc_check(config: object, address: str) -> str | None:
            self.dmarc_lookups.append(address)
            return dmarc_risk

        return launch(
            self.engine,
            self.config,
            campaign_id,
            settings,
            self.validator,
            dmarc_check=dmarc_check,
            clock=self.clock,
        )

    def launching_elsewhere(self, lease_until: float) -> int:
        """A new draft that another host (`ELSEWHERE`) is launching, with a lease until
        then, two of its rows (c0, c1 @shop.test) written."""
        campaign_id = self.draft()
        with self.engine.begin() as conn:
            conn.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(state="launching", launch_owner=ELSEWHERE, launch_lease_until=lease_until)
            )
            conn.execute(
                insert(campaign_recipients),
                [
                    {"campaign_id": campaign_id, "address": f"c{seq}@shop.test", "seq": seq,
                     "state": "pending", "release_at": 0.0, "updated_at": 0.0}
                    for seq in range(2)
                ],
            )  # fmt: skip
        return campaign_id

    def rows(self, campaign_id: int) -> list[Any]:
        with self.engine.connect() as conn:
            return conn.execute(
                select(campaign_recipients)
                .where(campaign_recipients.c.campaign_id == campaign_id)
                .order_by(campaign_recipients.c.seq)
            ).all()

    def produce(self, campaign_id: int, seq: int, delivery_state: str = "queued") -> str:
        """What the producer does to the pending row `seq`: its message queued (due at
        its release time), the row queued with the queue id, in one transaction."""
        with self.engine.begin() as conn:
            row = conn.execute(
                select(campaign_recipients).where(
                    campaign_recipients.c.campaign_id == campaign_id,
                    campaign_recipients.c.seq == seq,
                )
            ).one()
            assert row.state == "pending"
            queue_id = store_queued(
                conn, SENDER, [row.address], b"Subject: x\r\n\r\nhi\r\n", "default",
                MessageOrigin.CAMPAIGN,
            )  # fmt: skip
            conn.execute(
                update(deliveries)
                .where(deliveries.c.message_id == queue_id)
                .values(state=delivery_state, next_attempt_at=row.release_at)
            )
            conn.execute(
                update(campaign_recipients)
                .where(campaign_recipients.c.id == row.id)
                .values(state="queued", message_id=queue_id)
            )
        return queue_id

    def delivery(self, queue_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                select(deliveries).where(deliveries.c.message_id == queue_id)
            ).first()
