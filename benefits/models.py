"""The 普惠 offer catalog: offers (each edit of a published one is a new version), their budgets, and what
each member has used of them."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow
from merchants.models import Merchant, MerchantCategory


class OfferCategory(str, enum.Enum):
    """The 普惠 families an offer belongs to."""

    CULTURE = "culture"
    LEGAL = "legal"
    HEALTH = "health"
    SAFETY = "safety"
    ENTERTAINMENT = "entertainment"
    EVERYDAY = "everyday"


# The family a merchant's trade falls in, when an offer names a family rather than a merchant.
FAMILY_OF_MERCHANT_CATEGORY: dict[MerchantCategory, OfferCategory] = {
    MerchantCategory.DINING: OfferCategory.EVERYDAY,
    MerchantCategory.SUPERMARKET: OfferCategory.EVERYDAY,
    MerchantCategory.PHARMACY: OfferCategory.HEALTH,
    MerchantCategory.MEDICAL: OfferCategory.HEALTH,
    MerchantCategory.CULTURE_SPORT: OfferCategory.CULTURE,
    MerchantCategory.LEGAL: OfferCategory.LEGAL,
    MerchantCategory.EDUCATION: OfferCategory.CULTURE,
    MerchantCategory.TRAVEL: OfferCategory.ENTERTAINMENT,
    MerchantCategory.OTHER: OfferCategory.EVERYDAY,
}


class OfferKind(str, enum.Enum):
    PERCENT_OFF = "percent_off"  # value in basis points, capped by max_discount
    AMOUNT_OFF = "amount_off"  # value in fen off a spend of at least min_spend
    FIXED_PRICE = "fixed_price"  # the member pays value (fen) whatever the list price
    ENTITLEMENT = "entitlement"  # a service free (value 0) or at a set price, counted per member


class OfferFunding(str, enum.Enum):
    MERCHANT = "merchant"  # the merchant bears the discount
    UNION = "union"  # the program budget pays the merchant the discount
    SPLIT = "split"  # union_share_bp of the discount from the program, the rest by the merchant


class LimitPeriod(str, enum.Enum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"
    EVER = "ever"


class OfferStatus(str, enum.Enum):
    DRAFT = "draft"  # being written; a merchant's draft is proposed to the union
    PROPOSED = "proposed"  # a merchant's offer waiting for the union
    PUBLISHED = "published"  # applies at checkout
    WITHDRAWN = "withdrawn"  # taken off; never applies again
    REJECTED = "rejected"  # the union declined a proposal
    SUPERSEDED = "superseded"  # a newer version was published in its place


class Offer(Base):
    """One version of an offer. A published version's terms never change: an edit is a new version
    (same `lineage`), which replaces it when published. Limits and budget count over the lineage."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("value >= 0", name="value_not_negative"),
        CheckConstraint("min_spend >= 0", name="min_spend_not_negative"),
        CheckConstraint("union_share_bp BETWEEN 0 AND 10000", name="union_share_range"),
        CheckConstraint("merchant_id IS NOT NULL OR category IS NOT NULL", name="merchant_or_category"),
        Index("ix_offers_live", "status", "merchant_id"),
        Index("ix_offers_live_category", "status", "category"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The public id of the offer's first version: the offer as members know it, across edits.
    lineage: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id", ondelete="RESTRICT"))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"))
    category: Mapped[OfferCategory | None] = mapped_column(enum_type(OfferCategory, "offer_category"))
    # Narrows a category-wide offer to merchants of one trade.
    merchant_category: Mapped[MerchantCategory | None] = mapped_column(
        enum_type(MerchantCategory, "merchant_category"))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    kind: Mapped[OfferKind] = mapped_column(enum_type(OfferKind, "offer_kind"))
    value: Mapped[int] = mapped_column(BigInteger)
    min_spend: Mapped[int] = mapped_column(BigInteger, default=0)
    max_discount: Mapped[int | None] = mapped_column(BigInteger)
    funding: Mapped[OfferFunding] = mapped_column(enum_type(OfferFunding, "offer_funding"))
    union_share_bp: Mapped[int] = mapped_column(Integer, default=0)
    program_id: Mapped[str | None] = mapped_column(ForeignKey("aid_programs.public_id", ondelete="RESTRICT"))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime | None]
    # ISO weekdays (1 = Monday) and local (Asia/Shanghai) hours "HH:MM"-"HH:MM"; None for always.
    weekdays: Mapped[list | None] = mapped_column(JSONType)
    hours_from: Mapped[str | None] = mapped_column(String(5))
    hours_to: Mapped[str | None] = mapped_column(String(5))
    limit_count: Mapped[int | None] = mapped_column(Integer)
    limit_amount: Mapped[int | None] = mapped_column(BigInteger)  # of discount, fen
    limit_period: Mapped[LimitPeriod | None] = mapped_column(enum_type(LimitPeriod, "limit_period"))
    budget_amount: Mapped[int | None] = mapped_column(BigInteger)  # of discount over the lineage, fen
    hardship_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Public ids of the unions whose members (and their subtrees' members) it is for; None for all.
    union_ids: Mapped[list | None] = mapped_column(JSONType)
    stackable: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    status: Mapped[OfferStatus] = mapped_column(enum_type(OfferStatus, "offer_status"), default=OfferStatus.DRAFT)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decision_comment: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    proposed_at: Mapped[dt.datetime | None]
    published_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]  # withdrawn, rejected or superseded

    merchant: Mapped[Merchant | None] = relationship(lazy="joined")


class OfferBudget(Base):
    """What an offer's lineage may still give: discount used against its budget, taken with a
    conditional update so concurrent payments never overspend it."""

    __tablename__ = "offer_budgets"
    __table_args__ = (CheckConstraint("used >= 0 AND used <= budget", name="within_budget"),)

    lineage: Mapped[str] = mapped_column(String(32), primary_key=True)
    budget: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class OfferUsage(Base):
    """How often, and for how much discount, one member used an offer lineage in one period
    ("d:2026-11-25", "m:2026-11", "y:2026" or "ever", Asia/Shanghai days). Keyed to the member, not the
    card, so a replaced card does not reset it."""

    __tablename__ = "offer_usage"
    __table_args__ = (CheckConstraint("count >= 0 AND amount >= 0", name="not_negative"),)

    lineage: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
