"""The union org tree, the real-name member registry, the hardship register and member imports."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import BigIntPK, Base, enum_type, utcnow


class UnionKind(str, enum.Enum):
    FEDERATION = "federation"
    CITY = "city"
    COUNTY = "county"
    GRASSROOTS = "grassroots"


UNION_KINDS_BY_DEPTH = [UnionKind.FEDERATION, UnionKind.CITY, UnionKind.COUNTY, UnionKind.GRASSROOTS]


class Union(Base):
    """A node of the org tree: federation -> city -> county -> grassroots union."""

    __tablename__ = "unions"
    __table_args__ = (
        UniqueConstraint("parent_id", "name", name="uq_unions_parent_id_name"),
        # The constraint above lets two roots share a name (NULL parents differ); this does not.
        Index("uq_unions_root_name", "name", unique=True, postgresql_where=text("parent_id IS NULL"),
              sqlite_where=text("parent_id IS NULL")),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"), index=True)
    region: Mapped[str] = mapped_column(String(6))
    kind: Mapped[UnionKind] = mapped_column(enum_type(UnionKind, "union_kind"))
    # Materialized path of ids ("/1/4/9/"): a subtree is one prefix match.
    path: Mapped[str] = mapped_column(String(255), index=True, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    parent: Mapped["Union | None"] = relationship(remote_side="Union.id", lazy="joined", join_depth=1)


class MemberStatus(str, enum.Enum):
    ACTIVE = "active"
    TRANSFERRED = "transferred"
    LEFT = "left"


class Member(Base):
    """A real-name union member; ID number and phone are encrypted, indexed blind, and kept masked."""

    __tablename__ = "members"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(50), index=True)
    id_number_enc: Mapped[str] = mapped_column(Text)
    id_number_index: Mapped[str] = mapped_column(String(64), unique=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_index: Mapped[str] = mapped_column(String(64), index=True)
    phone_masked: Mapped[str] = mapped_column(String(11))
    union_id: Mapped[int] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"), index=True)
    status: Mapped[MemberStatus] = mapped_column(enum_type(MemberStatus, "member_status"),
                                                 default=MemberStatus.ACTIVE)
    join_date: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    union: Mapped[Union] = relationship(lazy="joined")
    hardship: Mapped["HardshipRecord | None"] = relationship(back_populates="member", lazy="selectin",
                                                             uselist=False)


class HardshipRecord(Base):
    """An entry of the hardship register (困难职工档案): level 1 (least) to 3 (most severe)."""

    __tablename__ = "hardship_records"
    __table_args__ = (CheckConstraint("level BETWEEN 1 AND 3", name="level_range"),)

    id: Mapped[BigIntPK]
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"), unique=True)
    level: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str] = mapped_column(String(500))
    valid_until: Mapped[dt.date] = mapped_column(Date, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))

    member: Mapped[Member] = relationship(back_populates="hardship")

    def is_current(self, today: dt.date) -> bool:
        """Tell whether the entry is still valid on `today`."""
        return self.valid_until >= today


class ImportStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class RowStatus(str, enum.Enum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"


class MemberImport(Base):
    """One uploaded member CSV, processed in committed chunks so a crash resumes where it stopped."""

    __tablename__ = "member_imports"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    # The importing admin's union (None: the whole platform); rows may only name unions under it.
    scope_union_id: Mapped[int | None] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"))
    filename: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[ImportStatus] = mapped_column(enum_type(ImportStatus, "import_status"),
                                                 default=ImportStatus.QUEUED)
    total_rows: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    created_rows: Mapped[int] = mapped_column(default=0)
    unchanged_rows: Mapped[int] = mapped_column(default=0)
    rejected_rows: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class MemberImportRow(Base):
    """The outcome of one line of an import file."""

    __tablename__ = "member_import_rows"
    __table_args__ = (
        UniqueConstraint("import_id", "line", name="uq_member_import_rows_import_id_line"),
        Index("ix_member_import_rows_import_status", "import_id", "status"),
    )

    id: Mapped[BigIntPK]
    import_id: Mapped[int] = mapped_column(ForeignKey("member_imports.id", ondelete="RESTRICT"))
    line: Mapped[int]
    status: Mapped[RowStatus] = mapped_column(enum_type(RowStatus, "import_row_status"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="RESTRICT"))
    error: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(String(300))

    member: Mapped[Member | None] = relationship(lazy="joined")
