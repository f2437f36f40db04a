"""Campaigns, part 1: contact fields audiences filter on, senders, templates, campaigns.

Revision ID: 0006
Revises: 0005

Existing contacts keep everything they had: their registration date becomes the
day postroom first saw them, and their variables are copied into
`contact_variables` (the form SQL filters on), parsed the way new ones are.
"""

import json

import sqlalchemy as sa
from alembic import op

from postroom.campaign.contact_fields import variable_rows

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("stage", sa.String(64), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(
            sa.Column("state", sa.String(64), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(sa.Column("registered_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("unsubscribed_at", sa.Float(), nullable=True))
        batch.create_index("ix_contacts_project_stage", ["project_id", "stage"])
        batch.create_index("ix_contacts_project_registered", ["project_id", "registered_at"])
    op.execute("UPDATE contacts SET registered_at = created_at")
    op.create_index("ix_list_members_contact", "list_members", ["contact_id"])
    contact_variables = op.create_table(
        "contact_variables",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("number", sa.Float(), nullable=True),
        sa.Column("moment", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_contact_variables_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "name", name="pk_contact_variables"),
    )
    op.create_table(
        "contact_channels",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_contact_channels_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "channel", name="pk_contact_channels"),
    )
    op.create_index("ix_contact_channels_channel", "contact_channels", ["channel", "contact_id"])
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_channels_project_id_projects"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_channels"),
        sa.UniqueConstraint("project_id", "name", name="uq_channels_project_id_name"),
    )
    op.create_table(
        "senders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("code_hmac", sa.String(64), nullable=True),
        sa.Column("code_expires_at", sa.Float(), nullable=True),
        sa.Column("code_failures", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("code_message_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("confirmed_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_senders_project_id_projects"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_senders"),
        sa.UniqueConstraint("project_id", "address", name="uq_senders_project_id_address"),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("buttons", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_templates_project_id_projects"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.UniqueConstraint("project_id", "name", name="uq_templates_project_id_name"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=True),
        sa.Column("audience", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("list_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("copied_from", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name="fk_campaigns_project_id_projects"
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["senders.id"], name="fk_campaigns_sender_id_senders"
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name="fk_campaigns_template_id_templates",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name="fk_campaigns_list_id_lists", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaigns"),
    )
    op.create_index("ix_campaigns_project_state", "campaigns", ["project_id", "state"])
    op.create_table(
        "campaign_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_sends_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_campaign_sends_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_sends"),
    )
    op.create_index("ix_campaign_sends_contact", "campaign_sends", ["contact_id", "created_at"])
    op.create_index("ix_campaign_sends_campaign", "campaign_sends", ["campaign_id"])
    _copy_variables(contact_variables)


def _copy_variables(contact_variables: sa.Table) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, variables FROM contacts WHERE variables <> '{}'"))
    batch: list[dict[str, object]] = []
    for contact_id, variables in rows:
        batch.extend(variable_rows(contact_id, json.loads(variables)))
        if len(batch) >= 10_000:
            op.bulk_insert(contact_variables, batch)
            batch = []
    if batch:
        op.bulk_insert(contact_variables, batch)


def downgrade() -> None:
    for table in (
        "campaign_sends",
        "campaigns",
        "templates",
        "senders",
        "channels",
        "contact_channels",
        "contact_variables",
    ):
        op.drop_table(table)
    op.drop_index("ix_list_members_contact", table_name="list_members")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_index("ix_contacts_project_registered")
        batch.drop_index("ix_contacts_project_stage")
        for name in ("unsubscribed_at", "registered_at", "state", "stage"):
            batch.drop_column(name)
