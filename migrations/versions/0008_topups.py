"""top-ups: members paying into their card through Stripe

Revision ID: 0008_topups
Revises: 0007_disbursement
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_topups"
down_revision = "0007_disbursement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('top_ups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('credited_card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.Enum('pending', 'succeeded', 'failed', 'canceled', name='top_up_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('refund_due', sa.Boolean(), nullable=False),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_message', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'succeeded') = (transaction_id IS NOT NULL)", name=op.f('ck_top_ups_credited_once_succeeded')),
    sa.CheckConstraint("NOT (refund_due AND status <> 'failed')", name=op.f('ck_top_ups_refund_due_is_failed')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_top_ups_positive_amount')),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_top_ups_card_id_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['credited_card_id'], ['cards.id'], name=op.f('fk_top_ups_credited_card_id_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_top_ups_member_id_members'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_top_ups')),
    sa.UniqueConstraint('payment_intent_id', name=op.f('uq_top_ups_payment_intent_id')),
    sa.UniqueConstraint('public_id', name=op.f('uq_top_ups_public_id')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_top_ups_transaction_id'))
    )
    op.create_index(op.f('ix_top_ups_card_id'), 'top_ups', ['card_id'], unique=False)
    op.create_index(op.f('ix_top_ups_member_id'), 'top_ups', ['member_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_top_ups_member_id'), table_name='top_ups')
    op.drop_index(op.f('ix_top_ups_card_id'), table_name='top_ups')
    op.drop_table('top_ups')
