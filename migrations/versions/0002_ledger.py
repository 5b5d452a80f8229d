"""ledger: accounts, balances, transactions, entries, deltas, snapshots, and the guards on them

Revision ID: 0002_ledger
Revises: 0001_foundation
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0002_ledger"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIME = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True)


def _counters() -> list[sa.Column]:
    return [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    ]


PG_FUNCTIONS = [
    """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$
""",
    """
CREATE FUNCTION ledger_transactions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'ledger transactions are never removed: % refused', TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'ledger transaction % is % and can never change', OLD.public_id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.id, NEW.public_id, NEW.kind, NEW.is_hold, NEW.idempotency_key, NEW.request_hash,
        NEW.reference, NEW.metadata, NEW.reverses_id, NEW.pending_id, NEW.expires_at, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.public_id, OLD.kind, OLD.is_hold, OLD.idempotency_key, OLD.request_hash,
        OLD.reference, OLD.metadata, OLD.reverses_id, OLD.pending_id, OLD.expires_at, OLD.created_at)
    THEN
        RAISE EXCEPTION 'only the status of pending ledger transaction % may change', OLD.public_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$
""",
    # Runs at COMMIT (deferred), once the whole transaction has been written.
    """
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    txn bigint;
    entry_count bigint;
    unbalanced boolean;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        txn := NEW.transaction_id;
    ELSE
        txn := NEW.id;
    END IF;
    SELECT coalesce(sum(n), 0), coalesce(bool_or(total <> 0), false)
      INTO entry_count, unbalanced
      FROM (SELECT count(*) AS n, sum(amount) AS total
              FROM ledger_entries WHERE transaction_id = txn GROUP BY currency) AS per_currency;
    IF entry_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % entries; it needs at least two', txn, entry_count
            USING ERRCODE = 'check_violation';
    END IF;
    IF unbalanced THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries do not sum to zero', txn
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$
""",
]

PG_TRIGGERS = [
    "CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries "
    "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE TRIGGER ledger_transactions_guard BEFORE UPDATE OR DELETE ON ledger_transactions "
    "FOR EACH ROW EXECUTE FUNCTION ledger_transactions_guard()",
    "CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
    "CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()",
    "CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()",
]

# SQLite has no deferred triggers, but it can still refuse changes to what is written.
SQLITE_TRIGGERS = [
    "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END",
    "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END",
    "CREATE TRIGGER ledger_transactions_no_delete BEFORE DELETE ON ledger_transactions "
    "BEGIN SELECT RAISE(ABORT, 'ledger transactions are never removed'); END",
    "CREATE TRIGGER ledger_transactions_frozen BEFORE UPDATE ON ledger_transactions "
    "WHEN OLD.status <> 'pending' "
    "BEGIN SELECT RAISE(ABORT, 'a posted or voided ledger transaction can never change'); END",
]


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(200), nullable=False),
        sa.Column("owner_kind", sa.String(40), nullable=True),
        sa.Column("owner_id", sa.String(64), nullable=True),
        sa.Column("normal_side", _enum("normal_side", "debit", "credit"), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("mode", _enum("mode", "single", "sliced", "append_only"), nullable=False),
        sa.Column("slices", sa.SmallInteger(), nullable=False),
        sa.Column("status", _enum("status", "open", "closed"), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("closed_at", TIME, nullable=True),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_ledger_accounts_currency_code")),
        sa.CheckConstraint("slices >= 1 AND slices <= 256", name=op.f("ck_ledger_accounts_slice_count")),
        sa.CheckConstraint("mode = 'sliced' OR slices = 1", name=op.f("ck_ledger_accounts_slices_only_when_sliced")),
        sa.CheckConstraint(
            "mode <> 'append_only' OR allow_negative",
            name=op.f("ck_ledger_accounts_append_only_may_go_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
        sa.UniqueConstraint("code", name=op.f("uq_ledger_accounts_code")),
    )
    op.create_index("ix_ledger_accounts_owner", "ledger_accounts", ["owner_kind", "owner_id"])

    op.create_table(
        "ledger_balances",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("slice", sa.SmallInteger(), nullable=False),
        sa.Column("normal_side", _enum("normal_side", "debit", "credit"), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        *_counters(),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name=op.f("ck_ledger_balances_counters_not_negative"),
        ),
        sa.CheckConstraint(
            "allow_negative"
            " OR (normal_side = 'credit' AND credits_posted - debits_posted - debits_pending >= 0)"
            " OR (normal_side = 'debit' AND debits_posted - credits_posted - credits_pending >= 0)",
            name=op.f("ck_ledger_balances_no_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"],
            name=op.f("fk_ledger_balances_account_id_ledger_accounts"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_balances")),
        sa.UniqueConstraint("account_id", "slice", name=op.f("uq_ledger_balances_account_id_slice")),
        postgresql_with={"fillfactor": 50},
    )

    op.create_table(
        "ledger_balance_deltas",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        *_counters(),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"],
            name=op.f("fk_ledger_balance_deltas_account_id_ledger_accounts"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_balance_deltas")),
    )
    op.create_index(op.f("ix_ledger_balance_deltas_account_id"), "ledger_balance_deltas", ["account_id"])

    op.create_table(
        "ledger_transactions",
        sa.Column("id", ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", _enum("status", "pending", "posted", "voided"), nullable=False),
        sa.Column("is_hold", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("reverses_id", ID, nullable=True),
        sa.Column("pending_id", ID, nullable=True),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("resolved_at", TIME, nullable=True),
        sa.CheckConstraint("is_hold OR status = 'posted'", name=op.f("ck_ledger_transactions_only_holds_change_status")),
        sa.CheckConstraint("is_hold = (expires_at IS NOT NULL)", name=op.f("ck_ledger_transactions_holds_expire")),
        sa.CheckConstraint(
            "NOT (is_hold AND pending_id IS NOT NULL)", name=op.f("ck_ledger_transactions_capture_is_not_a_hold")
        ),
        sa.CheckConstraint(
            "NOT (reverses_id IS NOT NULL AND pending_id IS NOT NULL)", name=op.f("ck_ledger_transactions_one_link")
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"], ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"), ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"], ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_pending_id_ledger_transactions"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_ledger_transactions_public_id")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transactions_idempotency_key")),
    )
    op.create_index(
        "ix_ledger_transactions_open_holds", "ledger_transactions", ["expires_at"],
        postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(op.f("ix_ledger_transactions_reference"), "ledger_transactions", ["reference"])
    op.create_index(op.f("ix_ledger_transactions_reverses_id"), "ledger_transactions", ["reverses_id"])
    op.create_index(op.f("ix_ledger_transactions_pending_id"), "ledger_transactions", ["pending_id"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", ID, nullable=False),
        sa.Column("transaction_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("slice", sa.SmallInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("is_hold", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_ledger_entries_amount_not_zero")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_ledger_entries_currency_code")),
        sa.ForeignKeyConstraint(
            ["transaction_id"], ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"), ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_ledger_accounts"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(op.f("ix_ledger_entries_transaction_id"), "ledger_entries", ["transaction_id"])
    op.create_index(
        "ix_ledger_entries_account_time", "ledger_entries", ["account_id", "created_at", "transaction_id"],
        postgresql_include=["amount", "is_hold"],
    )

    op.create_table(
        "ledger_snapshots",
        sa.Column("id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("as_of", TIME, nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("entry_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"],
            name=op.f("fk_ledger_snapshots_account_id_ledger_accounts"), ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_snapshots")),
        sa.UniqueConstraint("account_id", "as_of", name=op.f("uq_ledger_snapshots_account_id_as_of")),
    )

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in PG_FUNCTIONS + PG_TRIGGERS:
            op.execute(statement)
    elif dialect == "sqlite":
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for trigger, table in (
            ("ledger_transactions_balanced", "ledger_transactions"),
            ("ledger_entries_balanced", "ledger_entries"),
            ("ledger_transactions_no_truncate", "ledger_transactions"),
            ("ledger_transactions_guard", "ledger_transactions"),
            ("ledger_entries_no_truncate", "ledger_entries"),
            ("ledger_entries_immutable", "ledger_entries"),
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for function in ("ledger_check_balanced", "ledger_transactions_guard", "ledger_refuse_change"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    elif dialect == "sqlite":
        for trigger in ("ledger_transactions_frozen", "ledger_transactions_no_delete",
                        "ledger_entries_no_delete", "ledger_entries_no_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("ledger_snapshots")
    op.drop_index("ix_ledger_entries_account_time", table_name="ledger_entries")
    op.drop_index(op.f("ix_ledger_entries_transaction_id"), table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index(op.f("ix_ledger_transactions_pending_id"), table_name="ledger_transactions")
    op.drop_index(op.f("ix_ledger_transactions_reverses_id"), table_name="ledger_transactions")
    op.drop_index(op.f("ix_ledger_transactions_reference"), table_name="ledger_transactions")
    op.drop_index("ix_ledger_transactions_open_holds", table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
    op.drop_index(op.f("ix_ledger_balance_deltas_account_id"), table_name="ledger_balance_deltas")
    op.drop_table("ledger_balance_deltas")
    op.drop_table("ledger_balances")
    op.drop_index("ix_ledger_accounts_owner", table_name="ledger_accounts")
    op.drop_table("ledger_accounts")
