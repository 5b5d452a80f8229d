"""Member cards, their purses (one ledger account each), and bulk issuance runs."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow
from members.models import Member, Union


class CardStatus(str, enum.Enum):
    ISSUED = "issued"
    ACTIVE = "active"
    FROZEN = "frozen"
    LOST = "lost"
    REPLACED = "replaced"
    CANCELLED = "cancelled"


# A card in one of these states still belongs to its member's account: one such card per member.
LIVE_STATUSES = (CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN, CardStatus.LOST)
_LIVE_SQL = "status IN ('issued', 'active', 'frozen', 'lost')"


class Card(Base):
    """A member's card: its number is encrypted, indexed blind and shown masked."""

    __tablename__ = "cards"
    __table_args__ = (
        Index("uq_cards_live_member", "member_id", unique=True,
              postgresql_where=text(_LIVE_SQL), sqlite_where=text(_LIVE_SQL)),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"), index=True)
    number_enc: Mapped[str] = mapped_column(Text)
    number_index: Mapped[str] = mapped_column(String(64), unique=True)
    number_masked: Mapped[str] = mapped_column(String(24))
    status: Mapped[CardStatus] = mapped_column(enum_type(CardStatus, "card_status"), default=CardStatus.ISSUED)
    # Frozen by union staff: only staff may unfreeze it.
    frozen_by_staff: Mapped[bool] = mapped_column(default=False)
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    pin_set_at: Mapped[dt.datetime | None]
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"), unique=True)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    member: Mapped[Member] = relationship()
    purses: Mapped[list["Purse"]] = relationship(back_populates="card", order_by="Purse.id")
    replaces: Mapped["Card | None"] = relationship(remote_side="Card.id", foreign_keys=[replaces_id])

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


class PurseKind(str, enum.Enum):
    GENERAL = "general"
    RESTRICTED = "restricted"


class Purse(Base):
    """A pot of money on a card, kept in its own ledger account that may never go negative.

    Every card has a general purse; each aid program that pays restricted money onto the card gets
    a restricted purse, carrying the program's spending rules as they were when it was opened.
    """

    __tablename__ = "card_purses"
    __table_args__ = (UniqueConstraint("card_id", "program_id", name="uq_card_purses_card_id_program_id"),)

    id: Mapped[BigIntPK]
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[PurseKind] = mapped_column(enum_type(PurseKind, "purse_kind"))
    # The aid program's public id (prg_...) for a restricted purse; None for the general purse.
    program_id: Mapped[str | None] = mapped_column(String(32), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    account_code: Mapped[str] = mapped_column(String(120), unique=True)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    # Merchant categories where a restricted purse may be spent (None: anywhere).
    allowed_categories: Mapped[list | None] = mapped_column(JSONType)
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None]

    card: Mapped[Card] = relationship(back_populates="purses")

    def allows(self, category: str) -> bool:
        """Tell whether this purse may pay a merchant of the category."""
        return self.allowed_categories is None or category in self.allowed_categories


class IssuanceStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class CardIssuanceRun(Base):
    """Cards issued to every active member of a union subtree who has none, in committed chunks."""

    __tablename__ = "card_issuance_runs"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    status: Mapped[IssuanceStatus] = mapped_column(enum_type(IssuanceStatus, "issuance_status"),
                                                   default=IssuanceStatus.QUEUED)
    total: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    issued: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    # The last member id handled: a resumed run goes on after it.
    cursor: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    # Moved on with each committed chunk: a run that stops moving has stalled.
    progressed_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    union: Mapped[Union] = relationship(lazy="joined")
