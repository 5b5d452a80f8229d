"""Open, find and close ledger accounts."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.db import dialect_insert, utcnow
from core.errors import Conflict, NotFound, RuleViolation, ValidationFailed
from payments.ledger.models import (
    MAX_SLICES,
    Account,
    AccountBalance,
    AccountStatus,
    BalanceDelta,
    BalanceMode,
    NormalSide,
    total,
)
from payments.ledger.types import MAX_METADATA_BYTES

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
DEFAULT_SLICES = 16


def check_metadata(metadata: dict[str, Any] | None, field: str = "metadata") -> dict[str, Any]:
    """Return metadata as a small JSON object, refusing anything else."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationFailed({field: ["Must be an object."]})
    try:
        size = len(json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise ValidationFailed({field: ["Must be JSON."]}) from None
    if size > MAX_METADATA_BYTES:
        raise ValidationFailed({field: [f"At most {MAX_METADATA_BYTES} bytes of JSON."]})
    return metadata


def check_code(code: str) -> str:
    """Return `code` if it is a well-formed account code."""
    if not isinstance(code, str) or not CODE_RE.match(code):
        raise ValidationFailed({"account": [f"Not a valid account code: {code!r}."]})
    return code


def check_currency(currency: str) -> str:
    """Return `currency` if it is a three-letter upper-case code."""
    if not isinstance(currency, str) or not CURRENCY_RE.match(currency):
        raise ValidationFailed({"currency": [f"Not a currency code: {currency!r}."]})
    return currency


def _spec(code, currency, normal_side, allow_negative, mode, slices, owner_kind, owner_id, metadata):
    check_code(code)
    check_currency(currency)
    normal_side = NormalSide(normal_side)
    mode = BalanceMode(mode)
    if mode is BalanceMode.SLICED:
        slices = DEFAULT_SLICES if slices is None else slices
        if isinstance(slices, bool) or not isinstance(slices, int) or not 2 <= slices <= MAX_SLICES:
            raise ValidationFailed({"slices": [f"A sliced account has 2 to {MAX_SLICES} slices."]})
    elif slices not in (None, 1):
        raise ValidationFailed({"slices": ["Only sliced accounts have slices."]})
    else:
        slices = 1
    if mode is BalanceMode.APPEND_ONLY and not allow_negative:
        raise ValidationFailed(
            {"allow_negative": ["An append-only account is never locked, so it must be allowed to go negative."]}
        )
    if owner_kind is not None and len(owner_kind) > 40:
        raise ValidationFailed({"owner_kind": ["At most 40 characters."]})
    if owner_id is not None and len(str(owner_id)) > 64:
        raise ValidationFailed({"owner_id": ["At most 64 characters."]})
    return {
        "code": code,
        "currency": currency,
        "normal_side": normal_side,
        "allow_negative": bool(allow_negative),
        "mode": mode,
        "slices": slices,
        "owner_kind": owner_kind,
        "owner_id": None if owner_id is None else str(owner_id),
        "meta": check_metadata(metadata),
    }


def _create(session: Session, spec: dict) -> Account | None:
    """Insert the account and its balance rows; return None if the code is taken."""
    now = utcnow()
    stmt = (
        dialect_insert(session, Account)
        .values(status=AccountStatus.OPEN, created_at=now, **spec)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Account)
    )
    account = session.scalars(stmt).one_or_none()
    if account is None:
        return None
    session.execute(
        AccountBalance.__table__.insert(),
        [
            {
                "account_id": account.id,
                "slice": n,
                "normal_side": account.normal_side,
                "allow_negative": account.allow_negative,
                "debits_posted": 0,
                "credits_posted": 0,
                "debits_pending": 0,
                "credits_pending": 0,
            }
            for n in range(account.slices)
        ],
    )
    return account


def open_account(
    session: Session,
    code: str,
    *,
    normal_side: NormalSide | str,
    currency: str = "CNY",
    allow_negative: bool = False,
    mode: BalanceMode | str = BalanceMode.SINGLE,
    slices: int | None = None,
    owner_kind: str | None = None,
    owner_id: str | int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Account:
    """Open a new account; refuse a code that is already taken."""
    spec = _spec(code, currency, normal_side, allow_negative, mode, slices, owner_kind, owner_id, metadata)
    account = _create(session, spec)
    if account is None:
        raise Conflict(f"Account {code} already exists.", code="account_exists")
    return account


def open_accounts(
    session: Session,
    codes: Sequence[str],
    *,
    normal_side: NormalSide | str,
    currency: str = "CNY",
    allow_negative: bool = False,
    owner_kind: str | None = None,
) -> int:
    """Open many single-balance accounts with the same settings in two statements; return how many.

    For bulk work (a card purse for each of thousands of new cards). Codes already taken are
    left as they are and not counted.
    """
    specs = [_spec(code, currency, normal_side, allow_negative, BalanceMode.SINGLE, None, owner_kind, None, None)
             for code in codes]
    if not specs:
        return 0
    now = utcnow()
    table = Account.__table__
    rows = [{"code": spec["code"], "currency": spec["currency"], "normal_side": spec["normal_side"],
             "allow_negative": spec["allow_negative"], "mode": spec["mode"], "slices": 1,
             "owner_kind": spec["owner_kind"], "owner_id": None, "metadata": spec["meta"],
             "status": AccountStatus.OPEN, "created_at": now} for spec in specs]
    # One statement executed for many rows: SQLAlchemy batches them into multi-row INSERTs.
    stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["code"]).returning(table.c.id)
    ids = list(session.execute(stmt, rows).scalars())
    if ids:
        side = NormalSide(normal_side)
        session.execute(
            AccountBalance.__table__.insert(),
            [{"account_id": account_id, "slice": 0, "normal_side": side, "allow_negative": bool(allow_negative),
              "debits_posted": 0, "credits_posted": 0, "debits_pending": 0, "credits_pending": 0}
             for account_id in ids],
        )
    return len(ids)


