"""Merchant applications and their review, merchants, agreements, stores and licence documents."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow

class MerchantCategory(str, enum.Enum):
    DINING = "dining"
    SUPERMARKET = "supermarket"
    PHARMACY = "pharmacy"
    MEDICAL = "medical"
    CULTURE_SPORT = "culture_sport"
    LEGAL = "legal"
    EDUCATION = "education"
    TRAVEL = "travel"
    OTHER = "other"


class ApplicationStatus(str, enum.Enum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"
    RESUBMITTED = "resubmitted"


class SettlementMethod(str, enum.Enum):
    BANK = "bank"
    STRIPE = "stripe"


class MerchantApplication(Base):
    """A business's application to become a partner merchant (特约合作单位); a draft may be partial."""

    __tablename__ = "merchant_applications"
    __table_args__ = (Index("ix_merchant_applications_status_submitted", "status", "submitted_at"),)

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    status: Mapped[ApplicationStatus] = mapped_column(enum_type(ApplicationStatus, "application_status"),
                                                      default=ApplicationStatus.DRAFT)
    name: Mapped[str] = mapped_column(String(100))
    uscc: Mapped[str | None] = mapped_column(String(18), index=True)
    legal_representative: Mapped[str | None] = mapped_column(String(50))
    contact_phone_enc: Mapped[str | None] = mapped_column(Text)
    contact_phone_masked: Mapped[str | None] = mapped_column(String(11))
    category: Mapped[MerchantCategory | None] = mapped_column(enum_type(MerchantCategory, "merchant_category"))
    region: Mapped[str | None] = mapped_column(String(6), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    # Proposed stores and offers, as the applicant typed them; stores become Store rows on approval.
    stores: Mapped[list] = mapped_column(JSONType, default=list)
    proposed_offers: Mapped[list] = mapped_column(JSONType, default=list)
    settlement_method: Mapped[SettlementMethod | None] = mapped_column(
        enum_type(SettlementMethod, "settlement_method"))
    bank_name: Mapped[str | None] = mapped_column(String(100))
    bank_account_name: Mapped[str | None] = mapped_column(String(100))
    bank_account_enc: Mapped[str | None] = mapped_column(Text)
    bank_account_masked: Mapped[str | None] = mapped_column(String(40))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[dt.datetime | None]
    decided_at: Mapped[dt.datetime | None]

    comments: Mapped[list["ApplicationComment"]] = relationship(order_by="ApplicationComment.id", lazy="selectin")
    documents: Mapped[list["ApplicationDocument"]] = relationship(order_by="ApplicationDocument.id",
                                                                  lazy="selectin")
    applicant = relationship("User", foreign_keys=[applicant_id], lazy="joined")
    merchant: Mapped["Merchant | None"] = relationship(lazy="joined")


class ApplicationComment(Base):
    """A note between reviewer and applicant, or the comment of a review decision."""

    __tablename__ = "merchant_application_comments"

    id: Mapped[BigIntPK]
    application_id: Mapped[int] = mapped_column(ForeignKey("merchant_applications.id", ondelete="RESTRICT"),
                                                index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    action: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    author = relationship("User", lazy="joined")


class ApplicationDocument(Base):
    """An uploaded licence, stored outside the web root under a random name."""

    __tablename__ = "merchant_application_documents"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("merchant_applications.id", ondelete="RESTRICT"),
                                                index=True)
    kind: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    stored_name: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MerchantStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Merchant(Base):
    """A signed partner merchant."""

    __tablename__ = "merchants"
    __table_args__ = (
        # One USCC, one live merchant: a terminated one no longer counts.
        Index("uq_merchants_live_uscc", "uscc", unique=True,
              postgresql_where=text("status <> 'terminated'"), sqlite_where=text("status <> 'terminated'")),
        Index("ix_merchants_directory", "status", "category", "region"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    uscc: Mapped[str] = mapped_column(String(18))
    legal_representative: Mapped[str] = mapped_column(String(50))
    contact_phone_enc: Mapped[str] = mapped_column(Text)
    contact_phone_masked: Mapped[str] = mapped_column(String(11))
    category: Mapped[MerchantCategory] = mapped_column(enum_type(MerchantCategory, "merchant_category"))
    region: Mapped[str] = mapped_column(String(6))
    address: Mapped[str] = mapped_column(String(200))
    status: Mapped[MerchantStatus] = mapped_column(enum_type(MerchantStatus, "merchant_status"),
                                                   default=MerchantStatus.ACTIVE)
    settlement_method: Mapped[SettlementMethod] = mapped_column(enum_type(SettlementMethod, "settlement_method"))
    bank_name: Mapped[str | None] = mapped_column(String(100))
    bank_account_name: Mapped[str | None] = mapped_column(String(100))
    bank_account_enc: Mapped[str | None] = mapped_column(Text)
    bank_account_masked: Mapped[str | None] = mapped_column(String(40))
    stripe_account_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    stripe_status: Mapped[str | None] = mapped_column(String(20))
    # When Stripe said so: events arrive in any order, and an older one must not win.
    stripe_status_at: Mapped[dt.datetime | None]
    payable_account: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    status_reason: Mapped[str | None] = mapped_column(String(500))

    stores: Mapped[list["Store"]] = relationship(back_populates="merchant", order_by="Store.id", lazy="selectin")
    agreements: Mapped[list["Agreement"]] = relationship(back_populates="merchant", order_by="Agreement.id",
                                                         lazy="selectin")

    def accepts_cards(self) -> bool:
        """Tell whether the merchant may take card payments now."""
        return self.status == MerchantStatus.ACTIVE


class Agreement(Base):
    """The partner agreement a merchant accepted: its version and term."""

    __tablename__ = "merchant_agreements"

    id: Mapped[BigIntPK]
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"), index=True)
    version: Mapped[str] = mapped_column(String(20))
    accepted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    accepted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    term_start: Mapped[dt.date] = mapped_column(Date)
    term_end: Mapped[dt.date] = mapped_column(Date, index=True)

    merchant: Mapped[Merchant] = relationship(back_populates="agreements", lazy="joined")


class StoreStatus(str, enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Store(Base):
    """A place where a merchant takes cards; its static QR code leads to its pay page."""

    __tablename__ = "stores"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200))
    category: Mapped[MerchantCategory | None] = mapped_column(enum_type(MerchantCategory, "merchant_category"))
    opening_hours: Mapped[str] = mapped_column(String(100), default="")
    latitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    status: Mapped[StoreStatus] = mapped_column(enum_type(StoreStatus, "store_status"), default=StoreStatus.OPEN)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="stores", lazy="joined")

    @property
    def effective_category(self) -> MerchantCategory:
        """Return the store's own category, or its merchant's."""
        return self.category or self.merchant.category

    def accepts_cards(self) -> bool:
        """Tell whether the store's QR code works now."""
        return self.status == StoreStatus.OPEN and self.merchant.accepts_cards()
