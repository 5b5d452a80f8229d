"""The union console's pre-aggregated figures.

Every figure the console shows is read from these tables, which `stats.service.refresh` (a job) fills from the
registry, the cards, the payments and the ledger. A page view never scans the payments.

- `stats_union_days`: what happened on one business day (Asia/Shanghai) in one union's whole subtree:
  members registered, cards issued and activated, card payments and their discounts, refunds.
- `stats_union_months`: per business month and subtree, the cards that paid at least once and the cards that
  were in use at some time in the month (the month's usage rate is the first over the second).
- `stats_union_figures`: each subtree's counts as of the last refresh: members, hardship members, cards by
  status, and the active cards that paid in the last 30 days.
- `stats_program_days`: each aid program's money by business day (the finance report's figures, by day).
- `stats_state`: when the figures were last refreshed, and up to which day they are complete.

A union's row covers its whole subtree, so the figures of any node of the org tree are read by its own key.
Payments, refunds and cards count in the union of the member they belong to.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow

_zero = {"default": 0, "server_default": "0"}


class StatsState(Base):
    """How fresh the figures are."""

    __tablename__ = "stats_state"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    # The last business day the figures cover (the next refresh recomputes it and the day before it).
    through: Mapped[dt.date | None] = mapped_column(Date)
    refreshed_at: Mapped[dt.datetime | None]
    # How long the last refresh took, and how many days it recomputed.
    duration_ms: Mapped[int] = mapped_column(Integer, **_zero)
    days: Mapped[int] = mapped_column(Integer, **_zero)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


DAY_FIGURES = ("members_joined", "cards_issued", "cards_activated", "payments", "amount", "discount", "charged",
               "merchant_share", "union_share", "refunds", "refunded", "union_refunded")


class UnionDay(Base):
    """One business day in one union's subtree. Amounts in fen."""

    __tablename__ = "stats_union_days"

    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, index=True)
    members_joined: Mapped[int] = mapped_column(Integer, **_zero)  # registered on the platform that day
    cards_issued: Mapped[int] = mapped_column(Integer, **_zero)
    cards_activated: Mapped[int] = mapped_column(Integer, **_zero)
    payments: Mapped[int] = mapped_column(Integer, **_zero)
    amount: Mapped[int] = mapped_column(BigInteger, **_zero)  # list prices
    discount: Mapped[int] = mapped_column(BigInteger, **_zero)
    charged: Mapped[int] = mapped_column(BigInteger, **_zero)  # paid by cards
    merchant_share: Mapped[int] = mapped_column(BigInteger, **_zero)  # of the discount, borne by merchants
    union_share: Mapped[int] = mapped_column(BigInteger, **_zero)  # of the discount, paid from programs
    refunds: Mapped[int] = mapped_column(Integer, **_zero)
    refunded: Mapped[int] = mapped_column(BigInteger, **_zero)
    union_refunded: Mapped[int] = mapped_column(BigInteger, **_zero)  # subsidy given back to programs


class UnionMonth(Base):
    """One business month in one union's subtree: the cards used and the cards in use."""

    __tablename__ = "stats_union_months"

    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="CASCADE"), primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)  # its first day
    card_users: Mapped[int] = mapped_column(Integer, **_zero)  # cards with at least one payment in the month
    live_cards: Mapped[int] = mapped_column(Integer, **_zero)  # cards active at some time in the month


NOW_FIGURES = ("members", "hardship_members", "cards_issued", "cards_not_activated", "cards_active", "cards_frozen",
               "cards_lost", "cards_used_30d")


class UnionFigures(Base):
    """One union's subtree now (as of the last refresh)."""

    __tablename__ = "stats_union_figures"

    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="CASCADE"), primary_key=True)
    members: Mapped[int] = mapped_column(Integer, **_zero)  # active real-name members
    hardship_members: Mapped[int] = mapped_column(Integer, **_zero)  # of them, on the hardship register now
    cards_issued: Mapped[int] = mapped_column(Integer, **_zero)  # cards in members' hands: not replaced or cancelled
    cards_not_activated: Mapped[int] = mapped_column(Integer, **_zero)
    cards_active: Mapped[int] = mapped_column(Integer, **_zero)
    cards_frozen: Mapped[int] = mapped_column(Integer, **_zero)
    cards_lost: Mapped[int] = mapped_column(Integer, **_zero)
    cards_used_30d: Mapped[int] = mapped_column(Integer, **_zero)  # active cards that paid in the last 30 days
    computed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


PROGRAM_FIGURES = ("funded", "disbursed", "spent", "subsidised", "expired", "returned", "clawed_back")


class ProgramDay(Base):
    """One aid program's money on one business day, in fen (see payments.reports for each figure)."""

    __tablename__ = "stats_program_days"

    program_id: Mapped[int] = mapped_column(ForeignKey("aid_programs.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True, index=True)
    funded: Mapped[int] = mapped_column(BigInteger, **_zero)
    disbursed: Mapped[int] = mapped_column(BigInteger, **_zero)
    spent: Mapped[int] = mapped_column(BigInteger, **_zero)
    subsidised: Mapped[int] = mapped_column(BigInteger, **_zero)
    expired: Mapped[int] = mapped_column(BigInteger, **_zero)
    returned: Mapped[int] = mapped_column(BigInteger, **_zero)
    clawed_back: Mapped[int] = mapped_column(BigInteger, **_zero)
