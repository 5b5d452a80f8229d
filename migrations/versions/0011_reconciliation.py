"""reconciliation: imported statements, their lines, match groups and resolutions

Revision ID: 0011_reconciliation
Revises: 0010_settlement_payouts
Create Date: 2026-11-25 18:38:01.219278
"""
from alembic import op
import sqlalchemy as sa


revision = '0011_reconciliation'
down_revision = '0010_settlement_payouts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconciliations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.Enum('stripe', 'bank', name='reconciliation_source', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('method', sa.Enum('file', 'api', name='reconciliation_method', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('account', sa.String(length=100), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('lines_count', sa.BigInteger(), nullable=False),
    sa.Column('matched', sa.BigInteger(), nullable=False),
    sa.Column('unmatched_internal', sa.BigInteger(), nullable=False),
    sa.Column('unmatched_external', sa.BigInteger(), nullable=False),
    sa.Column('mismatched', sa.BigInteger(), nullable=False),
    sa.Column('resolved', sa.BigInteger(), nullable=False),
    sa.Column('total_out', sa.BigInteger(), nullable=False),
    sa.Column('total_in', sa.BigInteger(), nullable=False),
    sa.Column('total_fees', sa.BigInteger(), nullable=False),
    sa.Column('imported_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('period_start <= period_end', name=op.f('ck_reconciliations_period_ordered')),
    sa.ForeignKeyConstraint(['imported_by_id'], ['users.id'], name=op.f('fk_reconciliations_imported_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliations')),
    sa.UniqueConstraint('public_id', name=op.f('uq_reconciliations_public_id')),
    sa.UniqueConstraint('source', 'sha256', name='uq_reconciliations_source_sha256')
    )
    op.create_table('reconciliation_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reconciliation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_no', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('funding_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('top_up_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('(CASE WHEN payout_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN funding_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN top_up_id IS NULL THEN 0 ELSE 1 END) = 1', name=op.f('ck_reconciliation_items_one_item')),
    sa.ForeignKeyConstraint(['funding_id'], ['program_fundings.id'], name=op.f('fk_reconciliation_items_funding_id_program_fundings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_reconciliation_items_payout_id_payouts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reconciliation_id'], ['reconciliations.id'], name=op.f('fk_reconciliation_items_reconciliation_id_reconciliations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['top_up_id'], ['top_ups.id'], name=op.f('fk_reconciliation_items_top_up_id_top_ups'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_items'))
    )
    op.create_index('ix_reconciliation_items_funding', 'reconciliation_items', ['funding_id'], unique=False, postgresql_where=sa.text('funding_id IS NOT NULL'), sqlite_where=sa.text('funding_id IS NOT NULL'))
    op.create_index('ix_reconciliation_items_group', 'reconciliation_items', ['reconciliation_id', 'group_no'], unique=False)
    op.create_index('ix_reconciliation_items_payout', 'reconciliation_items', ['payout_id'], unique=False, postgresql_where=sa.text('payout_id IS NOT NULL'), sqlite_where=sa.text('payout_id IS NOT NULL'))
    op.create_index('ix_reconciliation_items_top_up', 'reconciliation_items', ['top_up_id'], unique=False, postgresql_where=sa.text('top_up_id IS NOT NULL'), sqlite_where=sa.text('top_up_id IS NOT NULL'))
    op.create_table('reconciliation_lines',
    sa.Column('reconciliation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('origin', sa.Enum('statement', 'internal', name='reconciliation_line_origin', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('value_date', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('fee', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=True),
    sa.Column('state', sa.Enum('matched', 'unmatched_internal', 'unmatched_external', 'mismatched', name='reconciliation_line_state', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('rule', sa.Enum('reference', 'amount_date', name='reconciliation_match_rule', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('group_no', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('funding_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('top_up_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('difference', sa.BigInteger(), nullable=True),
    sa.CheckConstraint('(CASE WHEN payout_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN funding_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN top_up_id IS NULL THEN 0 ELSE 1 END) <= 1', name=op.f('ck_reconciliation_lines_one_item_at_most')),
    sa.CheckConstraint('line_no > 0', name=op.f('ck_reconciliation_lines_line_no_positive')),
    sa.ForeignKeyConstraint(['funding_id'], ['program_fundings.id'], name=op.f('fk_reconciliation_lines_funding_id_program_fundings'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_reconciliation_lines_payout_id_payouts'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reconciliation_id'], ['reconciliations.id'], name=op.f('fk_reconciliation_lines_reconciliation_id_reconciliations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['top_up_id'], ['top_ups.id'], name=op.f('fk_reconciliation_lines_top_up_id_top_ups'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('reconciliation_id', 'line_no', name=op.f('pk_reconciliation_lines'))
    )
    op.create_index('ix_reconciliation_lines_exceptions', 'reconciliation_lines', ['reconciliation_id', 'state', 'line_no'], unique=False, postgresql_where=sa.text("state <> 'matched'"), sqlite_where=sa.text("state <> 'matched'"))
    op.create_index('ix_reconciliation_lines_funding', 'reconciliation_lines', ['funding_id'], unique=False, postgresql_where=sa.text('funding_id IS NOT NULL'), sqlite_where=sa.text('funding_id IS NOT NULL'))
    op.create_index('ix_reconciliation_lines_payout', 'reconciliation_lines', ['payout_id'], unique=False, postgresql_where=sa.text('payout_id IS NOT NULL'), sqlite_where=sa.text('payout_id IS NOT NULL'))
    op.create_index('ix_reconciliation_lines_top_up', 'reconciliation_lines', ['top_up_id'], unique=False, postgresql_where=sa.text('top_up_id IS NOT NULL'), sqlite_where=sa.text('top_up_id IS NOT NULL'))
    op.create_table('reconciliation_resolutions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('reconciliation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_no', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('note', 'adjustment', name='reconciliation_resolution_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('status', sa.Enum('pending', 'resolved', 'rejected', name='reconciliation_resolution_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('note', sa.String(length=1000), nullable=False),
    sa.Column('account', sa.String(length=100), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind = 'adjustment' OR (status = 'resolved' AND amount IS NULL AND account IS NULL)", name=op.f('ck_reconciliation_resolutions_a_note_is_resolved')),
    sa.CheckConstraint("kind = 'note' OR (amount IS NOT NULL AND amount <> 0 AND account IS NOT NULL)", name=op.f('ck_reconciliation_resolutions_an_adjustment_moves_money')),
    sa.CheckConstraint('lines > 0', name=op.f('ck_reconciliation_resolutions_lines_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_reconciliation_resolutions_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_reconciliation_resolutions_decided_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reconciliation_id', 'line_no'], ['reconciliation_lines.reconciliation_id', 'reconciliation_lines.line_no'], name='fk_reconciliation_resolutions_line', ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reconciliation_id'], ['reconciliations.id'], name=op.f('fk_reconciliation_resolutions_reconciliation_id_reconciliations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_resolutions')),
    sa.UniqueConstraint('public_id', name=op.f('uq_reconciliation_resolutions_public_id'))
    )
    op.create_index('ix_reconciliation_resolutions_status', 'reconciliation_resolutions', ['status', 'id'], unique=False)
    op.create_index('uq_reconciliation_resolutions_group', 'reconciliation_resolutions', ['reconciliation_id', 'group_no'], unique=True, postgresql_where=sa.text("status <> 'rejected'"), sqlite_where=sa.text("status <> 'rejected'"))


def downgrade() -> None:
    op.drop_index('uq_reconciliation_resolutions_group', table_name='reconciliation_resolutions', postgresql_where=sa.text("status <> 'rejected'"), sqlite_where=sa.text("status <> 'rejected'"))
    op.drop_index('ix_reconciliation_resolutions_status', table_name='reconciliation_resolutions')
    op.drop_table('reconciliation_resolutions')
    op.drop_index('ix_reconciliation_lines_top_up', table_name='reconciliation_lines', postgresql_where=sa.text('top_up_id IS NOT NULL'), sqlite_where=sa.text('top_up_id IS NOT NULL'))
    op.drop_index('ix_reconciliation_lines_payout', table_name='reconciliation_lines', postgresql_where=sa.text('payout_id IS NOT NULL'), sqlite_where=sa.text('payout_id IS NOT NULL'))
    op.drop_index('ix_reconciliation_lines_funding', table_name='reconciliation_lines', postgresql_where=sa.text('funding_id IS NOT NULL'), sqlite_where=sa.text('funding_id IS NOT NULL'))
    op.drop_index('ix_reconciliation_lines_exceptions', table_name='reconciliation_lines', postgresql_where=sa.text("state <> 'matched'"), sqlite_where=sa.text("state <> 'matched'"))
    op.drop_table('reconciliation_lines')
    op.drop_index('ix_reconciliation_items_top_up', table_name='reconciliation_items', postgresql_where=sa.text('top_up_id IS NOT NULL'), sqlite_where=sa.text('top_up_id IS NOT NULL'))
    op.drop_index('ix_reconciliation_items_payout', table_name='reconciliation_items', postgresql_where=sa.text('payout_id IS NOT NULL'), sqlite_where=sa.text('payout_id IS NOT NULL'))
    op.drop_index('ix_reconciliation_items_group', table_name='reconciliation_items')
    op.drop_index('ix_reconciliation_items_funding', table_name='reconciliation_items', postgresql_where=sa.text('funding_id IS NOT NULL'), sqlite_where=sa.text('funding_id IS NOT NULL'))
    op.drop_table('reconciliation_items')
    op.drop_table('reconciliations')
