"""Campaigns, part 2: who is launching a campaign, and until when.

`campaign launch` writes the audience snapshot in short transactions, one chunk
of rows each, with the campaign in the transient state `launching`; these two
columns say which process launches it (`launch_owner`: pid, a random token and
the host) and until when its lease holds (`launch_lease_until`, renewed with
every chunk). A later launch of that campaign starts over only when the lease
ran out or, on the same host, that process is gone. NULL outside `launching`.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("launch_owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("launch_lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("launch_lease_until")
        batch.drop_column("launch_owner")
