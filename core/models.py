"""Users, API tokens and the audit log."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import BigIntPK, Base, JSONType, enum_type, utcnow

class Role(str, enum.Enum):
    MEMBER = "member"
    # A business that signed up to apply; becomes its merchant's owner when approved.
    APPLICANT = "applicant"
    MERCHANT_OWNER = "merchant_owner"
    MERCHANT_MANAGER = "merchant_manager"
    MERCHANT_CASHIER = "merchant_cashier"
    UNION_ADMIN = "union_admin"
    MERCHANT_REVIEWER = "merchant_reviewer"
    FINANCE_MAKER = "finance_maker"
    FINANCE_APPROVER = "finance_approver"
    AUDITOR = "auditor"


MERCHANT_ROLES = frozenset({Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER})
FINANCE_ROLES = frozenset({Role.FINANCE_MAKER, Role.FINANCE_APPROVER})
STAFF_ROLES = frozenset({Role.UNION_ADMIN, Role.MERCHANT_REVIEWER, Role.AUDITOR}) | FINANCE_ROLES


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role <> 'member' OR member_id IS NOT NULL", name="member_has_member"),
        CheckConstraint(
            "role NOT IN ('merchant_owner', 'merchant_manager', 'merchant_cashier') "
            "OR merchant_id IS NOT NULL",
            name="merchant_staff_has_merchant",
        ),
    )

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    display_name: Mapped[str] = mapped_column(String(100), default="")
    union_id: Mapped[int | None] = mapped_column(ForeignKey("unions.id", ondelete="RESTRICT"), index=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="RESTRICT"), unique=True
    )
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id", ondelete="RESTRICT"), index=True)
    # A merchant applicant's contact phone (members' phones live in the member registry).
    phone_enc: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(String(11))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None]
    password_changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # Flask-Login's protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return self.public_id


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[BigIntPK]
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]


class AuditEvent(Base):
    """One state change: who did what to which object, with the before and after (masked)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_object", "object_type", "object_id"),
        Index("ix_audit_events_action", "action"),
    )

    id: Mapped[BigIntPK]
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    actor_label: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40))
    before: Mapped[dict | None] = mapped_column(JSONType)
    after: Mapped[dict | None] = mapped_column(JSONType)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the request it was first used with and the answer it got."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),)

    id: Mapped[BigIntPK]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Set while the first request runs; a retry meanwhile is told to wait.
    locked_until: Mapped[dt.datetime | None]
    response_status: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    response_location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
