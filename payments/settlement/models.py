"""Settlement statements: per merchant and business day, what its payments and refunds came to."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, enum_type, utcnow
from merchants.models import Merchant


class SettlementStatus(str, enum.Enum):
    # The net was positive: it moved from the merchant payable to payouts in transit, and a payout exists.
    SETTLED = "settled"
    # The net was zero or negative: nothing to pay; it is carried into the merchant's next settlement.
    CARRIED_FORWARD = "carried_forward"


class Settlement(Base):
    """One merchant's statement for one business day (Asia/Shanghai).

    net = charged + union_subsidy - refunded - union_refunded - fee + carried_in
    """

    __tablename__ = "settlements"
    __table_args__ = (
        UniqueConstraint("merchant_id", "business_date", name="uq_settlements_merchant_day"),
        CheckConstraint("payments_count >= 0 AND refunds_count >= 0 AND fee >= 0", name="counts_not_negative"),
        CheckConstraint("net = charged + union_subsidy - refunded - union_refunded - fee + carried_in",
                        name="net_adds_up"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"), index=True)
    business_date: Mapped[dt.date] = mapped_column(Date, index=True)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    payments_count: Mapped[int] = mapped_column(default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # list prices of the payments
    discount: Mapped[int] = mapped_column(BigInteger, default=0)  # all discounts given
    charged: Mapped[int] = mapped_column(BigInteger, default=0)  # what members' cards paid
    union_subsidy: Mapped[int] = mapped_column(BigInteger, default=0)  # the union's share of discounts
    refunds_count: Mapped[int] = mapped_column(default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)  # back to members' cards
    union_refunded: Mapped[int] = mapped_column(BigInteger, default=0)  # subsidy back to programs
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    # Earlier negative nets (negative) and failed payouts returned to the payable (positive).
    carried_in: Mapped[int] = mapped_column(BigInteger, default=0)
    net: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[SettlementStatus] = mapped_column(enum_type(SettlementStatus, "settlement_status"))
    # The settlement that took this one's negative net in (a carried-forward one only).
    carried_into_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id", ondelete="RESTRICT"))
    transaction_id: Mapped[str | None] = mapped_column(String(32))  # None when no money moved
    payout_due_on: Mapped[dt.date] = mapped_column(Date)  # business date + T+N
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(lazy="joined")
