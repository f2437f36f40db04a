"""Campaigns, part 2: sending settings, the audience snapshot, events naming a campaign.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _settings() -> tuple[sa.Column, ...]:  # type: ignore[type-arg]
    return (
        sa.Column("launched_at", sa.Float(), nullable=True),
        sa.Column("start_at", sa.Float(), nullable=True),
        sa.Column("interval_s", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("part_size", sa.Integer(), nullable=True),
        sa.Column("part_gap_s", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("pool", sa.String(64), nullable=True),
        sa.Column("from_name", sa.Text(), nullable=True),
        sa.Column("history", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("paused_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        for column in _settings():
            batch.add_column(column)
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False, server_default=sa.text("''")),
        sa.Column("release_at", sa.Float(), nullable=False),
        sa.Column("message_id", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name="fk_campaign_recipients_campaign_id_campaigns",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_campaign_recipients_contact_id_contacts",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_recipients"),
        sa.UniqueConstraint("campaign_id", "seq", name="uq_campaign_recipients_campaign_id_seq"),
    )
    op.create_index(
        "ix_campaign_recipients_claim",
        "campaign_recipients",
        ["campaign_id", "state", "release_at"],
    )
    op.create_index(
        "ix_campaign_recipients_contact", "campaign_recipients", ["contact_id", "state"]
    )
    op.create_index("ix_campaign_recipients_message", "campaign_recipients", ["message_id"])
    with op.batch_alter_table("contact_events") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_contact_events_campaign_id_campaigns",
            "campaigns",
            ["campaign_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_events") as batch:
        batch.drop_constraint("fk_contact_events_campaign_id_campaigns", type_="foreignkey")
        batch.drop_column("campaign_id")
    op.drop_table("campaign_recipients")
    with op.batch_alter_table("campaigns") as batch:
        for column in reversed(_settings()):
            batch.drop_column(column.name)
