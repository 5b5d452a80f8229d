"""The values the ledger takes and gives back: legs of a transaction, balances, statement lines."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

# Limits on everything a caller can send (TigerBeetle style: nothing is unbounded).
MAX_AMOUNT = 10**15  # minor units in one entry: ten trillion yuan
MAX_LEGS = 64
MAX_BATCH = 1000
MAX_KEY_LENGTH = 200
MAX_REFERENCE_LENGTH = 200
MAX_METADATA_BYTES = 4096
MAX_HOLD_TIMEOUT = dt.timedelta(days=30)
DEFAULT_HOLD_TIMEOUT = dt.timedelta(minutes=15)
MAX_PAGE = 500
DEFAULT_PAGE = 50


class Side(str, enum.Enum):
    DEBIT = "debit"
    CREDIT = "credit"


@dataclass(frozen=True)
class Leg:
    """One side of a transaction: an amount (positive, minor units) debited or credited to an account."""

    account: str
    side: Side
    amount: int
    currency: str | None = None


def debit(account: str, amount: int, currency: str | None = None) -> Leg:
    """Return a leg that debits `account`."""
    return Leg(account, Side.DEBIT, amount, currency)


def credit(account: str, amount: int, currency: str | None = None) -> Leg:
    """Return a leg that credits `account`."""
    return Leg(account, Side.CREDIT, amount, currency)


@dataclass(frozen=True)
class Transfer:
    """One transaction to post as part of a batch (see `post_many`)."""

    kind: str
    idempotency_key: str
    entries: tuple[Leg, ...] | list[Leg]
    reference: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Balance:
    """An account's balance on its normal side: posted, reserved by holds, and available to spend."""

    account: str
    currency: str
    posted: int
    pending_debits: int
    pending_credits: int
    available: int


@dataclass(frozen=True)
class StatementLine:
    transaction_id: str
    kind: str
    reference: str | None
    created_at: dt.datetime
    amount: int  # signed on the account's normal side: positive grows the balance
    balance: int  # the posted balance right after this line
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatementPage:
    account: str
    currency: str
    lines: list[StatementLine]
    next_cursor: str | None


@dataclass
class VerifyReport:
    ok: bool
    problems: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialBalanceRow:
    """Posted balances of one group of accounts (the code up to its first colon) in one currency."""

    group: str
    currency: str
    accounts: int
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        """Return debits minus credits."""
        return self.debits - self.credits


@dataclass(frozen=True)
class TrialBalance:
    rows: list[TrialBalanceRow]
    totals: dict[str, dict[str, int]]  # currency -> {"debits", "credits"}; equal when the books balance

    @property
    def balanced(self) -> bool:
        """Tell whether debits equal credits in every currency."""
        return all(t["debits"] == t["credits"] for t in self.totals.values())
