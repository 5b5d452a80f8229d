"""Card payments at merchants, the purses and offers each drew on, and their refunds."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from benefits.models import Offer
from cards.models import Card
from core.db import BigIntPK, Base, JSONType, enum_type, utcnow
from merchants.models import Merchant, Store


class PaymentMethod(str, enum.Enum):
    PAYMENT_CODE = "payment_code"  # the cashier scanned the member's code
    PIN = "pin"  # the member scanned the store's QR code and confirmed with the PIN


class PaymentStatus(str, enum.Enum):
    COMPLETED = "completed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class Payment(Base):
    """One payment at a store: list amount, discount, what the card was charged, and who funds what."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("created_by_id", "idempotency_key", name="uq_payments_idempotency"),
        CheckConstraint("discount >= 0 AND charged >= 0 AND charged + discount = amount", name="amounts_add_up"),
        CheckConstraint("union_share >= 0 AND union_share <= discount", name="union_share_within_discount"),
        CheckConstraint("refunded >= 0 AND refunded <= charged", name="refunds_within_charged"),
        CheckConstraint("union_refunded >= 0 AND union_refunded <= union_share", name="union_back_within_share"),
        Index("ix_payments_merchant_created", "merchant_id", "created_at"),
        Index("ix_payments_member_created", "member_id", "created_at"),
        # For figures by day (the union console's refresh): rows arrive in time order, so a BRIN index is tiny
        # and costs the payment path next to nothing (a plain index elsewhere).
        Index("ix_payments_created_at", "created_at", postgresql_using="brin"),
        # Settlement looks for what no settlement has counted yet; the rest of the history stays out of the way.
        Index("ix_payments_unsettled", "merchant_id", "created_at", postgresql_where=text("settlement_id IS NULL"),
              sqlite_where=text("settlement_id IS NULL")),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id", ondelete="RESTRICT"))
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"))
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    method: Mapped[PaymentMethod] = mapped_column(enum_type(PaymentMethod, "payment_method"))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    amount: Mapped[int] = mapped_column(BigInteger)  # the list price
    discount: Mapped[int] = mapped_column(BigInteger)
    charged: Mapped[int] = mapped_column(BigInteger)  # what the card paid
    union_share: Mapped[int] = mapped_column(BigInteger, default=0)  # of the discount, paid from the program
    merchant_share: Mapped[int] = mapped_column(BigInteger, default=0)  # of the discount, borne by the merchant
    program_id: Mapped[str | None] = mapped_column(String(32))
    offer_id: Mapped[str | None] = mapped_column(String(32))  # the offer version that gave the most
    status: Mapped[PaymentStatus] = mapped_column(enum_type(PaymentStatus, "payment_status"),
                                                  default=PaymentStatus.COMPLETED)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    union_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_id: Mapped[str | None] = mapped_column(String(32))  # None when nothing moved (a free service)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    # Why each published offer that could have applied did not (for the receipt and support).
    pricing_notes: Mapped[list | None] = mapped_column(JSONType)
    # The settlement that counted it: one, once (None until its business day is settled).
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    store: Mapped[Store] = relationship()
    merchant: Mapped[Merchant] = relationship()
    card: Mapped[Card] = relationship()
    purses: Mapped[list["PaymentPurse"]] = relationship(order_by="PaymentPurse.position", lazy="selectin")
    offers: Mapped[list["PaymentOffer"]] = relationship(order_by="PaymentOffer.id", lazy="selectin")
    refunds: Mapped[list["Refund"]] = relationship(order_by="Refund.id", lazy="selectin",
                                                   back_populates="payment")


class PaymentPurse(Base):
    """What one purse of the card paid towards a payment, and how much of it went back."""

    __tablename__ = "payment_purses"
    __table_args__ = (CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunds_within_amount"),)

    id: Mapped[BigIntPK]
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)  # the order it was drawn on
    account_code: Mapped[str] = mapped_column(String(120))
    purse_kind: Mapped[str] = mapped_column(String(12))  # general | restricted
    program_id: Mapped[str | None] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)


class PaymentOffer(Base):
    """An offer applied to a payment, and the discount it gave (for usage figures and refunds)."""

    __tablename__ = "payment_offers"
    __table_args__ = (Index("ix_payment_offers_offer", "offer_id", "payment_id"),)

    id: Mapped[BigIntPK]
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id", ondelete="RESTRICT"))
    lineage: Mapped[str] = mapped_column(String(32))
    discount: Mapped[int] = mapped_column(BigInteger)
    union_share: Mapped[int] = mapped_column(BigInteger, default=0)
    program_id: Mapped[str | None] = mapped_column(String(32))
    # The member-usage periods it counted in, so a refund can give them back.
    usage_keys: Mapped[list | None] = mapped_column(JSONType)

    offer: Mapped[Offer] = relationship(lazy="joined")

    @property
    def offer_public_id(self) -> str:
        return self.offer.public_id


class Refund(Base):
    """Money given back on a payment: to the purses it came from, the subsidy to the program."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("created_by_id", "idempotency_key", name="uq_refunds_idempotency"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_refunds_unsettled", "created_at", postgresql_where=text("settlement_id IS NULL"),
              sqlite_where=text("settlement_id IS NULL")),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # back to the card (or the program, for expired aid)
    union_back: Mapped[int] = mapped_column(BigInteger, default=0)  # subsidy back to the program budget
    reason: Mapped[str] = mapped_column(String(200), default="")
    # Where the money went: [{"account", "amount", "purse_kind", "program_id"}].
    legs: Mapped[list] = mapped_column(JSONType)
    transaction_id: Mapped[str] = mapped_column(String(32))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    payment: Mapped[Payment] = relationship(back_populates="refunds")
