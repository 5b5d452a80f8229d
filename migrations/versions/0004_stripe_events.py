"""stripe events: the webhook events received, each processed at most once

Revision ID: 0004_stripe_events
Revises: 0003_merchants
"""
from alembic import op
import sqlalchemy as sa

revision = "0004_stripe_events"
down_revision = "0003_merchants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_stripe_events_event_id")),
    )


def downgrade() -> None:
    op.drop_table("stripe_events")
