"""The exact message a campaign sends to one contact: preview, test copies, resends.

`Composer(engine, config, outbox)` puts the parts together in flow order:
the campaign's content (its template, or the snapshot taken at launch when the
template is gone) compiled once per campaign; the contact's fields and
variables, the project, the sender and the campaign as the template's context;
the rendered subject, HTML and text; the contact's signed unsubscribe token and
its links; the complete MIME message (`build_campaign_message`: footer,
List-Unsubscribe, List-Id, Feedback-ID, ...); and the DKIM signature the
queue would add (`Outbox.sign`), so a preview is byte for byte what is queued
(but for its Date and Message-ID, made fresh per message).

`compose(campaign, contact)` refuses (a `CampaignError`, one line) an
undefined variable naming it and the contact, never a half message.
`queue(campaign, recipients, kind)` composes and queues test copies and resends,
recording a `campaign_sends` row per message in the queue's transaction.

Config keys: [http] public_url, [bounce] domain (links), [secrets] key_file.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, insert, select

from postroom.campaign.channels import project_view
from postroom.campaign.drafts import Campaign, CampaignError
from postroom.campaign.message import (
    build_campaign_message,
    campaign_feedback_id,
    campaign_list_id,
)
from postroom.campaign.render import (
    CampaignView,
    CompiledTemplate,
    ContactView,
    ProjectView,
    RenderContext,
    RenderError,
    SenderView,
    TemplateError,
    TemplateSource,
    UndefinedVariable,
    compile_template,
)
from postroom.campaign.templates import Templates, source_from_snapshot
from postroom.campaign.unsubscribe import UNSUBSCRIBE_KEY_INFO, UnsubscribeTokens, unsubscribe_links
from postroom.config import Config
from postroom.core.secretbox import SecretBox
from postroom.db.models import MessageOrigin, campaign_sends, contacts
from postroom.mta.queue.outbox import Outbox

TEST_CONTACT_ID = 0
"""The contact id in a test copy's unsubscribe token when the address is no contact."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """A contact as a template sees it, its row id (0: a test address) and whether
    campaigns may write to it."""

    contact_id: int
    view: ContactView
    blocked: bool = False
    unsubscribed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Composed:
    recipient: str
    subject: str
    body: bytes


class Composer:
    def __init__(self, engine: Engine, config: Config, outbox: Outbox) -> None:
        self.engine = engine
        self.config = config
        self.outbox = outbox
        key = SecretBox.load(Path(config.secret_key_file), create=True).derive(UNSUBSCRIBE_KEY_INFO)
        self.tokens = UnsubscribeTokens(key)
        self._compiled: dict[int, CompiledTemplate] = {}
        self._projects: dict[int, ProjectView] = {}

    def template(self, campaign: Campaign) -> CompiledTemplate:
        compiled = self._compiled.get(campaign.id)
        if compiled is None:
            try:
                compiled = compile_template(self._source(campaign))
            except TemplateError as error:
                raise CampaignError(f"campaign {campaign.id}: {error}") from None
            self._compiled[campaign.id] = compiled
        return compiled

    def _source(self, campaign: Campaign) -> TemplateSource:
        """The campaign's template, else the content snapshot taken at its launch."""
        if campaign.template_id is not None:
            return (
                Templates(self.engine).get_by_id(campaign.template_id, campaign.project_id).source
            )
        if campaign.content:
            return source_from_snapshot(campaign.content)
        raise CampaignError(f"campaign {campaign.id} has neither a template nor its content")

    def _project(self, project_id: int) -> ProjectView:
        view = self._projects.get(project_id)
        if view is None:
            with self.engine.connect() as conn:
                view = self._projects[project_id] = project_view(conn, project_id)
        return view

    def compose(self, campaign: Campaign, recipient: Recipient, *, test: bool = False) -> Composed:
        context = RenderContext(
            contact=recipient.view,
            project=self._project(campaign.project_id),
            sender=SenderView(name=campaign.sender_name, address=campaign.sender),
            campaign=CampaignView(id=campaign.id, name=campaign.name),
        )
        try:
            rendered = self.template(campaign).render(context)
        except (UndefinedVariable, RenderError) as error:
            raise CampaignError(
                f"campaign {campaign.id}, contact {recipient.view.email}: {error}"
            ) from None
        token = self.tokens.make(campaign.project_id, recipient.contact_id, campaign.id)
        domain = campaign.sender.rpartition("@")[2]
        body = build_campaign_message(
            rendered,
            from_name=campaign.sender_name,
            from_address=campaign.sender,
            to_address=recipient.view.email,
            message_id=f"<{secrets.token_hex(12)}.c{campaign.id}@{domain}>",
            date=time.time(),
            unsubscribe=unsubscribe_links(self.config, token),
            list_id=campaign_list_id(campaign.project, campaign.id, domain),
            feedback_id=campaign_feedback_id(campaign.project_id, campaign.id),
            test=test,
        )
        subject = rendered.subject if not test else f"[TEST] {rendered.subject}"
        return Composed(recipient.view.email, subject, self.outbox.sign(body))

    def queue(
        self, campaign: Campaign, recipients: list[Recipient], *, kind: str, pool: str
    ) -> list[str]:
        """Compose every message first (a refusal queues nothing), then queue them all
        in one transaction with their `campaign_sends` rows; their queue ids."""
        test = kind == "test"
        composed = [self.compose(campaign, recipient, test=test) for recipient in recipients]
        queue_ids = []
        with self.engine.begin() as conn:
            for recipient, message in zip(recipients, composed, strict=True):
                queue_id = self.outbox.send(
                    mail_from=campaign.sender,
                    recipients=[message.recipient],
                    body=message.body,
                    pool=pool,
                    origin=MessageOrigin.CAMPAIGN,
                    conn=conn,
                    already_signed=True,
                )
                conn.execute(
                    insert(campaign_sends).values(
                        campaign_id=campaign.id,
                        contact_id=recipient.contact_id or None,
                        recipient=message.recipient,
                        kind=kind,
                        subject=message.subject,
                        message_id=queue_id,
                        created_at=time.time(),
                    )
                )
                queue_ids.append(queue_id)
        return queue_ids


def contact_recipient(conn: Connection, project_id: int, address: str) -> Recipient | None:
    row = conn.execute(
        select(contacts).where(contacts.c.project_id == project_id, contacts.c.address == address)
    ).first()
    if row is None:
        return None
    registered = (
        datetime.fromtimestamp(row.registered_at, UTC).date() if row.registered_at else None
    )
    return Recipient(
        row.id,
        ContactView(
            email=row.address,
            name=row.name,
            rating=row.rating,
            stage=row.stage,
            state=row.state,
            registered=registered,
            variables=json.loads(row.variables or "{}"),
        ),
        blocked=bool(row.blocked),
        unsubscribed_at=row.unsubscribed_at,
    )


def test_recipient(address: str) -> Recipient:
    """A test address that is no contact: only its email is known."""
    return Recipient(
        TEST_CONTACT_ID,
        ContactView(
            email=address, name="", rating=0, stage="", state="", registered=None, variables={}
        ),
    )
