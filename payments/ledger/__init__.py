"""The double-entry ledger: every movement of value is one balanced transaction of immutable entries.

It knows accounts, transactions and entries, nothing of cards or merchants, and nothing of Flask.
Every function takes the caller's session and works inside its transaction: it flushes, the
caller commits once.
"""

from payments.ledger.accounts import (
    close_account,
    fold_deltas,
    get_account,
    get_or_create_account,
    open_account,
    open_accounts,
)
from payments.ledger.bulk import Credit, post_credits
from payments.ledger.models import (
    Account,
    AccountStatus,
    BalanceMode,
    Entry,
    NormalSide,
    Transaction,
    TransactionStatus,
)
from payments.ledger.posting import (
    hold,
    post,
    post_many,
    post_pending,
    reverse,
    void_expired_holds,
    void_pending,
)
from payments.ledger.reads import balance, balance_as_of, balances, statement, take_snapshots, trial_balance
from payments.ledger.types import (
    Balance,
    Leg,
    Side,
    StatementLine,
    StatementPage,
    Transfer,
    TrialBalance,
    TrialBalanceRow,
    VerifyReport,
    credit,
    debit,
)
from payments.ledger.verify import verify

__all__ = [
    "Account", "AccountStatus", "Balance", "Credit", "post_credits", "BalanceMode", "Entry", "Leg", "NormalSide", "Side",
    "StatementLine", "StatementPage", "Transaction", "TransactionStatus", "Transfer",
    "TrialBalance", "TrialBalanceRow", "VerifyReport",
    "balance", "balance_as_of", "balances", "close_account", "credit", "debit", "fold_deltas", "get_account",
    "get_or_create_account", "hold", "open_account", "open_accounts", "post", "post_many", "post_pending",
    "reverse", "statement", "take_snapshots", "trial_balance", "verify", "void_expired_holds",
    "void_pending",
]
