"""Payouts of settled money to merchants, and the bank transfer files that carry bank payouts."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, enum_type, utcnow
from merchants.models import Merchant, SettlementMethod


class PayoutStatus(str, enum.Enum):
    PENDING_APPROVAL = "pending_approval"  # above the threshold: a second person must approve it
    READY = "ready"  # to be sent on its due date
    SUBMITTED = "submitted"  # Stripe transfer made, or written into a bank file: in transit
    PAID = "paid"
    FAILED = "failed"  # the money is back on the merchant payable


class ExceptionStatus(str, enum.Enum):
    OPEN = "open"
    RESOLVED = "resolved"


class Payout(Base):
    """Money on its way from the platform to one merchant for one settlement."""

    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_payouts_status_due", "status", "due_on"),
        Index("ix_payouts_merchant_created", "merchant_id", "created_at"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"))
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id", ondelete="RESTRICT"), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    method: Mapped[SettlementMethod] = mapped_column(enum_type(SettlementMethod, "settlement_method"))
    status: Mapped[PayoutStatus] = mapped_column(enum_type(PayoutStatus, "payout_status"))
    due_on: Mapped[dt.date] = mapped_column(Date)
    requires_approval: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    approved_at: Mapped[dt.datetime | None]
    # Stripe: the transfer to the connected account and the payout from it to the merchant's bank.
    stripe_account_id: Mapped[str | None] = mapped_column(String(64))
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stripe_payout_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # A failed Stripe payout leaves the money on the merchant's Stripe balance: the transfer is reversed
    # when finance resolves the exception, before settlement pays the money again.
    stripe_reversal_id: Mapped[str | None] = mapped_column(String(64))
    # Bank: the transfer file that carried it.
    bank_file_id: Mapped[int | None] = mapped_column(ForeignKey("payout_bank_files.id", ondelete="RESTRICT"),
                                                     index=True)
    submitted_at: Mapped[dt.datetime | None]
    paid_at: Mapped[dt.datetime | None]
    failed_at: Mapped[dt.datetime | None]
    # When the provider last said something about it: events arrive in any order, and an older one must not win.
    status_at: Mapped[dt.datetime | None]
    failure_code: Mapped[str | None] = mapped_column(String(100))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    # The last error sending it (Stripe unreachable, account not ready): it stays READY and is tried again.
    last_error: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    paid_transaction_id: Mapped[str | None] = mapped_column(String(32))
    returned_transaction_id: Mapped[str | None] = mapped_column(String(32))
    # A failed payout is an exception for finance to handle; its money joins a later settlement.
    exception_status: Mapped[ExceptionStatus | None] = mapped_column(enum_type(ExceptionStatus, "exception_status"))
    exception_note: Mapped[str | None] = mapped_column(String(1000))
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    resolved_at: Mapped[dt.datetime | None]
    # The settlement that carried the returned money in again (a failed payout only).
    carried_into_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(lazy="joined")
    bank_file: Mapped["BankFile | None"] = relationship(back_populates="payouts")


class BankFile(Base):
    """A bank transfer file of payouts: generated once, downloaded, then answered by the bank."""

    __tablename__ = "payout_bank_files"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    payouts_count: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None]  # when the bank's status file was last imported

    payouts: Mapped[list[Payout]] = relationship(back_populates="bank_file", order_by="Payout.id")
