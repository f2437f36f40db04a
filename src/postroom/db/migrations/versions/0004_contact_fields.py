"""Contacts get a name and template variables (CSV import).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("name", sa.Text(), nullable=False, server_default=sa.text("''")))
        batch.add_column(sa.Column("variables", sa.Text(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("variables")
        batch.drop_column("name")
