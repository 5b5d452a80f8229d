"""The platform's own ledger accounts that settlement, payouts and reconciliation share."""

from __future__ import annotations

from sqlalchemy.orm import Session

from payments import ledger

CURRENCY = "CNY"
# The union's bank account: an asset (debit-normal); fundings arrive in it, bank payouts leave it.
BANK = "union:bank"
# Money Stripe holds for the platform: an asset; top-ups arrive in it, Stripe payouts leave it.
CLEARING = "stripe:clearing"
# Settled money owed to merchants and on its way to them: a liability until the payout is paid.
IN_TRANSIT = "payout:in-transit"
# Settlement fees the platform keeps: income (credit-normal).
FEES = "union:fees"
# Reconciliation adjustments approved by finance: the differences explained (either side).
DIFFERENCES = "reconciliation:differences"


def open_platform_accounts(session: Session) -> None:
    """Open the platform accounts that do not exist yet (each is opened once, with the same terms)."""
    ledger.get_or_create_account(session, BANK, normal_side="debit", allow_negative=True)
    ledger.get_or_create_account(session, CLEARING, normal_side="debit", allow_negative=True)
    ledger.get_or_create_account(session, IN_TRANSIT, normal_side="credit")
    ledger.get_or_create_account(session, FEES, normal_side="credit")
    ledger.get_or_create_account(session, DIFFERENCES, normal_side="debit", allow_negative=True)
