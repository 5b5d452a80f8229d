"""offers and checkout

Revision ID: 0009_offers_checkout
Revises: 0008_topups
Create Date: 2026-11-25 15:35:33.376983
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009_offers_checkout'
down_revision = '0008_topups'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('offer_budgets',
    sa.Column('lineage', sa.String(length=32), nullable=False),
    sa.Column('budget', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('used >= 0 AND used <= budget', name=op.f('ck_offer_budgets_within_budget')),
    sa.PrimaryKeyConstraint('lineage', name=op.f('pk_offer_budgets'))
    )
    op.create_table('offer_usage',
    sa.Column('lineage', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('count >= 0 AND amount >= 0', name=op.f('ck_offer_usage_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_offer_usage_member_id_members'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('lineage', 'member_id', 'period_key', name=op.f('pk_offer_usage'))
    )
    op.create_table('offers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('lineage', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('previous_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('category', sa.Enum('culture', 'legal', 'health', 'safety', 'entertainment', 'everyday', name='offer_category', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('merchant_category', sa.Enum('dining', 'supermarket', 'pharmacy', 'medical', 'culture_sport', 'legal', 'education', 'travel', 'other', name='merchant_category', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=False),
    sa.Column('kind', sa.Enum('percent_off', 'amount_off', 'fixed_price', 'entitlement', name='offer_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('min_spend', sa.BigInteger(), nullable=False),
    sa.Column('max_discount', sa.BigInteger(), nullable=True),
    sa.Column('funding', sa.Enum('merchant', 'union', 'split', name='offer_funding', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('union_share_bp', sa.Integer(), nullable=False),
    sa.Column('program_id', sa.String(length=32), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('weekdays', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('hours_from', sa.String(length=5), nullable=True),
    sa.Column('hours_to', sa.String(length=5), nullable=True),
    sa.Column('limit_count', sa.Integer(), nullable=True),
    sa.Column('limit_amount', sa.BigInteger(), nullable=True),
    sa.Column('limit_period', sa.Enum('day', 'month', 'year', 'ever', name='limit_period', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('budget_amount', sa.BigInteger(), nullable=True),
    sa.Column('hardship_only', sa.Boolean(), nullable=False),
    sa.Column('union_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('stackable', sa.Boolean(), nullable=False),
    sa.Column('priority', sa.SmallInteger(), nullable=False),
    sa.Column('status', sa.Enum('draft', 'proposed', 'published', 'withdrawn', 'rejected', 'superseded', name='offer_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decision_comment', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('proposed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('merchant_id IS NOT NULL OR category IS NOT NULL', name=op.f('ck_offers_merchant_or_category')),
    sa.CheckConstraint('min_spend >= 0', name=op.f('ck_offers_min_spend_not_negative')),
    sa.CheckConstraint('union_share_bp BETWEEN 0 AND 10000', name=op.f('ck_offers_union_share_range')),
    sa.CheckConstraint('value >= 0', name=op.f('ck_offers_value_not_negative')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_offers_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_offers_decided_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_offers_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['previous_id'], ['offers.id'], name=op.f('fk_offers_previous_id_offers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['program_id'], ['aid_programs.public_id'], name=op.f('fk_offers_program_id_aid_programs'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers')),
    sa.UniqueConstraint('public_id', name=op.f('uq_offers_public_id'))
    )
    op.create_index(op.f('ix_offers_lineage'), 'offers', ['lineage'], unique=False)
    op.create_index('ix_offers_live', 'offers', ['status', 'merchant_id'], unique=False)
    op.create_index('ix_offers_live_category', 'offers', ['status', 'category'], unique=False)
    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('store_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('method', sa.Enum('payment_code', 'pin', name='payment_method', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('discount', sa.BigInteger(), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=False),
    sa.Column('union_share', sa.BigInteger(), nullable=False),
    sa.Column('merchant_share', sa.BigInteger(), nullable=False),
    sa.Column('program_id', sa.String(length=32), nullable=True),
    sa.Column('offer_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.Enum('completed', 'partially_refunded', 'refunded', name='payment_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.Column('union_refunded', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('pricing_notes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('discount >= 0 AND charged >= 0 AND charged + discount = amount', name=op.f('ck_payments_amounts_add_up')),
    sa.CheckConstraint('refunded >= 0 AND refunded <= charged', name=op.f('ck_payments_refunds_within_charged')),
    sa.CheckConstraint('union_refunded >= 0 AND union_refunded <= union_share', name=op.f('ck_payments_union_back_within_share')),
    sa.CheckConstraint('union_share >= 0 AND union_share <= discount', name=op.f('ck_payments_union_share_within_discount')),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_payments_card_id_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_payments_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_payments_member_id_members'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_payments_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_payments_store_id_stores'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('created_by_id', 'idempotency_key', name='uq_payments_idempotency'),
    sa.UniqueConstraint('public_id', name=op.f('uq_payments_public_id'))
    )
    op.create_index(op.f('ix_payments_card_id'), 'payments', ['card_id'], unique=False)
    op.create_index('ix_payments_member_created', 'payments', ['member_id', 'created_at'], unique=False)
    op.create_index('ix_payments_merchant_created', 'payments', ['merchant_id', 'created_at'], unique=False)
    op.create_table('payment_offers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('offer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lineage', sa.String(length=32), nullable=False),
    sa.Column('discount', sa.BigInteger(), nullable=False),
    sa.Column('union_share', sa.BigInteger(), nullable=False),
    sa.Column('program_id', sa.String(length=32), nullable=True),
    sa.Column('usage_keys', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_payment_offers_offer_id_offers'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_offers_payment_id_payments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_offers'))
    )
    op.create_index('ix_payment_offers_offer', 'payment_offers', ['offer_id', 'payment_id'], unique=False)
    op.create_index(op.f('ix_payment_offers_payment_id'), 'payment_offers', ['payment_id'], unique=False)
    op.create_table('payment_purses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('position', sa.BigInteger(), nullable=False),
    sa.Column('account_code', sa.String(length=120), nullable=False),
    sa.Column('purse_kind', sa.String(length=12), nullable=False),
    sa.Column('program_id', sa.String(length=32), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('refunded >= 0 AND refunded <= amount', name=op.f('ck_payment_purses_refunds_within_amount')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_payment_purses_payment_id_payments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_purses'))
    )
    op.create_index(op.f('ix_payment_purses_payment_id'), 'payment_purses', ['payment_id'], unique=False)
    op.create_table('refunds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('union_back', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('legs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_refunds_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refunds_payment_id_payments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('created_by_id', 'idempotency_key', name='uq_refunds_idempotency'),
    sa.UniqueConstraint('public_id', name=op.f('uq_refunds_public_id'))
    )
    op.create_index(op.f('ix_refunds_created_at'), 'refunds', ['created_at'], unique=False)
    op.create_index(op.f('ix_refunds_payment_id'), 'refunds', ['payment_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_refunds_payment_id'), table_name='refunds')
    op.drop_index(op.f('ix_refunds_created_at'), table_name='refunds')
    op.drop_table('refunds')
    op.drop_index(op.f('ix_payment_purses_payment_id'), table_name='payment_purses')
    op.drop_table('payment_purses')
    op.drop_index(op.f('ix_payment_offers_payment_id'), table_name='payment_offers')
    op.drop_index('ix_payment_offers_offer', table_name='payment_offers')
    op.drop_table('payment_offers')
    op.drop_index('ix_payments_merchant_created', table_name='payments')
    op.drop_index('ix_payments_member_created', table_name='payments')
    op.drop_index(op.f('ix_payments_card_id'), table_name='payments')
    op.drop_table('payments')
    op.drop_index('ix_offers_live_category', table_name='offers')
    op.drop_index('ix_offers_live', table_name='offers')
    op.drop_index(op.f('ix_offers_lineage'), table_name='offers')
    op.drop_table('offers')
    op.drop_table('offer_usage')
    op.drop_table('offer_budgets')
