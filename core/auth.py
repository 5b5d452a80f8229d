"""Users, passwords, bearer tokens and login throttling, as plain functions on a session."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core.errors import (Conflict, NotFound, ServiceUnavailable, TooManyAttempts, Unauthorized,
                         ValidationFailed)
from core.ids import new_public_id
from core.models import MERCHANT_ROLES, ApiToken, Role, User
from core.redis import KeyValueStore, StoreUnavailable
from core.db import utcnow

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash("unioncard-timing-equalizer")


def configure_password_hashing(time_cost: int, memory_cost: int) -> None:
    """Set the argon2id cost (production keeps the library's defaults; tests may lower it)."""
    global _hasher, _DUMMY_HASH
    if (time_cost, memory_cost) != (_hasher.time_cost, _hasher.memory_cost):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)
        _DUMMY_HASH = _hasher.hash("unioncard-timing-equalizer")
TOKEN_PREFIX = "uct_"
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.@-]{2,63}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Actor:
    """Who is acting: the user and role, their scope, and where the request came from."""

    user_id: int | None
    label: str
    role: Role | None
    union_id: int | None = None
    merchant_id: int | None = None
    member_id: int | None = None
    request_id: str | None = None
    ip: str | None = None

    @classmethod
    def of(cls, user: User, request_id: str | None = None, ip: str | None = None) -> "Actor":
        """Build the actor for a signed-in user."""
        return cls(user.id, user.username, user.role, user.union_id, user.merchant_id,
                   user.member_id, request_id, ip)

    def has(self, *roles: Role) -> bool:
        """Tell whether the actor holds one of these roles."""
        return self.role in roles


SYSTEM = Actor(None, "system", None)


def hash_password(password: str) -> str:
    """Hash a password (or PIN) with argon2id."""
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Check a password against its argon2 hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def normalize_username(username: str) -> str:
    """Fold a username for storage and comparison."""
    return (username or "").strip().lower()


