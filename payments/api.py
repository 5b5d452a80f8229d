"""JSON endpoints of the payments domain: the ledger's invariant check and trial balance."""

from __future__ import annotations

from core.api import Blueprint
from core.db import db
from core.models import Role
from payments import ledger
from payments import schemas as s

blp = Blueprint("payments_api", __name__, url_prefix="/api/v1",
                description="The double-entry ledger: invariant check and trial balance")
LEDGER_READERS = (Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR)


@blp.route("/ledger/verify", methods=["GET"])
@blp.auth(*LEDGER_READERS)
@blp.response(200, s.VerifyReportSchema)
def verify_ledger():
    """Check every invariant of the books: balanced transactions, true caches, no forbidden negative."""
    return ledger.verify(db.session)


@blp.route("/ledger/trial-balance", methods=["GET"])
@blp.auth(*LEDGER_READERS)
@blp.response(200, s.TrialBalanceSchema)
def trial_balance():
    """Return posted balances per account group and currency; each currency totals zero."""
    tb = ledger.trial_balance(db.session)
    return {
        "data": [{"group": r.group, "currency": r.currency, "accounts": r.accounts, "debits": r.debits,
                  "credits": r.credits, "balance": r.balance} for r in tb.rows],
        "totals": [{"currency": cur, "debits": t["debits"], "credits": t["credits"],
                    "balance": t["debits"] - t["credits"]} for cur, t in sorted(tb.totals.items())],
        "balanced": tb.balanced,
    }
