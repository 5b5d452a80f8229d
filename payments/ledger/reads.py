"""Read the books: balances now and at a past moment, statements, the trial balance, snapshots."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Sequence

from sqlalchemy import case, func, literal, select, tuple_, union_all
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import ValidationFailed
from payments.ledger.accounts import get_account
from payments.ledger.models import (
    Account,
    AccountBalance,
    BalanceDelta,
    Entry,
    NormalSide,
    Snapshot,
    Transaction,
    total,
)
from payments.ledger.types import (
    DEFAULT_PAGE,
    MAX_PAGE,
    Balance,
    StatementLine,
    StatementPage,
    TrialBalance,
    TrialBalanceRow,
)

# A snapshot covers entries created up to `as_of`; it must lag behind the transactions still in
# flight, whose entries may commit later with an earlier `created_at`.
SNAPSHOT_LAG = dt.timedelta(minutes=10)
SNAPSHOT_MIN_ENTRIES = 1000
SNAPSHOT_BATCH = 1000

_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def _cached_counters(account_id: int):
    """Select an account's four totals: its balance rows plus any deltas not folded yet."""
    parts = [
        select(*(getattr(table, c) for c in _COUNTERS)).where(table.account_id == account_id)
        for table in (AccountBalance, BalanceDelta)
    ]
    rows = union_all(*parts).subquery()
    return select(*(total(getattr(rows.c, c)) for c in _COUNTERS))


def _normal(account: Account, signed_debits: int) -> int:
    """Turn a debit-positive amount into one that is positive on the account's normal side."""
    return signed_debits if account.normal_side is NormalSide.DEBIT else -signed_debits


def balance(session: Session, account: Account | str) -> Balance:
    """Return the posted, pending and available balance of an account right now."""
    account = _account(session, account)
    dp, cp, dh, ch = session.execute(_cached_counters(account.id)).one()
    posted = _normal(account, dp - cp)
    if account.normal_side is NormalSide.CREDIT:
        available = posted - dh
    else:
        available = posted - ch
    return Balance(account.code, account.currency, posted, dh, ch, available)


def balances(session: Session, codes: Sequence[str]) -> dict[str, Balance]:
    """Return the balances of several accounts, read in two queries; unknown codes are left out."""
    if not codes:
        return {}
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.code.in_(list(codes))))}
    if not accounts:
        return {}
    parts = [select(table.account_id, *(getattr(table, c) for c in _COUNTERS))
             .where(table.account_id.in_(list(accounts))) for table in (AccountBalance, BalanceDelta)]
    rows = union_all(*parts).subquery()
    sums = {account_id: counters for account_id, *counters in session.execute(
        select(rows.c.account_id, *(total(getattr(rows.c, c)) for c in _COUNTERS)).group_by(rows.c.account_id))}
    out = {}
    for account_id, account in accounts.items():
        dp, cp, dh, ch = sums.get(account_id, (0, 0, 0, 0))
        posted = _normal(account, dp - cp)
        available = posted - dh if account.normal_side is NormalSide.CREDIT else posted - ch
        out[account.code] = Balance(account.code, account.currency, posted, dh, ch, available)
    return out


def _account(session: Session, account: Account | str) -> Account:
    return get_account(session, account) if isinstance(account, str) else account


def _posted_through(session: Session, account: Account, at: dt.datetime, txn_id: int | None = None) -> int:
    """Return the debit-positive posted total of entries up to a point (a time, or a line at a time)."""
    posted = (Entry.account_id == account.id, Entry.is_hold.is_(False))
    if txn_id is None:
        before = Entry.created_at <= at
        after = Entry.created_at > at
    else:
        before = tuple_(Entry.created_at, Entry.transaction_id) <= tuple_(literal(at, Entry.created_at.type), txn_id)
        after = tuple_(Entry.created_at, Entry.transaction_id) > tuple_(literal(at, Entry.created_at.type), txn_id)
    snapshot = session.execute(
        select(Snapshot.as_of, Snapshot.debits_posted, Snapshot.credits_posted)
        .where(Snapshot.account_id == account.id, Snapshot.as_of <= at)
        .order_by(Snapshot.as_of.desc())
        .limit(1)
    ).one_or_none()
    if snapshot is not None:
        since = session.scalar(
            select(total(Entry.amount)).where(
                *posted, Entry.created_at > snapshot.as_of, before
            )
        )
        return snapshot.debits_posted - snapshot.credits_posted + since
    # No snapshot before the point: count back from the cached total, in one statement so both
    # sums see the same committed entries.
    cached = _cached_counters(account.id).subquery()
    later = select(total(Entry.amount)).where(*posted, after).scalar_subquery()
    return session.scalar(select(cached.c[0] - cached.c[1] - later))


