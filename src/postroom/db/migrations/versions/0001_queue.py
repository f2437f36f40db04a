"""The durable queue: messages and one delivery row per recipient.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column("pool", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("envelope_id", sa.Text(), nullable=False),
        sa.Column("completed_at", sa.Float(), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("last_status", sa.String(16), nullable=False),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("last_stage", sa.String(16), nullable=False),
        sa.Column("remote_mta", sa.Text(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_deliveries_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_attempt_at"])
    op.create_index("ix_deliveries_message", "deliveries", ["message_id"])
    op.create_index("ix_deliveries_lease", "deliveries", ["lease_owner", "state"])
    op.create_index("ix_deliveries_domain", "deliveries", ["domain", "state"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("messages")
