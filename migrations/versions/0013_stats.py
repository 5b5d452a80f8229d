"""union console: pre-aggregated figures by union and day, month and now; aid programs by day; payments by time (BRIN)

Revision ID: 0013_stats
Revises: 0012_payout_reversal
Create Date: 2026-11-25 21:13:54.066388
"""
from alembic import op
import sqlalchemy as sa


revision = '0013_stats'
down_revision = '0012_payout_reversal'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stats_state',
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('through', sa.Date(), nullable=True),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_ms', sa.Integer(), server_default='0', nullable=False),
    sa.Column('days', sa.Integer(), server_default='0', nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_stats_state'))
    )
    op.create_table('stats_union_days',
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('members_joined', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_issued', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_activated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('payments', sa.Integer(), server_default='0', nullable=False),
    sa.Column('amount', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('discount', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('charged', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('merchant_share', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('union_share', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('refunds', sa.Integer(), server_default='0', nullable=False),
    sa.Column('refunded', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('union_refunded', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_stats_union_days_union_id_unions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('union_id', 'day', name=op.f('pk_stats_union_days'))
    )
    op.create_index(op.f('ix_stats_union_days_day'), 'stats_union_days', ['day'], unique=False)
    op.create_table('stats_union_figures',
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('members', sa.Integer(), server_default='0', nullable=False),
    sa.Column('hardship_members', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_issued', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_not_activated', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_active', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_frozen', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_lost', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cards_used_30d', sa.Integer(), server_default='0', nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_stats_union_figures_union_id_unions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('union_id', name=op.f('pk_stats_union_figures'))
    )
    op.create_table('stats_union_months',
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('card_users', sa.Integer(), server_default='0', nullable=False),
    sa.Column('live_cards', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_stats_union_months_union_id_unions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('union_id', 'month', name=op.f('pk_stats_union_months'))
    )
    op.create_table('stats_program_days',
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('funded', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('disbursed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('spent', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('subsidised', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('expired', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('returned', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('clawed_back', sa.BigInteger(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['program_id'], ['aid_programs.id'], name=op.f('fk_stats_program_days_program_id_aid_programs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('program_id', 'day', name=op.f('pk_stats_program_days'))
    )
    op.create_index(op.f('ix_stats_program_days_day'), 'stats_program_days', ['day'], unique=False)
    op.create_index('ix_payments_created_at', 'payments', ['created_at'], unique=False, postgresql_using='brin')


def downgrade() -> None:
    op.drop_index('ix_payments_created_at', table_name='payments', postgresql_using='brin')
    op.drop_index(op.f('ix_stats_program_days_day'), table_name='stats_program_days')
    op.drop_table('stats_program_days')
    op.drop_table('stats_union_months')
    op.drop_table('stats_union_figures')
    op.drop_index(op.f('ix_stats_union_days_day'), table_name='stats_union_days')
    op.drop_table('stats_union_days')
    op.drop_table('stats_state')
