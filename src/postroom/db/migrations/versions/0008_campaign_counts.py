"""Campaigns, part 2 follow-up: events counted per campaign.

`campaign status` counts a campaign's bounces, complaints and unsubscribes from
`contact_events` by `campaign_id`: without an index that is a scan of every
event of the appliance.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contact_events_campaign", "contact_events", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_events_campaign", table_name="contact_events")
