"""The exact message a campaign sends to one contact: preview, test copies, resends.

`Composer(engine, config, outbox)` puts the parts together in flow order:
the campaign's content (its template, or the snapshot taken at launch when the
template is gone) compiled once per campaign (`campaign_template`, which
`campaign audience` uses alone); the contact's fields and
variables, the project, the sender and the campaign as the template's context;
the rendered subject, HTML and text; the contact's signed unsubscribe token and
its links; the complete MIME message (`build_campaign_message`: footer,
List-Unsubscribe, List-Id, Feedback-ID, ...); and the DKIM signature the
queue would add (`Outbox.sign`), so a preview is byte for byte what is queued
(but for its Date and Message-ID, made fresh per message).

`compose(campaign, copy)` (a `Copy`: where it goes, whose fields fill it)
refuses (a `RenderRefused`, a one-line `CampaignError` whose `reason` is
`undefined_variable` or `render_error`) an undefined variable naming it and the
contact, never a half message. A launched campaign renders its content snapshot
(the template as sent), not the template row an operator may have edited since.
A test copy may go to another address with a contact's fields; it is marked in
its subject and its unsubscribe link names no contact (contact id 0), so trying
the link in a test copy unsubscribes nobody.
`queue(campaign, copies, kind, pool)` composes every message, then queues them
(test copies, resends) with a `campaign_sends` row each in one transaction.

Config keys: [http] public_url, [bounce] domain (links), [secrets] key_file.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, insert

from postroom.campaign.audience_report import Recipient, recipient_from_row
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
    UndefinedVariable,
    compile_template,
)
from postroom.campaign.templates import Templates, TemplateStoreError, source_from_snapshot
from postroom.campaign.unsubscribe import UNSUBSCRIBE_KEY_INFO, UnsubscribeTokens, unsubscribe_links
from postroom.config import Config
from postroom.core.secretbox import SecretBox
from postroom.db.models import MessageOrigin, campaign_sends
from postroom.mta.queue.outbox import Outbox
from postroom.rating.contacts import contact_row

TEST_CONTACT_ID = 0
"""The contact id in a test copy's unsubscribe token: none."""


class RenderRefused(CampaignError):
    """One contact's message cannot be made; `reason` is what a campaign records."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Copy:
    """One message to compose: to `to`, with `contact`'s fields."""

    to: str
    contact: Recipient
    test: bool = False


@dataclass(frozen=True, slots=True)
class Composed:
    copy: Copy
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
            compiled = self._compiled[campaign.id] = campaign_template(self.engine, campaign)
        return compiled

    def _project(self, project_id: int) -> ProjectView:
        view = self._projects.get(project_id)
        if view is None:
            with self.engine.connect() as conn:
                view = self._projects[project_id] = project_view(conn, project_id)
        return view

    def compose(self, campaign: Campaign, copy: Copy) -> Composed:
        contact = copy.contact
        context = RenderContext(
            contact=contact_view(contact),
            project=self._project(campaign.project_id),
            sender=SenderView(name=campaign.sender_name, address=campaign.sender),
            campaign=CampaignView(id=campaign.id, name=campaign.name),
        )
        try:
            rendered = self.template(campaign).render(context)
        except (UndefinedVariable, RenderError) as error:
            reason = (
                "undefined_variable" if isinstance(error, UndefinedVariable) else "render_error"
            )
            raise RenderRefused(
                f"campaign {campaign.id}, contact {contact.address}: {error}", reason
            ) from None
        token_contact = TEST_CONTACT_ID if copy.test else contact.contact_id
        token = self.tokens.make(campaign.project_id, token_contact, campaign.id)
        domain = campaign.sender.rpartition("@")[2]
        try:
            body = build_campaign_message(
                rendered,
                from_name=campaign.sender_name,
                from_address=campaign.sender,
                to_address=copy.to,
                message_id=f"<{secrets.token_hex(12)}.c{campaign.id}@{domain}>",
                date=time.time(),
                unsubscribe=unsubscribe_links(self.config, token),
                list_id=campaign_list_id(campaign.project, campaign.id, domain),
                feedback_id=campaign_feedback_id(campaign.project_id, campaign.id),
                test=copy.test,
            )
        except ValueError as error:  # an address or identifier the message cannot carry
            raise RenderRefused(
                f"campaign {campaign.id}, contact {contact.address}: {error}", "render_error"
            ) from None
        subject = f"[TEST] {rendered.subject}" if copy.test else rendered.subject
        return Composed(copy, subject, self.outbox.sign(body, campaign.project_id))

    def queue(self, campaign: Campaign, copies: list[Copy], *, kind: str, pool: str) -> list[str]:
        """Compose every message first (a refusal queues nothing), then queue them all
        in one transaction with their `campaign_sends` rows; their queue ids."""
        composed = [self.compose(campaign, copy) for copy in copies]
        queue_ids = []
        with self.engine.begin() as conn:
            for message in composed:
                queue_id = self.outbox.send(
                    mail_from=campaign.sender,
                    recipients=[message.copy.to],
                    body=message.body,
                    pool=pool,
                    origin=MessageOrigin.CAMPAIGN,
                    project_id=campaign.project_id,
                    conn=conn,
                    already_signed=True,
                )
                conn.execute(
                    insert(campaign_sends).values(
                        campaign_id=campaign.id,
                        # A test copy is not the contact's mail, whoever's fields it shows.
                        contact_id=None if message.copy.test else message.copy.contact.contact_id,
                        recipient=message.copy.to,
                        kind=kind,
                        subject=message.subject,
                        message_id=queue_id,
                        created_at=time.time(),
                    )
                )
                queue_ids.append(queue_id)
        return queue_ids


def campaign_template(engine: Engine, campaign: Campaign) -> CompiledTemplate:
    """The campaign's template compiled: the content snapshot taken at its launch (the
    template as sent), else its template row; a one-line CampaignError when neither
    compiles or exists."""
    if campaign.content:
        source = source_from_snapshot(campaign.content)
    elif campaign.template_id is not None:
        try:
            source = Templates(engine).get_by_id(campaign.template_id, campaign.project_id).source
        except TemplateStoreError as error:
            raise CampaignError(f"campaign {campaign.id}: {error}") from None
    else:
        raise CampaignError(f"campaign {campaign.id} has neither a template nor its content")
    try:
        return compile_template(source)
    except TemplateError as error:
        raise CampaignError(f"campaign {campaign.id}: {error}") from None


def contact_recipient(conn: Connection, project_id: int, address: str) -> Recipient | None:
    """The project's contact `address` (either IDNA form of its domain), None if none."""
    row = contact_row(conn, project_id, address)
    return None if row is None else recipient_from_row(row)


def nobody(address: str) -> Recipient:
    """A test address's own fields when no contact lends its: only the email."""
    return Recipient(TEST_CONTACT_ID, address, "", 0, "", "", None, {})


def contact_view(contact: Recipient) -> ContactView:
    registered = (
        datetime.fromtimestamp(contact.registered_at, UTC).date()
        if contact.registered_at is not None
        else None
    )
    return ContactView(
        email=contact.address,
        name=contact.name,
        rating=contact.rating,
        stage=contact.stage,
        state=contact.state,
        registered=registered,
        variables=contact.variables,
    )