def check_password_strength(password: str) -> list[str]:
    """Return the reasons a password is too weak (empty when it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"Use at least {MIN_PASSWORD} characters.")
    if len(password) > 256:
        problems.append("Use at most 256 characters.")
    if len(set(password)) < 4:
        problems.append("Use more different characters.")
    return problems


def resolve_public_id(session: Session, table: str, public_id: str | None) -> int | None:
    """Return the internal id of a row addressed by public id, or raise NotFound."""
    if public_id is None:
        return None
    row = session.execute(text(f"SELECT id FROM {table} WHERE public_id = :p"), {"p": public_id}).first()
    if row is None:
        raise NotFound(f"No {table[:-1]} {public_id}.")
    return row[0]


def create_user(session: Session, *, username: str, password: str, role: Role,
                display_name: str = "", union_id: int | None = None, member_id: int | None = None,
                merchant_id: int | None = None) -> User:
    """Create a user whose scope fits the role; flushes, the caller commits."""
    username = normalize_username(username)
    errors: dict[str, list[str]] = {}
    if not USERNAME_RE.match(username):
        errors["username"] = ["Use 3-64 characters: letters, digits, and _ . @ -"]
    weak = check_password_strength(password)
    if weak:
        errors["password"] = weak
    if role == Role.MEMBER and member_id is None:
        errors["member_id"] = ["A member account needs the member it belongs to."]
    if role in MERCHANT_ROLES and merchant_id is None:
        errors["merchant_id"] = ["A merchant staff account needs its merchant."]
    if role != Role.UNION_ADMIN and union_id is not None:
        errors["union_id"] = ["Only a union admin is scoped to a union."]
    if role != Role.MEMBER and member_id is not None:
        errors["member_id"] = ["Only a member account belongs to a member."]
    if role not in MERCHANT_ROLES and merchant_id is not None:
        errors["merchant_id"] = ["Only merchant staff belong to a merchant."]
    if errors:
        raise ValidationFailed(errors)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict("That username is taken.", code="username_taken")
    if member_id is not None and session.scalar(select(User.id).where(User.member_id == member_id)):
        raise Conflict("That member already has an account.", code="member_has_account")
    user = User(public_id=new_public_id("usr"), username=username, password_hash=hash_password(password),
                role=role, display_name=display_name or username, union_id=union_id,
                member_id=member_id, merchant_id=merchant_id)
    session.add(user)
    session.flush()
    return user


class LoginGuard:
    """Count login attempts per user and per address in the key-value store; lock out past a limit."""

    def __init__(self, store: KeyValueStore, *, max_failures: int, ip_max_failures: int,
                 window: int, lockout: int):
        self.store = store
        self.max_failures = max_failures
        self.ip_max_failures = ip_max_failures
        self.window = window
        self.lockout = lockout

    @staticmethod
    def _user_key(username: str) -> str:
        return hashlib.sha256(username.encode()).hexdigest()[:32]

    def check(self, username: str, ip: str | None) -> None:
        """Refuse at once while the user or the address is locked out."""
        try:
            user_key = self._user_key(username)
            remaining = self.store.ttl(f"login:lock:{user_key}")
            if remaining:
                raise TooManyAttempts(remaining, "Too many failed logins; this account is locked for a while.")
            if ip:
                remaining = self.store.ttl(f"login:lock-ip:{ip}")
                if remaining:
                    raise TooManyAttempts(remaining, "Too many failed logins from this address.")
        except StoreUnavailable:
            raise ServiceUnavailable("Sign-in is unavailable for a moment; try again.") from None

    def attempt(self, username: str, ip: str | None) -> tuple[int, int]:
        """Count an attempt and return its number for the user and the address; refuse one past the limits."""
        # Counted before the password is checked, so parallel guesses cannot all slip in under the limit
        # while the first ones are still being verified.
        try:
            user_key = self._user_key(username)
            count = self.store.incr(f"login:fail:{user_key}", self.window)
            ip_count = self.store.incr(f"login:fail-ip:{ip}", self.window) if ip else 0
        except StoreUnavailable:
            raise ServiceUnavailable("Sign-in is unavailable for a moment; try again.") from None
        # A lock set while this attempt waited is seen here: the counter was deleted only after it was set.
        self.check(username, ip)
        if count > self.max_failures or ip_count > self.ip_max_failures:
            raise TooManyAttempts(self.lockout, "Too many login attempts at once; try again later.")
        return count, ip_count

    def failed(self, username: str, ip: str | None, attempt: tuple[int, int]) -> bool:
        """Record that an attempt failed; tell whether it locked the user out."""
        count, ip_count = attempt
        try:
            user_key = self._user_key(username)
            if ip and ip_count >= self.ip_max_failures:
                self.store.set(f"login:lock-ip:{ip}", "1", self.lockout)
            if count >= self.max_failures:
                self.store.set(f"login:lock:{user_key}", "1", self.lockout)
                self.store.delete(f"login:fail:{user_key}")
                return True
            return False
        except StoreUnavailable:
            raise ServiceUnavailable("Sign-in is unavailable for a moment; try again.") from None

    def succeeded(self, username: str, ip: str | None) -> None:
        """Forget the user's attempts after a good login, and give the address its attempt back."""
        try:
            self.store.delete(f"login:fail:{self._user_key(username)}")
            if ip:
                self.store.decr(f"login:fail-ip:{ip}")
        except StoreUnavailable:
            pass


def authenticate(session: Session, guard: LoginGuard, username: str, password: str,
                 ip: str | None) -> User:
    """Return the user for a username and password, or raise; throttled and locked out by `guard`."""
    username = normalize_username(username)
    guard.check(username, ip)
    attempt = guard.attempt(username, ip)
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password or "")
    if not ok or user is None or not user.is_active:
        if guard.failed(username, ip, attempt):
            from core import audit  # audit imports this module

            if user is not None:
                audit.record(session, Actor(None, "system", None, ip=ip), "auth.login.locked", "user",
                             user.public_id, after={"failures": guard.max_failures})
                session.commit()
            raise TooManyAttempts(guard.lockout, "Too many failed logins; this account is locked for a while.")
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    guard.succeeded(username, ip)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def _token_hash(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl_seconds: int) -> tuple[str, ApiToken]:
    """Create a bearer token; only its hash is stored, the plain text is returned once."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(public_id=new_public_id("tok"), user_id=user.id, token_hash=_token_hash(plain),
                     expires_at=utcnow() + dt.timedelta(seconds=ttl_seconds))
    session.add(token)
    session.flush()
    return plain, token


def user_for_token(session: Session, plain: str) -> tuple[User, ApiToken] | None:
    """Return the user and token for a live bearer token, or None."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(plain)))
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        return None
    return user, token


def revoke_token(session: Session, token: ApiToken) -> None:
    """Revoke a token at once; it never works again."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()
