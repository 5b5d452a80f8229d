"""Aid programs, their fundings, and disbursement batches paying them onto members' cards."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow
from members.models import Union


class ProgramKind(str, enum.Enum):
    HARDSHIP_AID = "hardship_aid"  # 送温暖
    STUDENT_AID = "student_aid"  # 金秋助学
    MEDICAL_AID = "medical_aid"  # 医疗互助
    EMPLOYMENT_SUPPORT = "employment_support"  # 就业创业扶持
    CONSUMPTION_VOUCHER = "consumption_voucher"  # 消费券


class PursePolicy(str, enum.Enum):
    GENERAL = "general"
    RESTRICTED = "restricted"


class ProgramStatus(str, enum.Enum):
    ACTIVE = "active"
    CLOSED = "closed"


class Program(Base):
    """An aid program: a budget in the ledger, the purse its money lands in, and the union that owns it."""

    __tablename__ = "aid_programs"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[ProgramKind] = mapped_column(enum_type(ProgramKind, "program_kind"))
    purse: Mapped[PursePolicy] = mapped_column(enum_type(PursePolicy, "purse_policy"))
    # Merchant categories a restricted purse may be spent at (None for a general purse).
    allowed_categories: Mapped[list | None] = mapped_column(JSONType)
    expires_at: Mapped[dt.datetime | None]
    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"), index=True)
    budget_account: Mapped[str] = mapped_column(String(120), unique=True)
    # The most one line of a batch may pay (fen).
    max_line_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ProgramStatus] = mapped_column(enum_type(ProgramStatus, "program_status"),
                                                  default=ProgramStatus.ACTIVE)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    union: Mapped[Union] = relationship()


class FundingStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Funding(Base):
    """A deposit from the union's bank account into a program's budget: entered by a maker, confirmed
    by an approver who is someone else."""

    __tablename__ = "program_fundings"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("aid_programs.id", ondelete="RESTRICT"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    reference: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[FundingStatus] = mapped_column(enum_type(FundingStatus, "funding_status"),
                                                  default=FundingStatus.PENDING)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_at: Mapped[dt.datetime | None]
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    program: Mapped[Program] = relationship()


class BatchStatus(str, enum.Enum):
    DRAFT = "draft"
    APPROVED = "approved"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Disbursement(Base):
    """A batch of lines paying a program's money onto cards: validated, previewed, approved by four
    eyes, then run in committed chunks, each line exactly once."""

    __tablename__ = "disbursements"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("aid_programs.id", ondelete="RESTRICT"), index=True)
    source: Mapped[str] = mapped_column(String(10))  # "csv" or "rule"
    rule: Mapped[dict | None] = mapped_column(JSONType)
    filename: Mapped[str | None] = mapped_column(String(255))
    note: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[BatchStatus] = mapped_column(enum_type(BatchStatus, "batch_status"), default=BatchStatus.DRAFT)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    approvals_needed: Mapped[int] = mapped_column(default=1)
    approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    second_approved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    approved_at: Mapped[dt.datetime | None]
    reserve_account: Mapped[str] = mapped_column(String(120))
    total_lines: Mapped[int] = mapped_column(default=0)
    valid_lines: Mapped[int] = mapped_column(default=0)
    invalid_lines: Mapped[int] = mapped_column(default=0)
    done_lines: Mapped[int] = mapped_column(default=0)
    failed_lines: Mapped[int] = mapped_column(default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)  # the valid lines' total
    done_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    returned_amount: Mapped[int] = mapped_column(BigInteger, default=0)  # given back to the budget at the end
    error: Mapped[str | None] = mapped_column(String(500))
    # The last line number the run has dealt with: it goes on after it (every line before is settled).
    cursor: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    progressed_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    program: Mapped[Program] = relationship()


class LineStatus(str, enum.Enum):
    VALID = "valid"
    INVALID = "invalid"
    DONE = "done"
    FAILED = "failed"


class DisbursementLine(Base):
    """One line of a batch: whom it pays, how much, and what became of it."""

    __tablename__ = "disbursement_lines"
    __table_args__ = (
        UniqueConstraint("disbursement_id", "line_no", name="uq_disbursement_lines_disbursement_id_line_no"),
        # A run rewrites every line once (valid -> done): room on each page keeps the new version there,
        # so no index is touched (a HOT update).
        {"postgresql_with": {"fillfactor": 60}},
    )

    id: Mapped[BigIntPK]
    disbursement_id: Mapped[int] = mapped_column(ForeignKey("disbursements.id", ondelete="RESTRICT"))
    line_no: Mapped[int]
    # How the line named its member: "id_number", "card_number" or "rule"; shown masked, looked up blind.
    ref_kind: Mapped[str] = mapped_column(String(12))
    ref_masked: Mapped[str] = mapped_column(String(24), default="")
    ref_index: Mapped[str | None] = mapped_column(String(64))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"), index=True)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"))
    union_id: Mapped[int | None] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    note: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[LineStatus] = mapped_column(enum_type(LineStatus, "line_status"))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(200))
    purse_account: Mapped[str | None] = mapped_column(String(120))
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    processed_at: Mapped[dt.datetime | None]
    clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)


class ClawbackStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Clawback(Base):
    """A request to take back one paid line's money that is still unspent; an approver carries it out."""

    __tablename__ = "disbursement_clawbacks"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("disbursement_lines.id", ondelete="RESTRICT"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[ClawbackStatus] = mapped_column(enum_type(ClawbackStatus, "clawback_status"),
                                                   default=ClawbackStatus.PENDING)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    decided_at: Mapped[dt.datetime | None]
    amount_taken: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    line: Mapped[DisbursementLine] = relationship()
