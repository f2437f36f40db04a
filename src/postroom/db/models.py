"""The database schema (SQLAlchemy 2.0 Core tables).

Every schema change goes through an Alembic migration in `db/migrations/versions`;
`tests/unit/db/test_migrations.py` checks that the migrations produce exactly
these tables. Times are Unix seconds (float, UTC) so that the hot path compares
numbers and both SQLite and PostgreSQL store them the same way.

Queue tables:
- `messages`: bytes stored once with their envelope sender, pool and origin.
- `deliveries`: one row per recipient, with its state (see `DeliveryState`),
  attempts, next attempt time, lease, and the last remote reply kept verbatim
  (`DeliveryState` lives in `postroom.db.states`, readable without SQLAlchemy).

Tenant tables (linked domains and mailboxes):
- `projects`: a tenant with its message limit (NULL = unlimited).
- `domains`: a domain linked to one project, `unverified` until its TXT proof
  is seen; names are lower-case A-labels without the final dot.
- `dkim_keys`: a domain's signing keys by selector, private key encrypted at
  rest (see `postroom.mailbox.dkim_keys`); rows are never deleted, so a
  selector is never reused.
- `mailboxes`: an address on a verified domain, its argon2id password hash and quota,
  and its SMTP submission access (`smtp_*`, see `postroom.mailbox.smtp_access`): the
  state (`SmtpState`), what the requester announced (purpose, messages per day), the
  operator's last rejection reason, whether it may send as any address of its domain,
  and per-mailbox rate-limit overrides (NULL = the `[smtp.submission]` defaults).
- `aliases`: `source` (an address, or "@domain" for the catch-all) → a mailbox.
- `project_usage`: messages (accepted recipients) a project sent per UTC calendar
  month ("YYYY-MM"), counted against its message limit (`postroom.mailbox.usage`).

Contacts (the rating engine, `postroom.rating`; campaigns filter on them):
- `contacts`: an address known to a project, its rating, blocked flag and why;
  its CRM stage, its state (the funnel step it is in, filled by automations),
  its registration date, and when it unsubscribed from the project's campaigns.
  `variables` (a JSON object of strings) is what templates see.
- `contact_variables`: the same variables in a form SQL filters on: the text,
  and the number or date it reads as (NULL when it does not). Written only with
  `variables`, in the same transaction (`postroom.campaign.contact_fields`).
- `contact_channels`: the channels a contact is connected on (email, telegram, ...).
- `contact_events`: every change and what caused it (message, delivery, reason).
- `lists` / `list_members`: named sets of a project's contacts (audiences).

Campaigns (`postroom.campaign`):
- `channels`: a project's own channels by name (a button may point at one).
- `senders`: an address a project's campaigns send from ("email bot"), with its
  display name, `SenderState`, and the one-time confirmation code's HMAC,
  expiry and wrong tries.
- `templates`: a project's message design: subject, HTML, optional text, and
  the buttons (a JSON list of {name, text, url | channel, colour}).
- `campaigns`: sender + template + audience (a JSON filter, see
  `postroom.campaign.audience`) and its state (`CampaignState`); a campaign made
  from a CSV file has its own list; `content` is the template as sent (a JSON
  snapshot taken at launch, so that a copy or a resend survives template edits).
  Launching stores its sending settings (start, interval, parts, pool, display
  name, history) beside it.
- `campaign_recipients`: the audience snapshot taken at launch, one row per
  contact in audience order (`seq`): `RecipientState` pending (with the part it
  belongs to and its release time), queued (with the queue id of its message:
  the state change and the queue insert are one transaction, so a recipient gets
  exactly one message), skipped (with the reason) or cancelled. Nodes producing
  a campaign claim pending rows with a lease.
- `campaign_sends`: one row per message a campaign sent to a contact (the
  campaign itself when `history` is on, a test copy or a resend), with its
  queue id: the contact's history.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class MessageOrigin(StrEnum):
    RELAY = "relay"  # accepted on port 25 from a relay network
    SUBMISSION = "submission"
    DSN = "dsn"  # a delivery status notification we generated
    CAMPAIGN = "campaign"


class SenderState(StrEnum):
    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"


class RecipientState(StrEnum):
    """A campaign recipient's row: what became of that contact at launch and since."""

    PENDING = "pending"  # waits for its release time and a producer
    QUEUED = "queued"  # its message is in the queue (message_id)
    SKIPPED = "skipped"  # never sent: `reason` says why
    CANCELLED = "cancelled"  # the campaign was cancelled before it was queued


