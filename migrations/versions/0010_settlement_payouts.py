"""settlement and payouts

Revision ID: 0010_settlement_payouts
Revises: 0009_offers_checkout
Create Date: 2026-11-25 18:09:07.808082
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_settlement_payouts'
down_revision = '0009_offers_checkout'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('payout_bank_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('payouts_count', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_payout_bank_files_created_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_bank_files')),
    sa.UniqueConstraint('public_id', name=op.f('uq_payout_bank_files_public_id'))
    )
    op.create_table('settlements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payments_count', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('discount', sa.BigInteger(), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=False),
    sa.Column('union_subsidy', sa.BigInteger(), nullable=False),
    sa.Column('refunds_count', sa.BigInteger(), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.Column('union_refunded', sa.BigInteger(), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('carried_in', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('settled', 'carried_forward', name='settlement_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('carried_into_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('payout_due_on', sa.Date(), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('net = charged + union_subsidy - refunded - union_refunded - fee + carried_in', name=op.f('ck_settlements_net_adds_up')),
    sa.CheckConstraint('payments_count >= 0 AND refunds_count >= 0 AND fee >= 0', name=op.f('ck_settlements_counts_not_negative')),
    sa.ForeignKeyConstraint(['carried_into_id'], ['settlements.id'], name=op.f('fk_settlements_carried_into_id_settlements'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_settlements_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_settlements_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlements')),
    sa.UniqueConstraint('merchant_id', 'business_date', name='uq_settlements_merchant_day'),
    sa.UniqueConstraint('public_id', name=op.f('uq_settlements_public_id'))
    )
    op.create_index(op.f('ix_settlements_business_date'), 'settlements', ['business_date'], unique=False)
    op.create_index(op.f('ix_settlements_merchant_id'), 'settlements', ['merchant_id'], unique=False)
    op.create_table('payouts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('settlement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('method', sa.Enum('bank', 'stripe', name='settlement_method', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status', sa.Enum('pending_approval', 'ready', 'submitted', 'paid', 'failed', name='payout_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('requires_approval', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('approved_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stripe_account_id', sa.String(length=64), nullable=True),
    sa.Column('stripe_transfer_id', sa.String(length=64), nullable=True),
    sa.Column('stripe_payout_id', sa.String(length=64), nullable=True),
    sa.Column('bank_file_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_code', sa.String(length=100), nullable=True),
    sa.Column('failure_message', sa.String(length=500), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('attempts', sa.BigInteger(), nullable=False),
    sa.Column('paid_transaction_id', sa.String(length=32), nullable=True),
    sa.Column('returned_transaction_id', sa.String(length=32), nullable=True),
    sa.Column('exception_status', sa.Enum('open', 'resolved', name='exception_status', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('exception_note', sa.String(length=1000), nullable=True),
    sa.Column('resolved_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('carried_into_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payouts_amount_positive')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_payouts_approved_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['bank_file_id'], ['payout_bank_files.id'], name=op.f('fk_payouts_bank_file_id_payout_bank_files'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['carried_into_id'], ['settlements.id'], name=op.f('fk_payouts_carried_into_id_settlements'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_payouts_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_payouts_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['resolved_by_id'], ['users.id'], name=op.f('fk_payouts_resolved_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['settlement_id'], ['settlements.id'], name=op.f('fk_payouts_settlement_id_settlements'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('public_id', name=op.f('uq_payouts_public_id')),
    sa.UniqueConstraint('settlement_id', name=op.f('uq_payouts_settlement_id')),
    sa.UniqueConstraint('stripe_payout_id', name=op.f('uq_payouts_stripe_payout_id')),
    sa.UniqueConstraint('stripe_transfer_id', name=op.f('uq_payouts_stripe_transfer_id'))
    )
    op.create_index(op.f('ix_payouts_bank_file_id'), 'payouts', ['bank_file_id'], unique=False)
    op.create_index('ix_payouts_merchant_created', 'payouts', ['merchant_id', 'created_at'], unique=False)
    op.create_index('ix_payouts_status_due', 'payouts', ['status', 'due_on'], unique=False)
    for table, extra in (("payments", ["merchant_id", "created_at"]), ("refunds", ["created_at"])):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('settlement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                          nullable=True))
            batch_op.create_foreign_key(op.f(f'fk_{table}_settlement_id_settlements'), 'settlements',
                                        ['settlement_id'], ['id'], ondelete='RESTRICT')
            batch_op.create_index(op.f(f'ix_{table}_settlement_id'), ['settlement_id'], unique=False)
            batch_op.create_index(f'ix_{table}_unsettled', extra, unique=False,
                                  postgresql_where=sa.text('settlement_id IS NULL'),
                                  sqlite_where=sa.text('settlement_id IS NULL'))

def downgrade() -> None:
    for table in ("refunds", "payments"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_unsettled')
            batch_op.drop_index(op.f(f'ix_{table}_settlement_id'))
            batch_op.drop_constraint(op.f(f'fk_{table}_settlement_id_settlements'), type_='foreignkey')
            batch_op.drop_column('settlement_id')
    op.drop_index('ix_payouts_status_due', table_name='payouts')
    op.drop_index('ix_payouts_merchant_created', table_name='payouts')
    op.drop_index(op.f('ix_payouts_bank_file_id'), table_name='payouts')
    op.drop_table('payouts')
    op.drop_index(op.f('ix_settlements_merchant_id'), table_name='settlements')
    op.drop_index(op.f('ix_settlements_business_date'), table_name='settlements')
    op.drop_table('settlements')
    op.drop_table('payout_bank_files')
