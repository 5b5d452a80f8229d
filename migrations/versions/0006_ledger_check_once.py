"""ledger: check a transaction's balance once at COMMIT, not once per entry written with it

Revision ID: 0006_ledger_check_once
Revises: 0005_cards

The entries trigger exists to catch an entry added later to a transaction that was committed
before. An entry written in the same database transaction as its ledger transaction needs no check
of its own: the transaction's trigger re-checks all its entries at COMMIT. Skipping those turns a
transaction of N entries from N+1 checks of N entries each into one.
"""
from alembic import op

revision = "0006_ledger_check_once"
down_revision = "0005_cards"
branch_labels = None
depends_on = None

NEEDS_CHECK = """
CREATE FUNCTION ledger_entry_needs_check(txn bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
    -- The ledger transaction was inserted by this very database transaction (not a savepoint, whose
    -- id differs, so then the entry is checked too, which is only slower).
    SELECT NOT EXISTS (
        SELECT 1 FROM ledger_transactions t WHERE t.id = txn AND t.xmin = pg_current_xact_id()::xid
    )
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NEEDS_CHECK)
    op.execute("DROP TRIGGER ledger_entries_balanced ON ledger_entries")
    op.execute("CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
               "WHEN (ledger_entry_needs_check(NEW.transaction_id)) EXECUTE FUNCTION ledger_check_balanced()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER ledger_entries_balanced ON ledger_entries")
    op.execute("CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries "
               "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()")
    op.execute("DROP FUNCTION ledger_entry_needs_check(bigint)")
