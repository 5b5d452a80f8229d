"""A member's top-up: the PaymentIntent Stripe holds for it, and what became of the money."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cards.models import Card
from core.db import Base, BigIntPK, enum_type, utcnow
from members.models import Member


class TopUpStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    # A payment attempt failed (the member may retry on the same PaymentIntent), or Stripe took the
    # money but it could not be credited (then `refund_due`).
    FAILED = "failed"
    CANCELED = "canceled"


class TopUp(Base):
    """Money a member pays in through Stripe for their card's general purse."""

    __tablename__ = "top_ups"
    __table_args__ = (
        CheckConstraint("amount > 0", name="positive_amount"),
        CheckConstraint("(status = 'succeeded') = (transaction_id IS NOT NULL)", name="credited_once_succeeded"),
        CheckConstraint("NOT (refund_due AND status <> 'failed')", name="refund_due_is_failed"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"), index=True)
    # The card the member topped up, and the card credited: its successor if it was replaced meanwhile.
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"), index=True)
    credited_card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[TopUpStatus] = mapped_column(enum_type(TopUpStatus, "top_up_status"), default=TopUpStatus.PENDING)
    payment_intent_id: Mapped[str] = mapped_column(String(255), unique=True)
    # The ledger transaction (txn_...) that credited the purse.
    transaction_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    # Stripe took the money but the platform could not credit it: finance refunds it through Stripe.
    refund_due: Mapped[bool] = mapped_column(default=False)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    member: Mapped[Member] = relationship()
    card: Mapped[Card] = relationship(foreign_keys=[card_id])
    credited_card: Mapped[Card | None] = relationship(foreign_keys=[credited_card_id])
