"""SMTP submission for apps: a mailbox's SMTP access and the projects' monthly usage.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every new NOT NULL column has a server default, so existing mailboxes start
    # with no SMTP access ("none") without a data migration.
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(
            sa.Column("smtp_state", sa.String(16), nullable=False, server_default="none")
        )
        batch.add_column(
            sa.Column("smtp_purpose", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(sa.Column("smtp_volume", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("smtp_reason", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(sa.Column("smtp_requested_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("smtp_decided_at", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column(
                "smtp_domain_senders", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )
        batch.add_column(sa.Column("smtp_per_minute", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("smtp_per_day", sa.Integer(), nullable=True))
    op.create_table(
        "project_usage",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_project_usage_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "period", name="pk_project_usage"),
    )


def downgrade() -> None:
    op.drop_table("project_usage")
    with op.batch_alter_table("mailboxes") as batch:
        for name in (
            "smtp_per_day",
            "smtp_per_minute",
            "smtp_domain_senders",
            "smtp_decided_at",
            "smtp_requested_at",
            "smtp_reason",
            "smtp_volume",
            "smtp_purpose",
            "smtp_state",
        ):
            batch.drop_column(name)