class CampaignState(StrEnum):
    """Part 1 makes drafts; launching (part 2) moves them on. `launching` is transient:
    the audience snapshot being written (campaign/launch.py); it ends `scheduled` or
    `sending`, or a draft again when the launch is refused."""

    DRAFT = "draft"
    LAUNCHING = "launching"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"


class DomainState(StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"


class SmtpState(StrEnum):
    """A mailbox's SMTP submission access: requested → moderated → approved/rejected."""

    NONE = "none"  # never requested
    PENDING = "pending"  # requested, waits for an operator
    APPROVED = "approved"
    REJECTED = "rejected"  # refused, or revoked after approval; may be requested again


messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("mail_from", Text, nullable=False),
    Column("pool", String(64), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("client_ip", String(64), nullable=False, default=""),
    Column("size_bytes", Integer, nullable=False),
    Column("envelope_id", Text, nullable=False, default=""),
    Column("completed_at", Float, nullable=True),
    # NULL once every delivery is final: the bytes are not kept past their use.
    Column("body", LargeBinary, nullable=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(32), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("domain", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(255), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("last_status", String(16), nullable=False, default=""),
    Column("last_reply", Text, nullable=False, default=""),
    Column("last_stage", String(16), nullable=False, default=""),
    Column("remote_mta", Text, nullable=False, default=""),
    Column("source", String(64), nullable=False, default=""),
    # Who holds a `held` delivery: NULL an operator (`queue hold`), "campaign" a
    # campaign's pause (its resume releases only those).
    Column("held_by", String(16), nullable=True),
    Index("ix_deliveries_due", "state", "next_attempt_at"),
    Index("ix_deliveries_message", "message_id"),
    Index("ix_deliveries_lease", "lease_owner", "state"),
    Index("ix_deliveries_domain", "domain", "state"),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("message_limit", BigInteger, nullable=True),
    Column("created_at", Float, nullable=False),
)

domains = Table(
    "domains",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(253), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("verification_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("verified_at", Float, nullable=True),
    Index("ix_domains_project", "project_id"),
)

dkim_keys = Table(
    "dkim_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("selector", String(63), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("private_key", LargeBinary, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state_since", Float, nullable=False),
    UniqueConstraint("domain_id", "selector"),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id"), nullable=False),
    Column("address", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("quota_bytes", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("smtp_state", String(16), nullable=False, server_default=SmtpState.NONE.value),
    Column("smtp_purpose", Text, nullable=False, server_default=text("''")),
    Column("smtp_volume", Integer, nullable=True),  # messages per day, as announced
    # The operator's last rejection reason: still shown after a new request, cleared on approval.
    Column("smtp_reason", Text, nullable=False, server_default=text("''")),
    Column("smtp_requested_at", Float, nullable=True),
    Column("smtp_decided_at", Float, nullable=True),
    Column("smtp_domain_senders", Integer, nullable=False, server_default=text("0")),
    Column("smtp_per_minute", Integer, nullable=True),
    Column("smtp_per_day", Integer, nullable=True),
    Index("ix_mailboxes_domain", "domain_id"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("domain_id", Integer, ForeignKey("domains.id"), nullable=False),
    Column("source", String(320), nullable=False),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("source", "mailbox_id"),
    Index("ix_aliases_source", "source"),
)

project_usage = Table(
    "project_usage",
    metadata,
    Column(
        "project_id",
        Integer,
        ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("period", String(7), primary_key=True),  # "YYYY-MM", UTC
    Column("used", BigInteger, nullable=False, server_default=text("0")),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("blocked", Integer, nullable=False, default=0),
    # rating | complaint | operator: a reply lifts only a block the rating itself caused.
    Column("blocked_cause", String(16), nullable=False, default=""),
    Column("source", String(16), nullable=False),  # auto | manual | import
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("name", Text, nullable=False, server_default=text("''")),
    # Template variables from an import (JSON object of strings).
    Column("variables", Text, nullable=False, server_default="{}"),
    Column("stage", String(64), nullable=False, server_default=text("''")),
    Column("state", String(64), nullable=False, server_default=text("''")),
    Column("registered_at", Float, nullable=True),
    Column("unsubscribed_at", Float, nullable=True),
    UniqueConstraint("project_id", "address"),
    Index("ix_contacts_project_stage", "project_id", "stage"),
    Index("ix_contacts_project_registered", "project_id", "registered_at"),
)

contact_variables = Table(
    "contact_variables",
    metadata,
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("number", Float, nullable=True),
    Column("moment", Float, nullable=True),  # a date or date-time, Unix seconds UTC
)

contact_channels = Table(
    "contact_channels",
    metadata,
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("channel", String(32), primary_key=True),
    Index("ix_contact_channels_channel", "channel", "contact_id"),
)

contact_events = Table(
    "contact_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("kind", String(24), nullable=False),
    Column("reason", String(32), nullable=False, default=""),
    Column("old_rating", Integer, nullable=True),
    Column("new_rating", Integer, nullable=False),
    Column("blocked", Integer, nullable=False),
    Column("message_id", String(32), nullable=True),
    Column("delivery_id", Integer, nullable=True),
    Column("detail", Text, nullable=False, default=""),
    # The campaign whose message caused it (a bounce, a complaint, an unsubscribe).
    Column("campaign_id", Integer, ForeignKey("campaigns.id", ondelete="SET NULL"), nullable=True),
    Index("ix_contact_events_contact", "contact_id", "created_at"),
    Index("ix_contact_events_delivery", "delivery_id"),
    Index("ix_contact_events_campaign", "campaign_id"),  # `campaign status` counts
)

lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "name"),
)

list_members = Table(
    "list_members",
    metadata,
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_list_members_contact", "contact_id"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project_id", "name"),
)

senders = Table(
    "senders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("address", String(320), nullable=False),
    Column("display_name", Text, nullable=False, server_default=text("''")),
    Column("state", String(16), nullable=False),
    Column("code_hmac", String(64), nullable=True),  # NULL: no code outstanding
    Column("code_expires_at", Float, nullable=True),
    Column("code_failures", Integer, nullable=False, server_default=text("0")),
    Column("code_message_id", String(32), nullable=True),  # the queue id of the code mail
    Column("created_at", Float, nullable=False),
    Column("confirmed_at", Float, nullable=True),
    UniqueConstraint("project_id", "address"),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=True),  # NULL: derived from the HTML
    Column("buttons", Text, nullable=False, server_default="[]"),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("project_id", "name"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("sender_id", Integer, ForeignKey("senders.id"), nullable=False),
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="SET NULL"), nullable=True),
    Column("audience", Text, nullable=False, server_default="{}"),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="SET NULL"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("content", Text, nullable=True),
    Column("copied_from", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Sending settings, set at launch (NULL / 0 while a draft).
    Column("launched_at", Float, nullable=True),
    Column("start_at", Float, nullable=True),
    Column("interval_s", Float, nullable=False, server_default=text("0")),
    Column("part_size", Integer, nullable=True),  # NULL: one part
    Column("part_gap_s", Float, nullable=False, server_default=text("0")),
    Column("pool", String(64), nullable=True),
    Column("from_name", Text, nullable=True),  # NULL: the sender's name
    Column("history", Integer, nullable=False, server_default=text("1")),
    Column("paused_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),  # sent or cancelled
    # While `launching`: the launch's process (campaign/launch_lease.py) and its lease.
    Column("launch_owner", String(128), nullable=True),
    Column("launch_lease_until", Float, nullable=True),
    Index("ix_campaigns_project_state", "project_id", "state"),
)

campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    # NULL once the contact is erased: the campaign's counts stay.
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="SET NULL"), nullable=True),
    Column("address", String(320), nullable=False),
    Column("seq", Integer, nullable=False),  # position in the audience, from 0
    Column("part", Integer, nullable=False, server_default=text("0")),
    Column("state", String(16), nullable=False),
    Column("reason", String(32), nullable=False, server_default=text("''")),
    Column("release_at", Float, nullable=False),
    Column("message_id", String(32), nullable=True),  # the queue id, once queued
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("campaign_id", "seq"),
    Index("ix_campaign_recipients_claim", "campaign_id", "state", "release_at"),
    Index("ix_campaign_recipients_contact", "contact_id", "state"),
    Index("ix_campaign_recipients_message", "message_id"),
)

campaign_sends = Table(
    "campaign_sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    # NULL for a test copy (not the contact's mail, whoever's fields it shows).
    Column("contact_id", Integer, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=True),
    Column("recipient", String(320), nullable=False),
    Column("kind", String(16), nullable=False),  # campaign | test | resend
    Column("subject", Text, nullable=False),
    Column("message_id", String(32), nullable=False),  # the queue id
    Column("created_at", Float, nullable=False),
    Index("ix_campaign_sends_contact", "contact_id", "created_at"),
    Index("ix_campaign_sends_campaign", "campaign_id"),
)
