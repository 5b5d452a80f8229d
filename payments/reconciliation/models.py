"""Reconciliations: an external statement (Stripe balance transactions, a bank statement) imported line by
line, matched against the platform's payouts, fundings and top-ups, and each exception resolved.

Lines and internal items are matched in groups: every line and every item of one group are linked (a bank
line paying a whole transfer file, split lines paying one payout), and the group is `matched` when the
lines' amounts add up to what the items say, `mismatched` when they do not. A line no item answers is
`unmatched_external`; an item of the statement's period that no line answers gets a line of its own
(origin `internal`) in state `unmatched_internal`, so every exception is a line with a number.

Nearly every group is one line and one item: that item is kept on the line itself (`payout_id`, ...). Only
the items of bigger groups are rows of `reconciliation_items`, so a statement of a million lines writes a
million rows, not two million.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (BigInteger, CheckConstraint, Date, ForeignKey, ForeignKeyConstraint, Index, Integer, String,
                        UniqueConstraint, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, BigIntType, Base, enum_type, utcnow


class Source(str, enum.Enum):
    STRIPE = "stripe"  # Stripe balance transactions: the platform's Stripe balance (stripe:clearing)
    BANK = "bank"  # the union's bank statement (union:bank)


class ImportMethod(str, enum.Enum):
    FILE = "file"  # an uploaded CSV
    API = "api"  # fetched from Stripe's API for a period


class LineOrigin(str, enum.Enum):
    STATEMENT = "statement"  # a line of the imported statement
    INTERNAL = "internal"  # one of ours that no line answers


class LineState(str, enum.Enum):
    MATCHED = "matched"
    UNMATCHED_INTERNAL = "unmatched_internal"  # ours, no line
    UNMATCHED_EXTERNAL = "unmatched_external"  # theirs, not ours
    MISMATCHED = "mismatched"  # the reference matches, the amount differs


class MatchRule(str, enum.Enum):
    REFERENCE = "reference"
    AMOUNT_DATE = "amount_date"  # no usable reference: same amount, dates within the window


class ResolutionKind(str, enum.Enum):
    NOTE = "note"
    ADJUSTMENT = "adjustment"  # a ledger transaction against reconciliation:differences, approved by four eyes


class ResolutionStatus(str, enum.Enum):
    PENDING = "pending"  # an adjustment waiting for an approver
    RESOLVED = "resolved"  # a note, or an adjustment approved and posted
    REJECTED = "rejected"  # an adjustment turned down: the exception is open again


class Reconciliation(Base):
    """One imported statement and what matching it found."""

    __tablename__ = "reconciliations"
    __table_args__ = (
        # The same file (or the same fetched lines) imported again is the same reconciliation.
        UniqueConstraint("source", "sha256", name="uq_reconciliations_source_sha256"),
        CheckConstraint("period_start <= period_end", name="period_ordered"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    source: Mapped[Source] = mapped_column(enum_type(Source, "reconciliation_source"))
    method: Mapped[ImportMethod] = mapped_column(enum_type(ImportMethod, "reconciliation_method"))
    account: Mapped[str] = mapped_column(String(100))  # the ledger account the statement is of
    filename: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    # The statement's business days (Asia/Shanghai), both included: the file's first and last line, or the
    # period asked of the API.
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    lines_count: Mapped[int] = mapped_column(default=0)  # statement lines (not counting internal ones)
    matched: Mapped[int] = mapped_column(default=0)
    unmatched_internal: Mapped[int] = mapped_column(default=0)
    unmatched_external: Mapped[int] = mapped_column(default=0)
    mismatched: Mapped[int] = mapped_column(default=0)
    resolved: Mapped[int] = mapped_column(default=0)  # exception lines resolved (a note or an approved adjustment)
    # The statement's money, in fen: out of the account, into it, and fees taken (Stripe).
    total_out: Mapped[int] = mapped_column(BigInteger, default=0)
    total_in: Mapped[int] = mapped_column(BigInteger, default=0)
    total_fees: Mapped[int] = mapped_column(BigInteger, default=0)
    imported_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @property
    def exceptions(self) -> int:
        """Return how many lines are not matched."""
        return self.unmatched_internal + self.unmatched_external + self.mismatched


class ReconciliationLine(Base):
    """A statement line, or an item of ours no line answers, with its matching state and resolution.

    `amount` follows the bank statement's sign: positive for money leaving the account, negative for money
    arriving. `fee` is what Stripe took on top (positive leaves the balance); bank lines have none.
    """

    __tablename__ = "reconciliation_lines"
    __table_args__ = (
        # The exceptions tabs page through a small index, whatever the size of the statement.
        Index("ix_reconciliation_lines_exceptions", "reconciliation_id", "state", "line_no",
              postgresql_where=text("state <> 'matched'"), sqlite_where=text("state <> 'matched'")),
        CheckConstraint("line_no > 0", name="line_no_positive"),
        CheckConstraint("(CASE WHEN payout_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN funding_id IS NULL THEN 0 ELSE 1 END)"
                        " + (CASE WHEN top_up_id IS NULL THEN 0 ELSE 1 END) <= 1", name="one_item_at_most"),
        # Which reconciliations an item is in (and matched by): the matcher asks for the items it pairs.
        Index("ix_reconciliation_lines_payout", "payout_id", postgresql_where=text("payout_id IS NOT NULL"),
              sqlite_where=text("payout_id IS NOT NULL")),
        Index("ix_reconciliation_lines_funding", "funding_id", postgresql_where=text("funding_id IS NOT NULL"),
              sqlite_where=text("funding_id IS NOT NULL")),
        Index("ix_reconciliation_lines_top_up", "top_up_id", postgresql_where=text("top_up_id IS NOT NULL"),
              sqlite_where=text("top_up_id IS NOT NULL")),
    )

    reconciliation_id: Mapped[int] = mapped_column(BigIntType, ForeignKey("reconciliations.id", ondelete="RESTRICT"),
                                                   primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin: Mapped[LineOrigin] = mapped_column(enum_type(LineOrigin, "reconciliation_line_origin"))
    value_date: Mapped[dt.date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(String(500))
    external_id: Mapped[str | None] = mapped_column(String(255))  # Stripe's txn_... id
    type: Mapped[str | None] = mapped_column(String(40))  # Stripe's type (charge, transfer, payout, ...)
    state: Mapped[LineState] = mapped_column(enum_type(LineState, "reconciliation_line_state"))
    rule: Mapped[MatchRule | None] = mapped_column(enum_type(MatchRule, "reconciliation_match_rule"))
    # The match group: lines and items sharing it are linked (the smallest line number in it).
    group_no: Mapped[int] = mapped_column(Integer)
    # The group's one item, when the group is this line and one item (else its items are ReconciliationItems).
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id", ondelete="RESTRICT"))
    funding_id: Mapped[int | None] = mapped_column(ForeignKey("program_fundings.id", ondelete="RESTRICT"))
    top_up_id: Mapped[int | None] = mapped_column(ForeignKey("top_ups.id", ondelete="RESTRICT"))
    # What the statement says minus what we say, for the group (exceptions only).
    difference: Mapped[int | None] = mapped_column(BigInteger)


class ReconciliationItem(Base):
    """An item of ours (a payout, a funding, a top-up) in a match group of more than one line or item.

    `amount` is what the statement should show for it, in the lines' sign: a payout sent leaves (+), a
    funding or top-up arrives (-), and one that failed or was never sent should show nothing (0).
    """

    __tablename__ = "reconciliation_items"
    __table_args__ = (
        CheckConstraint("(CASE WHEN payout_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN funding_id IS NULL THEN 0 ELSE 1 END)"
                        " + (CASE WHEN top_up_id IS NULL THEN 0 ELSE 1 END) = 1", name="one_item"),
        Index("ix_reconciliation_items_group", "reconciliation_id", "group_no"),
        Index("ix_reconciliation_items_payout", "payout_id", postgresql_where=text("payout_id IS NOT NULL"),
              sqlite_where=text("payout_id IS NOT NULL")),
        Index("ix_reconciliation_items_funding", "funding_id", postgresql_where=text("funding_id IS NOT NULL"),
              sqlite_where=text("funding_id IS NOT NULL")),
        Index("ix_reconciliation_items_top_up", "top_up_id", postgresql_where=text("top_up_id IS NOT NULL"),
              sqlite_where=text("top_up_id IS NOT NULL")),
    )

    id: Mapped[BigIntPK]
    reconciliation_id: Mapped[int] = mapped_column(ForeignKey("reconciliations.id", ondelete="RESTRICT"))
    group_no: Mapped[int] = mapped_column(Integer)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id", ondelete="RESTRICT"))
    funding_id: Mapped[int | None] = mapped_column(ForeignKey("program_fundings.id", ondelete="RESTRICT"))
    top_up_id: Mapped[int | None] = mapped_column(ForeignKey("top_ups.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Resolution(Base):
    """How finance explained an exception group: a note, or an adjustment of the books.

    An adjustment is a ledger transaction between the statement's account and reconciliation:differences,
    entered by finance and posted when an approver who did not enter it confirms it. A group has at most one
    resolution that is not rejected.
    """

    __tablename__ = "reconciliation_resolutions"
    __table_args__ = (
        ForeignKeyConstraint(["reconciliation_id", "line_no"],
                             ["reconciliation_lines.reconciliation_id", "reconciliation_lines.line_no"],
                             name="fk_reconciliation_resolutions_line", ondelete="RESTRICT"),
        Index("uq_reconciliation_resolutions_group", "reconciliation_id", "group_no", unique=True,
              postgresql_where=text("status <> 'rejected'"), sqlite_where=text("status <> 'rejected'")),
        Index("ix_reconciliation_resolutions_status", "status", "id"),
        CheckConstraint("kind = 'adjustment' OR (status = 'resolved' AND amount IS NULL AND account IS NULL)",
                        name="a_note_is_resolved"),
        CheckConstraint("kind = 'note' OR (amount IS NOT NULL AND amount <> 0 AND account IS NOT NULL)",
                        name="an_adjustment_moves_money"),
        CheckConstraint("lines > 0", name="lines_positive"),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)  # adj_... for an adjustment, res_... a note
    reconciliation_id: Mapped[int] = mapped_column(ForeignKey("reconciliations.id", ondelete="RESTRICT"))
    group_no: Mapped[int] = mapped_column(Integer)
    line_no: Mapped[int] = mapped_column(Integer)  # the line it was entered on
    lines: Mapped[int] = mapped_column(Integer)  # how many exception lines the group has
    kind: Mapped[ResolutionKind] = mapped_column(enum_type(ResolutionKind, "reconciliation_resolution_kind"))
    status: Mapped[ResolutionStatus] = mapped_column(enum_type(ResolutionStatus, "reconciliation_resolution_status"))
    note: Mapped[str] = mapped_column(String(1000))
    account: Mapped[str | None] = mapped_column(String(100))
    # In the statement's sign: positive when the statement shows more money leaving than the books (the
    # account is credited), negative when it shows more arriving (the account is debited).
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_at: Mapped[dt.datetime | None]

    reconciliation: Mapped[Reconciliation] = relationship()
