"""cards: member cards, purses and bulk issuance runs

Revision ID: 0005_cards
Revises: 0004_stripe_events
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005_cards"
down_revision = "0004_stripe_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('card_issuance_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.Enum('queued', 'running', 'completed', 'failed', name='issuance_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('processed', sa.BigInteger(), nullable=False),
    sa.Column('issued', sa.BigInteger(), nullable=False),
    sa.Column('skipped', sa.BigInteger(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('progressed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_card_issuance_runs_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_card_issuance_runs_union_id_unions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_issuance_runs')),
    sa.UniqueConstraint('public_id', name=op.f('uq_card_issuance_runs_public_id'))
    )
    op.create_index(op.f('ix_card_issuance_runs_union_id'), 'card_issuance_runs', ['union_id'], unique=False)
    op.create_table('cards',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('number_enc', sa.Text(), nullable=False),
    sa.Column('number_index', sa.String(length=64), nullable=False),
    sa.Column('number_masked', sa.String(length=24), nullable=False),
    sa.Column('status', sa.Enum('issued', 'active', 'frozen', 'lost', 'replaced', 'cancelled', name='card_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('frozen_by_staff', sa.Boolean(), nullable=False),
    sa.Column('pin_hash', sa.String(length=255), nullable=True),
    sa.Column('pin_set_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replaces_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('issued_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['issued_by_id'], ['users.id'], name=op.f('fk_cards_issued_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_cards_member_id_members'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['replaces_id'], ['cards.id'], name=op.f('fk_cards_replaces_id_cards'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cards')),
    sa.UniqueConstraint('number_index', name=op.f('uq_cards_number_index')),
    sa.UniqueConstraint('public_id', name=op.f('uq_cards_public_id')),
    sa.UniqueConstraint('replaces_id', name=op.f('uq_cards_replaces_id'))
    )
    op.create_index(op.f('ix_cards_member_id'), 'cards', ['member_id'], unique=False)
    op.create_index('uq_cards_live_member', 'cards', ['member_id'], unique=True, postgresql_where=sa.text("status IN ('issued', 'active', 'frozen', 'lost')"), sqlite_where=sa.text("status IN ('issued', 'active', 'frozen', 'lost')"))
    op.create_table('card_purses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('general', 'restricted', name='purse_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('program_id', sa.String(length=32), nullable=True),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('account_code', sa.String(length=120), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('allowed_categories', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_card_purses_card_id_cards'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_card_purses')),
    sa.UniqueConstraint('account_code', name=op.f('uq_card_purses_account_code')),
    sa.UniqueConstraint('card_id', 'program_id', name='uq_card_purses_card_id_program_id')
    )
    op.create_index(op.f('ix_card_purses_card_id'), 'card_purses', ['card_id'], unique=False)
    op.create_index(op.f('ix_card_purses_expires_at'), 'card_purses', ['expires_at'], unique=False)
    op.create_index(op.f('ix_card_purses_program_id'), 'card_purses', ['program_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_card_purses_program_id'), table_name='card_purses')
    op.drop_index(op.f('ix_card_purses_expires_at'), table_name='card_purses')
    op.drop_index(op.f('ix_card_purses_card_id'), table_name='card_purses')
    op.drop_table('card_purses')
    op.drop_index('uq_cards_live_member', table_name='cards', postgresql_where=sa.text("status IN ('issued', 'active', 'frozen', 'lost')"), sqlite_where=sa.text("status IN ('issued', 'active', 'frozen', 'lost')"))
    op.drop_index(op.f('ix_cards_member_id'), table_name='cards')
    op.drop_table('cards')
    op.drop_index(op.f('ix_card_issuance_runs_union_id'), table_name='card_issuance_runs')
    op.drop_table('card_issuance_runs')
