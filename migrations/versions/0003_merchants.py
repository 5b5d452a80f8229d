"""merchants: applications, review, merchants, agreements, stores

Revision ID: 0003_merchants
Revises: 0002_ledger
Create Date: 2026-11-25 11:17:58.042366
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003_merchants'
down_revision = '0002_ledger'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('merchants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('legal_representative', sa.String(length=50), nullable=False),
    sa.Column('contact_phone_enc', sa.Text(), nullable=False),
    sa.Column('contact_phone_masked', sa.String(length=11), nullable=False),
    sa.Column('category', sa.Enum('dining', 'supermarket', 'pharmacy', 'medical', 'culture_sport', 'legal', 'education', 'travel', 'other', name='merchant_category', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('region', sa.String(length=6), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('active', 'suspended', 'terminated', name='merchant_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('settlement_method', sa.Enum('bank', 'stripe', name='settlement_method', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('bank_name', sa.String(length=100), nullable=True),
    sa.Column('bank_account_name', sa.String(length=100), nullable=True),
    sa.Column('bank_account_enc', sa.Text(), nullable=True),
    sa.Column('bank_account_masked', sa.String(length=40), nullable=True),
    sa.Column('stripe_account_id', sa.String(length=64), nullable=True),
    sa.Column('stripe_status', sa.String(length=20), nullable=True),
    sa.Column('stripe_status_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payable_account', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_reason', sa.String(length=500), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchants')),
    sa.UniqueConstraint('public_id', name=op.f('uq_merchants_public_id')),
    sa.UniqueConstraint('stripe_account_id', name=op.f('uq_merchants_stripe_account_id'))
    )
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.create_index('ix_merchants_directory', ['status', 'category', 'region'], unique=False)
        batch_op.create_index('uq_merchants_live_uscc', ['uscc'], unique=True, postgresql_where=sa.text("status <> 'terminated'"), sqlite_where=sa.text("status <> 'terminated'"))

    op.create_table('stores',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('category', sa.Enum('dining', 'supermarket', 'pharmacy', 'medical', 'culture_sport', 'legal', 'education', 'travel', 'other', name='merchant_category', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('opening_hours', sa.String(length=100), nullable=False),
    sa.Column('latitude', sa.Numeric(precision=9, scale=6), nullable=True),
    sa.Column('longitude', sa.Numeric(precision=9, scale=6), nullable=True),
    sa.Column('status', sa.Enum('open', 'closed', name='store_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_stores_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stores')),
    sa.UniqueConstraint('public_id', name=op.f('uq_stores_public_id'))
    )
    with op.batch_alter_table('stores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stores_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('merchant_agreements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accepted_by_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('term_start', sa.Date(), nullable=False),
    sa.Column('term_end', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['accepted_by_id'], ['users.id'], name=op.f('fk_merchant_agreements_accepted_by_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_merchant_agreements_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_agreements'))
    )
    with op.batch_alter_table('merchant_agreements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_agreements_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_merchant_agreements_term_end'), ['term_end'], unique=False)

    op.create_table('merchant_applications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('applicant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.Enum('draft', 'submitted', 'under_review', 'approved', 'rejected', 'changes_requested', 'resubmitted', name='application_status', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=True),
    sa.Column('legal_representative', sa.String(length=50), nullable=True),
    sa.Column('contact_phone_enc', sa.Text(), nullable=True),
    sa.Column('contact_phone_masked', sa.String(length=11), nullable=True),
    sa.Column('category', sa.Enum('dining', 'supermarket', 'pharmacy', 'medical', 'culture_sport', 'legal', 'education', 'travel', 'other', name='merchant_category', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('region', sa.String(length=6), nullable=True),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('stores', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('proposed_offers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('settlement_method', sa.Enum('bank', 'stripe', name='settlement_method', native_enum=False, create_constraint=True), nullable=True),
    sa.Column('bank_name', sa.String(length=100), nullable=True),
    sa.Column('bank_account_name', sa.String(length=100), nullable=True),
    sa.Column('bank_account_enc', sa.Text(), nullable=True),
    sa.Column('bank_account_masked', sa.String(length=40), nullable=True),
    sa.Column('reviewer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['applicant_id'], ['users.id'], name=op.f('fk_merchant_applications_applicant_id_users'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_merchant_applications_merchant_id_merchants'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_merchant_applications_reviewer_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_applications')),
    sa.UniqueConstraint('public_id', name=op.f('uq_merchant_applications_public_id'))
    )
    with op.batch_alter_table('merchant_applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_applications_applicant_id'), ['applicant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_merchant_applications_region'), ['region'], unique=False)
        batch_op.create_index('ix_merchant_applications_status_submitted', ['status', 'submitted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_merchant_applications_uscc'), ['uscc'], unique=False)

    op.create_table('merchant_application_comments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('application_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('author_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('body', sa.String(length=2000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['merchant_applications.id'], name=op.f('fk_merchant_application_comments_application_id_merchant_applications'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_merchant_application_comments_author_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_application_comments'))
    )
    with op.batch_alter_table('merchant_application_comments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_application_comments_application_id'), ['application_id'], unique=False)

    op.create_table('merchant_application_documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('application_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=50), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('stored_name', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['merchant_applications.id'], name=op.f('fk_merchant_application_documents_application_id_merchant_applications'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_application_documents')),
    sa.UniqueConstraint('public_id', name=op.f('uq_merchant_application_documents_public_id'))
    )
    with op.batch_alter_table('merchant_application_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_application_documents_application_id'), ['application_id'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_users_merchant_id_merchants'), 'merchants', ['merchant_id'], ['id'], ondelete='RESTRICT')




def downgrade() -> None:

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_users_merchant_id_merchants'), type_='foreignkey')

    with op.batch_alter_table('merchant_application_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_application_documents_application_id'))

    op.drop_table('merchant_application_documents')
    with op.batch_alter_table('merchant_application_comments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_application_comments_application_id'))

    op.drop_table('merchant_application_comments')
    with op.batch_alter_table('merchant_applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_applications_uscc'))
        batch_op.drop_index('ix_merchant_applications_status_submitted')
        batch_op.drop_index(batch_op.f('ix_merchant_applications_region'))
        batch_op.drop_index(batch_op.f('ix_merchant_applications_applicant_id'))

    op.drop_table('merchant_applications')
    with op.batch_alter_table('merchant_agreements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_agreements_term_end'))
        batch_op.drop_index(batch_op.f('ix_merchant_agreements_merchant_id'))

    op.drop_table('merchant_agreements')
    with op.batch_alter_table('stores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stores_merchant_id'))

    op.drop_table('stores')
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_index('uq_merchants_live_uscc', postgresql_where=sa.text("status <> 'terminated'"), sqlite_where=sa.text("status <> 'terminated'"))
        batch_op.drop_index('ix_merchants_directory')

    op.drop_table('merchants')

