"""payouts record the reversal of a failed Stripe payout's transfer

Revision ID: 0012_payout_reversal
Revises: 0011_reconciliation
Create Date: 2026-11-25 19:05:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0012_payout_reversal'
down_revision = '0011_reconciliation'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_reversal_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('stripe_reversal_id')
