"""Accounts, their cached balances, transactions and their immutable entries."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    cast,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow

def total(expression):
    """Sum an integer expression as BIGINT, 0 over no rows (PostgreSQL would answer NUMERIC)."""
    return cast(func.coalesce(func.sum(expression), 0), BigInteger)


class NormalSide(str, enum.Enum):
    """The side on which an account's balance grows: debit for assets, credit for what is owed."""

    DEBIT = "debit"
    CREDIT = "credit"


class AccountStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class BalanceMode(str, enum.Enum):
    """How an account keeps its cached balance (see README: hot accounts)."""

    SINGLE = "single"  # one balance row, locked by every debit
    SLICED = "sliced"  # N balance rows locked independently; the balance is their sum
    APPEND_ONLY = "append_only"  # no balance row lock: postings append deltas, a job folds them


class TransactionStatus(str, enum.Enum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


MAX_SLICES = 256


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint(f"slices >= 1 AND slices <= {MAX_SLICES}", name="slice_count"),
        CheckConstraint("mode = 'sliced' OR slices = 1", name="slices_only_when_sliced"),
        # Nothing locks an append-only balance, so nothing could stop it going negative.
        CheckConstraint("mode <> 'append_only' OR allow_negative", name="append_only_may_go_negative"),
        Index("ix_ledger_accounts_owner", "owner_kind", "owner_id"),
    )

    id: Mapped[BigIntPK]
    code: Mapped[str] = mapped_column(String(200), unique=True)
    owner_kind: Mapped[str | None] = mapped_column(String(40))
    owner_id: Mapped[str | None] = mapped_column(String(64))
    normal_side: Mapped[NormalSide] = mapped_column(enum_type(NormalSide, "normal_side"))
    currency: Mapped[str] = mapped_column(String(3))
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    mode: Mapped[BalanceMode] = mapped_column(enum_type(BalanceMode, "mode"), default=BalanceMode.SINGLE)
    slices: Mapped[int] = mapped_column(SmallInteger, default=1)
    status: Mapped[AccountStatus] = mapped_column(
        enum_type(AccountStatus, "status"), default=AccountStatus.OPEN
    )
    meta: Mapped[dict] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"<Account {self.code} {self.currency} {self.mode.value}>"


class AccountBalance(Base):
    """The cached totals of one account (or one slice of a sliced account)."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        UniqueConstraint("account_id", "slice"),
        CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name="counters_not_negative",
        ),
        # The last line of defence: a no-negative balance can never be stored below zero.
        CheckConstraint(
            "allow_negative"
            " OR (normal_side = 'credit' AND credits_posted - debits_posted - debits_pending >= 0)"
            " OR (normal_side = 'debit' AND debits_posted - credits_posted - credits_pending >= 0)",
            name="no_negative",
        ),
        # Every posting rewrites these rows: leave room on each page so the new row versions
        # stay on it (HOT updates, no index churn), which matters most for hot accounts.
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[BigIntPK]
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    slice: Mapped[int] = mapped_column(SmallInteger, default=0)
    # Copied from the account (they never change) so the no_negative check needs no join.
    normal_side: Mapped[NormalSide] = mapped_column(enum_type(NormalSide, "normal_side"))
    allow_negative: Mapped[bool] = mapped_column(Boolean)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)

    account: Mapped[Account] = relationship()


class BalanceDelta(Base):
    """A change to an append-only account's totals, folded into its balance row by a job."""

    __tablename__ = "ledger_balance_deltas"

    id: Mapped[BigIntPK]
    account_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_accounts.id", ondelete="RESTRICT"), index=True
    )
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)


class Transaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("is_hold OR status = 'posted'", name="only_holds_change_status"),
        CheckConstraint("is_hold = (expires_at IS NOT NULL)", name="holds_expire"),
        CheckConstraint("NOT (is_hold AND pending_id IS NOT NULL)", name="capture_is_not_a_hold"),
        CheckConstraint("NOT (reverses_id IS NOT NULL AND pending_id IS NOT NULL)", name="one_link"),
        Index(
            "ix_ledger_transactions_open_holds",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[TransactionStatus] = mapped_column(enum_type(TransactionStatus, "status"))
    is_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str | None] = mapped_column(String(200), index=True)
    meta: Mapped[dict] = mapped_column("metadata", JSONType, default=dict)
    reverses_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True
    )
    pending_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True
    )
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]

    entries: Mapped[list[Entry]] = relationship(
        back_populates="transaction", order_by="Entry.id", viewonly=True
    )

    def __repr__(self) -> str:
        return f"<Transaction {self.public_id} {self.kind} {self.status.value}>"


class Entry(Base):
    """One signed movement on one account: debits are positive, credits negative."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        # Statements and point-in-time balances walk this index; on PostgreSQL the sums
        # come from it alone.
        Index(
            "ix_ledger_entries_account_time",
            "account_id",
            "created_at",
            "transaction_id",
            postgresql_include=["amount", "is_hold"],
        ),
    )

    id: Mapped[BigIntPK]
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    slice: Mapped[int] = mapped_column(SmallInteger, default=0)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Entries of a hold reserve funds while it is pending and never count as posted.
    is_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    transaction: Mapped[Transaction] = relationship(back_populates="entries")
    account: Mapped[Account] = relationship()


class Snapshot(Base):
    """An account's posted totals over every entry created at or before `as_of`."""

    __tablename__ = "ledger_snapshots"
    __table_args__ = (UniqueConstraint("account_id", "as_of"),)

    id: Mapped[BigIntPK]
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id", ondelete="RESTRICT"))
    as_of: Mapped[dt.datetime]
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    entry_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
