"""disbursement: aid programs, fundings, batches, lines and claw-backs

Revision ID: 0007_disbursement
Revises: 0006_ledger_check_once
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0007_disbursement"
down_revision = "0006_ledger_check_once"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aid_programs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.Enum('hardship_aid', 'student_aid', 'medical_aid', 'employment_support', 'consumption_voucher', name='program_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('purse', sa.Enum('general', 'restricted', name='purse_policy', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('allowed_categories', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('budget_account', sa.String(length=120), nullable=False),
    sa.Column('max_line_amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('active', 'closed', name='program_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_aid_programs_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_aid_programs_union_id_unions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aid_programs')),
    sa.UniqueConstraint('budget_account', name=op.f('uq_aid_programs_budget_account')),
    sa.UniqueConstraint('public_id', name=op.f('uq_aid_programs_public_id'))
    )
    op.create_index(op.f('ix_aid_programs_union_id'), 'aid_programs', ['union_id'], unique=False)
    op.create_table('disbursements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=10), nullable=False),
    sa.Column('rule', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('status', sa.Enum('draft', 'approved', 'running', 'completed', 'failed', 'cancelled', name='batch_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('approvals_needed', sa.BigInteger(), nullable=False),
    sa.Column('approved_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('second_approved_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reserve_account', sa.String(length=120), nullable=False),
    sa.Column('total_lines', sa.BigInteger(), nullable=False),
    sa.Column('valid_lines', sa.BigInteger(), nullable=False),
    sa.Column('invalid_lines', sa.BigInteger(), nullable=False),
    sa.Column('done_lines', sa.BigInteger(), nullable=False),
    sa.Column('failed_lines', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('done_amount', sa.BigInteger(), nullable=False),
    sa.Column('failed_amount', sa.BigInteger(), nullable=False),
    sa.Column('returned_amount', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('progressed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_disbursements_approved_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_disbursements_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['program_id'], ['aid_programs.id'], name=op.f('fk_disbursements_program_id_aid_programs'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['second_approved_by_id'], ['users.id'], name=op.f('fk_disbursements_second_approved_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disbursements')),
    sa.UniqueConstraint('public_id', name=op.f('uq_disbursements_public_id'))
    )
    op.create_index(op.f('ix_disbursements_program_id'), 'disbursements', ['program_id'], unique=False)
    op.create_table('program_fundings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('program_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', name='funding_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_program_fundings_created_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_program_fundings_decided_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['program_id'], ['aid_programs.id'], name=op.f('fk_program_fundings_program_id_aid_programs'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_program_fundings')),
    sa.UniqueConstraint('public_id', name=op.f('uq_program_fundings_public_id'))
    )
    op.create_index(op.f('ix_program_fundings_program_id'), 'program_fundings', ['program_id'], unique=False)
    op.create_table('disbursement_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('disbursement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('line_no', sa.BigInteger(), nullable=False),
    sa.Column('ref_kind', sa.String(length=12), nullable=False),
    sa.Column('ref_masked', sa.String(length=24), nullable=False),
    sa.Column('ref_index', sa.String(length=64), nullable=True),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('card_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('union_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('valid', 'invalid', 'done', 'failed', name='line_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('error_code', sa.String(length=40), nullable=True),
    sa.Column('error_message', sa.String(length=200), nullable=True),
    sa.Column('purse_account', sa.String(length=120), nullable=True),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('clawed_back', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['card_id'], ['cards.id'], name=op.f('fk_disbursement_lines_card_id_cards'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['disbursement_id'], ['disbursements.id'], name=op.f('fk_disbursement_lines_disbursement_id_disbursements'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_disbursement_lines_member_id_members'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['union_id'], ['unions.id'], name=op.f('fk_disbursement_lines_union_id_unions'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disbursement_lines')),
    sa.UniqueConstraint('disbursement_id', 'line_no', name='uq_disbursement_lines_disbursement_id_line_no'),
    postgresql_with={'fillfactor': 60},
    )
    op.create_index(op.f('ix_disbursement_lines_member_id'), 'disbursement_lines', ['member_id'], unique=False)
    op.create_table('disbursement_clawbacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('line_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', name='clawback_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('requested_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('amount_taken', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_disbursement_clawbacks_decided_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['line_id'], ['disbursement_lines.id'], name=op.f('fk_disbursement_clawbacks_line_id_disbursement_lines'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_disbursement_clawbacks_requested_by_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disbursement_clawbacks')),
    sa.UniqueConstraint('public_id', name=op.f('uq_disbursement_clawbacks_public_id'))
    )
    op.create_index(op.f('ix_disbursement_clawbacks_line_id'), 'disbursement_clawbacks', ['line_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_disbursement_clawbacks_line_id'), table_name='disbursement_clawbacks')
    op.drop_table('disbursement_clawbacks')
    op.drop_index(op.f('ix_disbursement_lines_member_id'), table_name='disbursement_lines')
    op.drop_table('disbursement_lines')
    op.drop_index(op.f('ix_program_fundings_program_id'), table_name='program_fundings')
    op.drop_table('program_fundings')
    op.drop_index(op.f('ix_disbursements_program_id'), table_name='disbursements')
    op.drop_table('disbursements')
    op.drop_index(op.f('ix_aid_programs_union_id'), table_name='aid_programs')
    op.drop_table('aid_programs')