def balance_as_of(session: Session, account: Account | str, at: dt.datetime) -> int:
    """Return the posted balance (normal side) over the entries created at or before `at`."""
    if at.tzinfo is None:
        raise ValidationFailed({"at": ["Must carry a time zone."]})
    account = _account(session, account)
    return _normal(account, _posted_through(session, account, at))


def _encode_cursor(created_at: dt.datetime, txn_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), txn_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, txn_id = json.loads(raw)
        at = dt.datetime.fromisoformat(stamp)
        if at.tzinfo is None or isinstance(txn_id, bool) or not isinstance(txn_id, int):
            raise ValueError
        return at, txn_id
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def statement(
    session: Session,
    account: Account | str | Sequence[Account | str],
    *,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    newest_first: bool = False,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> StatementPage:
    """Return one page of posted transactions, each with the balance right after it.

    `account` may be several accounts of one currency and normal side (a card's purses): each
    line is then a transaction's net effect on all of them, and the balance is their total.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationFailed({"limit": ["Must be an integer."]})
    limit = max(1, min(limit, MAX_PAGE))
    accounts = [_account(session, a) for a in (account if isinstance(account, (list, tuple)) else [account])]
    if not accounts:
        raise ValidationFailed({"account": ["Name at least one account."]})
    first_account = accounts[0]
    if any(a.currency != first_account.currency or a.normal_side != first_account.normal_side for a in accounts):
        raise ValidationFailed({"account": ["A joint statement needs accounts of one currency and normal side."]})
    label = ",".join(a.code for a in accounts)
    position = tuple_(Entry.created_at, Entry.transaction_id)
    query = (
        select(Entry.created_at, Entry.transaction_id, total(Entry.amount).label("amount"))
        .where(Entry.account_id.in_([a.id for a in accounts]), Entry.is_hold.is_(False))
        .group_by(Entry.created_at, Entry.transaction_id)
    )
    if since is not None:
        query = query.where(Entry.created_at >= since)
    if until is not None:
        query = query.where(Entry.created_at < until)
    if cursor:
        at, txn_id = _decode_cursor(cursor)
        mark = tuple_(literal(at, Entry.created_at.type), txn_id)
        query = query.where(position < mark if newest_first else position > mark)
    if newest_first:
        query = query.order_by(Entry.created_at.desc(), Entry.transaction_id.desc())
    else:
        query = query.order_by(Entry.created_at, Entry.transaction_id)
    rows = session.execute(query.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    if not rows:
        return StatementPage(label, first_account.currency, [], None)

    txns = {
        t.id: t
        for t in session.execute(
            select(Transaction.id, Transaction.public_id, Transaction.kind, Transaction.reference, Transaction.meta)
            .where(Transaction.id.in_([r.transaction_id for r in rows]))
        )
    }
    first = rows[0]
    running = _normal(first_account, sum(
        _posted_through(session, a, first.created_at, first.transaction_id) for a in accounts))
    lines = []
    for n, row in enumerate(rows):
        amount = _normal(first_account, row.amount)
        if n:
            running = running + amount if not newest_first else running - _normal(first_account, rows[n - 1].amount)
        txn = txns[row.transaction_id]
        lines.append(StatementLine(txn.public_id, txn.kind, txn.reference, row.created_at, amount, running,
                                   txn.meta or {}))
    next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].transaction_id) if more else None
    return StatementPage(label, first_account.currency, lines, next_cursor)


def _group_expression(session: Session):
    """Return SQL for an account code up to its first colon."""
    if session.get_bind().dialect.name == "postgresql":
        return func.split_part(Account.code, ":", 1)
    return func.substr(Account.code, 1, func.instr(Account.code + ":", ":") - 1)


def trial_balance(session: Session) -> TrialBalance:
    """Return posted balances per account group and currency; debits equal credits in each currency."""
    cached = union_all(
        select(AccountBalance.account_id, AccountBalance.debits_posted, AccountBalance.credits_posted),
        select(BalanceDelta.account_id, BalanceDelta.debits_posted, BalanceDelta.credits_posted),
    ).subquery()
    net = (
        select(cached.c.account_id, total(cached.c.debits_posted - cached.c.credits_posted).label("net"))
        .group_by(cached.c.account_id)
        .subquery()
    )
    group = _group_expression(session).label("grp")
    rows = session.execute(
        select(
            group,
            Account.currency,
            func.count(),
            total(case((net.c.net > 0, net.c.net), else_=0)),
            total(case((net.c.net < 0, -net.c.net), else_=0)),
        )
        .join(net, net.c.account_id == Account.id)
        .group_by(group, Account.currency)
        .order_by(group, Account.currency)
    ).all()
    result = [TrialBalanceRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]
    totals: dict[str, dict[str, int]] = {}
    for row in result:
        t = totals.setdefault(row.currency, {"debits": 0, "credits": 0})
        t["debits"] += row.debits
        t["credits"] += row.credits
    return TrialBalance(result, totals)


def take_snapshots(
    session: Session,
    *,
    as_of: dt.datetime | None = None,
    min_entries: int = SNAPSHOT_MIN_ENTRIES,
    limit: int = SNAPSHOT_BATCH,
) -> int:
    """Snapshot the posted totals of accounts with at least `min_entries` new entries; return how many."""
    as_of = as_of or utcnow() - SNAPSHOT_LAG
    if as_of.tzinfo is None:
        raise ValidationFailed({"as_of": ["Must carry a time zone."]})
    limit = max(1, min(int(limit), SNAPSHOT_BATCH))
    latest = (
        select(Snapshot.account_id, func.max(Snapshot.as_of).label("as_of"))
        .group_by(Snapshot.account_id)
        .subquery()
    )
    previous = (
        select(Snapshot.account_id, Snapshot.as_of, Snapshot.debits_posted, Snapshot.credits_posted,
               Snapshot.entry_count)
        .join(latest, (latest.c.account_id == Snapshot.account_id) & (latest.c.as_of == Snapshot.as_of))
        .subquery()
    )
    fresh = session.execute(
        select(
            Entry.account_id,
            func.count(),
            total(case((Entry.amount > 0, Entry.amount), else_=0)),
            total(case((Entry.amount < 0, -Entry.amount), else_=0)),
            func.max(previous.c.debits_posted),
            func.max(previous.c.credits_posted),
            func.max(previous.c.entry_count),
        )
        .outerjoin(previous, previous.c.account_id == Entry.account_id)
        .where(
            Entry.is_hold.is_(False),
            Entry.created_at <= as_of,
            (previous.c.as_of.is_(None)) | (Entry.created_at > previous.c.as_of),
        )
        .group_by(Entry.account_id)
        .having(func.count() >= max(1, int(min_entries)))
        .order_by(Entry.account_id)
        .limit(limit)
    ).all()
    if fresh:
        session.execute(
            Snapshot.__table__.insert(),
            [
                {
                    "account_id": account_id,
                    "as_of": as_of,
                    "debits_posted": (prev_dp or 0) + dp,
                    "credits_posted": (prev_cp or 0) + cp,
                    "entry_count": (prev_n or 0) + n,
                    "created_at": utcnow(),
                }
                for account_id, n, dp, cp, prev_dp, prev_cp, prev_n in fresh
            ],
        )
    return len(fresh)