def get_or_create_account(
    session: Session,
    code: str,
    *,
    normal_side: NormalSide | str,
    currency: str = "CNY",
    allow_negative: bool = False,
    mode: BalanceMode | str = BalanceMode.SINGLE,
    slices: int | None = None,
    owner_kind: str | None = None,
    owner_id: str | int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Account:
    """Return the account with this code, opening it first if there is none; refuse a different one."""
    spec = _spec(code, currency, normal_side, allow_negative, mode, slices, owner_kind, owner_id, metadata)
    account = session.scalars(select(Account).where(Account.code == code)).one_or_none()
    if account is None:
        account = _create(session, spec)
    if account is None:
        # Another transaction opened it between our look-up and our insert.
        account = session.scalars(select(Account).where(Account.code == code)).one()
    for name in ("currency", "normal_side", "allow_negative", "mode", "slices"):
        if getattr(account, name) != spec[name]:
            raise Conflict(
                f"Account {code} exists with a different {name}.", code="account_mismatch"
            )
    return account


def get_account(session: Session, code: str) -> Account:
    """Return the account with this code or raise NotFound."""
    account = session.scalars(select(Account).where(Account.code == code)).one_or_none()
    if account is None:
        raise NotFound(f"No ledger account {code}.", code="unknown_account")
    return account


def fold_account_deltas(session: Session, account_id: int) -> None:
    """Add an append-only account's committed deltas to its balance row and drop them."""
    balance_id = session.execute(
        select(AccountBalance.id)
        .where(AccountBalance.account_id == account_id, AccountBalance.slice == 0)
        .with_for_update()
    ).scalar_one()
    # DELETE only sees committed rows, so deltas still being written stay for the next fold.
    folded = session.execute(
        delete(BalanceDelta)
        .where(BalanceDelta.account_id == account_id)
        .returning(
            BalanceDelta.debits_posted,
            BalanceDelta.credits_posted,
            BalanceDelta.debits_pending,
            BalanceDelta.credits_pending,
        )
    ).all()
    if not folded:
        return
    session.execute(
        update(AccountBalance)
        .where(AccountBalance.id == balance_id)
        .values(
            debits_posted=AccountBalance.debits_posted + sum(r[0] for r in folded),
            credits_posted=AccountBalance.credits_posted + sum(r[1] for r in folded),
            debits_pending=AccountBalance.debits_pending + sum(r[2] for r in folded),
            credits_pending=AccountBalance.credits_pending + sum(r[3] for r in folded),
        )
        .execution_options(synchronize_session=False)
    )


def fold_deltas(session: Session, *, limit: int = 1000) -> int:
    """Fold the pending deltas of up to `limit` append-only accounts; return how many were folded."""
    limit = max(1, min(int(limit), 10_000))
    account_ids = session.scalars(
        select(BalanceDelta.account_id).group_by(BalanceDelta.account_id).order_by(BalanceDelta.account_id).limit(limit)
    ).all()
    for account_id in account_ids:
        fold_account_deltas(session, account_id)
    return len(account_ids)


def close_account(session: Session, code: str) -> Account:
    """Close an account whose balance and holds are all zero; it then refuses every posting."""
    account = session.scalars(
        select(Account).where(Account.code == code).with_for_update()
    ).one_or_none()
    if account is None:
        raise NotFound(f"No ledger account {code}.", code="unknown_account")
    if account.status is AccountStatus.CLOSED:
        return account
    # Holding the account row FOR UPDATE waited out every posting that had it FOR KEY SHARE,
    # so the balance rows and deltas read here are final.
    totals = [0, 0, 0]
    for table in (AccountBalance, BalanceDelta):
        row = session.execute(
            select(
                total(table.debits_posted - table.credits_posted),
                total(table.debits_pending),
                total(table.credits_pending),
            ).where(table.account_id == account.id)
        ).one()
        totals = [a + b for a, b in zip(totals, row)]
    if any(totals):
        raise RuleViolation(
            f"Account {code} still has a balance or open holds.", code="account_not_empty"
        )
    if account.mode is BalanceMode.APPEND_ONLY:
        fold_account_deltas(session, account.id)
    account.status = AccountStatus.CLOSED
    account.closed_at = utcnow()
    session.flush()
    return account
