"""Campaigns, part 2 follow-up: events counted per campaign; who holds a delivery.

`campaign status` counts a campaign's bounces, complaints and unsubscribes from
`contact_events` by `campaign_id`: without an index that is a scan of every
event of the appliance. `deliveries.held_by` tells a campaign's pause from an
operator's `queue hold`, so `campaign resume` releases only what its pause held.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_events_campaign", "contact_events", ["campaign_id"])
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("held_by", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("held_by")
    op.drop_index("ix_contact_events_campaign", table_name="contact_events")
