"""Post balanced transactions, hold and release funds, reverse: the only code that writes entries.

Every function runs inside the caller's database transaction: it flushes, never commits, and
makes every check that can refuse a request before it writes anything, so a refusal leaves the
session as it found it. Balance rows are locked in one global order (single-row accounts by id,
then sliced accounts by id and slice) and a slice taken with SKIP LOCKED is never waited for,
so two postings can wait for each other but never deadlock; see README.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from sqlalchemy import BigInteger, SmallInteger, String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, make_transient_to_detached

from core.db import dialect_insert, utcnow
from core.errors import Conflict, DomainError, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from payments.ledger.accounts import check_code, check_currency, check_metadata
from payments.ledger.models import (
    Account,
    AccountBalance,
    AccountStatus,
    BalanceDelta,
    BalanceMode,
    Entry,
    NormalSide,
    Transaction,
    TransactionStatus,
    total,
)
from payments.ledger.types import (
    DEFAULT_HOLD_TIMEOUT,
    MAX_AMOUNT,
    MAX_BATCH,
    MAX_HOLD_TIMEOUT,
    MAX_KEY_LENGTH,
    MAX_LEGS,
    MAX_REFERENCE_LENGTH,
    Leg,
    Side,
    Transfer,
)

KIND_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
# Money flowing into a sliced account is spread over one more free slice per this many units.
SLICE_SHARE = 10_000
EXPIRY_BATCH = 500

_balances = AccountBalance.__table__
_transactions = Transaction.__table__
_entries = Entry.__table__
_deltas = BalanceDelta.__table__


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class _Part:
    """A signed change (debits positive) to one account, optionally pinned to a slice."""

    code: str
    amount: int
    currency: str | None = None
    slice: int | None = None


@dataclass
class _Op:
    """One unit of work for the engine: a transaction to write and/or a hold to resolve."""

    key: str | None
    request_hash: str | None
    values: dict | None  # columns of the transaction to create; None when only resolving a hold
    parts: list[_Part]
    is_hold: bool = False
    releases: list[_Part] = field(default_factory=list)  # hold entries whose reservation ends
    resolve: Transaction | None = None
    resolve_status: TransactionStatus | None = None
    same_as: _Op | None = None
    result: Transaction | DomainError | None = None
    entry_rows: list[dict] = field(default_factory=list)


def _request_hash(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_int_amount(amount, where: str) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed({where: ["Amounts are integers of minor units."]})
    if amount <= 0:
        raise ValidationFailed({where: ["Amounts must be positive."]})
    if amount > MAX_AMOUNT:
        raise ValidationFailed({where: [f"At most {MAX_AMOUNT} minor units."]})
    return amount


def _check_legs(entries: Iterable[Leg], *, minimum: int = 2) -> list[Leg]:
    legs = list(entries)
    if not minimum <= len(legs) <= MAX_LEGS:
        raise ValidationFailed({"entries": [f"A transaction has {minimum} to {MAX_LEGS} entries."]})
    for n, leg in enumerate(legs):
        if not isinstance(leg, Leg):
            raise ValidationFailed({f"entries.{n}": ["Use ledger.debit(...) or ledger.credit(...)."]})
        check_code(leg.account)
        Side(leg.side)
        _check_int_amount(leg.amount, f"entries.{n}.amount")
        if leg.currency is not None:
            check_currency(leg.currency)
    return legs


def _leg_json(legs: list[Leg] | None):
    if legs is None:
        return None
    return [[leg.account, Side(leg.side).value, leg.amount, leg.currency] for leg in legs]


def _signed(leg: Leg) -> int:
    return leg.amount if Side(leg.side) is Side.DEBIT else -leg.amount


def _check_header(kind: str, key: str, reference: str | None) -> None:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValidationFailed({"kind": ["Lower-case words joined by . _ or -, at most 64 characters."]})
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed({"idempotency_key": [f"1 to {MAX_KEY_LENGTH} characters."]})
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_REFERENCE_LENGTH):
        raise ValidationFailed({"reference": [f"At most {MAX_REFERENCE_LENGTH} characters."]})


def _new_op(op: str, kind: str, key: str, entries, reference, metadata, *, is_hold=False,
            expires_at: dt.datetime | None = None, extra: dict | None = None) -> _Op:
    _check_header(kind, key, reference)
    legs = _check_legs(entries)
    metadata = check_metadata(metadata)
    request_hash = _request_hash({
        "op": op, "kind": kind, "legs": _leg_json(legs), "reference": reference,
        "metadata": metadata, **(extra or {}),
    })
    values = {
        "kind": kind,
        "status": TransactionStatus.PENDING if is_hold else TransactionStatus.POSTED,
        "is_hold": is_hold,
        "reference": reference,
        "meta": metadata,
        "expires_at": expires_at,
        "reverses_id": None,
        "pending_id": None,
    }
    parts = [_Part(leg.account, _signed(leg), leg.currency) for leg in legs]
    return _Op(key, request_hash, values, parts, is_hold=is_hold)


# ---------------------------------------------------------------------------------------------
# The engine


@dataclass(eq=False)
class _Row:
    """A locked balance row and the changes the batch makes to it."""

    id: int
    account_id: int
    slice: int
    credit_normal: bool
    allow_negative: bool
    counters: list[int]  # debits_posted, credits_posted, debits_pending, credits_pending
    change: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def available(self, counters: list[int] | None = None) -> int:
        dp, cp, dh, ch = counters or self.counters
        return cp - dp - dh if self.credit_normal else dp - cp - ch


def _effect(amount: int, hold: bool, sign: int = 1) -> tuple[int, int, int, int]:
    """Return the counter changes of one entry (sign -1 takes a hold's reservation back)."""
    if hold:
        return (0, 0, sign * amount, 0) if amount > 0 else (0, 0, 0, -sign * amount)
    return (sign * amount, 0, 0, 0) if amount > 0 else (0, -sign * amount, 0, 0)


def _decreases(account, amount: int) -> bool:
    """Tell whether a signed change lowers the account's balance on its normal side."""
    return amount > 0 if account.normal_side is NormalSide.CREDIT else amount < 0


_ACCOUNT_COLUMNS = (
    Account.id, Account.code, Account.currency, Account.normal_side, Account.allow_negative,
    Account.mode, Account.slices, Account.status,
)
_BALANCE_COLUMNS = (
    _balances.c.id, _balances.c.account_id, _balances.c.slice, _balances.c.debits_posted,
    _balances.c.credits_posted, _balances.c.debits_pending, _balances.c.credits_pending,
)


def _available_sql(side: NormalSide):
    c = _balances.c
    if side is NormalSide.CREDIT:
        return c.credits_posted - c.debits_posted - c.debits_pending
    return c.debits_posted - c.credits_posted - c.credits_pending


class _Sql:
    """The engine's statements, built once per kind of database with bound parameters."""

    _built: dict[str, _Sql] = {}

    @classmethod
    def of(cls, session: Session) -> _Sql:
        dialect = session.get_bind().dialect.name
        if dialect not in cls._built:
            cls._built[dialect] = cls(dialect == "postgresql")
        return cls._built[dialect]

    def __init__(self, postgres: bool):
        self.postgres = postgres
        self._single_then: dict[int, Any] = {}

        def among(column, name, item_type):
            # = ANY(array) keeps one statement text (prepared once) for any number of values.
            if postgres:
                return column == any_(bindparam(name, type_=ARRAY(item_type)))
            return column.in_(bindparam(name, expanding=True))

        t, b = _transactions.c, _balances.c
        self.lookup = select(t.idempotency_key, t.request_hash, t.id).where(among(t.idempotency_key, "keys", String()))
        # FOR KEY SHARE: close_account takes the row FOR UPDATE, so it waits for postings in
        # flight and postings after it see the account closed.
        self.accounts = (
            select(*_ACCOUNT_COLUMNS).where(among(Account.code, "codes", String()))
            .with_for_update(read=True, key_share=True)
        )
        # The rows are locked in the order they are returned, sorted by account id.
        self.single = (
            select(*_BALANCE_COLUMNS).where(among(b.account_id, "ids", BigInteger()), b.slice == 0)
            .order_by(b.account_id).with_for_update()
        )
        base = select(*_BALANCE_COLUMNS).where(b.account_id == bindparam("account_id"))
        self.all_slices = base.order_by(b.slice).with_for_update()
        self.some_slices = base.where(among(b.slice, "slices", SmallInteger())).order_by(b.slice).with_for_update()
        self.one_slice = base.where(b.slice == bindparam("slice")).with_for_update()
        self.fullest, self.emptiest = {}, {}
        for side in NormalSide:
            available = _available_sql(side)
            self.fullest[side] = (
                base.where(available >= bindparam("need")).order_by(available.desc()).limit(1)
                .with_for_update(skip_locked=True)
            )
            self.emptiest[side] = (
                base.order_by(available, b.slice).limit(bindparam("count")).with_for_update(skip_locked=True)
            )


    def single_then(self, pick):
        """Return one statement locking the single rows, then running `pick` (PostgreSQL)."""
        if id(pick) not in self._single_then:
            # UNION ALL reads its branches in order, so the rows are locked in this order too.
            first = self.single.cte("locked_single").prefix_with("MATERIALIZED")
            then = pick.cte("picked").prefix_with("MATERIALIZED")
            self._single_then[id(pick)] = select(first).union_all(select(then))
        return self._single_then[id(pick)]


class _Locks:
    """Take the balance-row locks a batch needs: single rows by account id, then sliced accounts."""

    def __init__(self, session: Session, accounts: dict[int, Any]):
        self.conn = session.connection()
        self.sql = _Sql.of(session)
        self.accounts = accounts
        self.rows: dict[tuple[int, int], _Row] = {}
        self.preferred: dict[int, list[_Row]] = {}  # sliced account -> slices to use, best first

    def _take(self, stmt, params) -> list[_Row]:
        taken = []
        for r in self.conn.execute(stmt, params):
            account = self.accounts[r.account_id]
            key = (r.account_id, r.slice)
            if key not in self.rows:
                self.rows[key] = _Row(
                    r.id, r.account_id, r.slice, account.normal_side is NormalSide.CREDIT,
                    account.allow_negative,
                    [r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending],
                )
            taken.append(self.rows[key])
        return taken

    def single(self, account_ids: list[int]) -> None:
        self._take(self.sql.single, {"ids": account_ids})

    def sliced(self, account, fixed: set[int], decrease: int, increase: int) -> None:
        sql, this = self.sql, {"account_id": account.id}
        if fixed and decrease:
            rows = self._take(sql.all_slices, this)
        elif fixed:
            rows = self._take(sql.some_slices, {**this, "slices": sorted(fixed)})
        else:
            stmt, params = self._pick(account, decrease, increase)
            rows = self._fallback(account, decrease, self._take(stmt, params))
        self.preferred[account.id] = rows

    def single_then_pick(self, account_ids: list[int], sliced_id: int, fixed, decrease: int, increase: int) -> None:
        account = self.accounts[sliced_id]
        stmt, params = self._pick(account, decrease, increase)
        both = self.sql.single_then(stmt)
        taken = self._take(both, {**params, "ids": account_ids})
        picked = [row for row in taken if row.account_id == sliced_id]
        self.preferred[sliced_id] = self._fallback(account, decrease, picked)

    def _pick(self, account, decrease: int, increase: int):
        """Return the statement that takes free slices without waiting, and its parameters."""
        this = {"account_id": account.id}
        if decrease and not account.allow_negative:
            # The fullest slice that can cover the whole amount and that no other posting holds
            # (drawing on the fullest first keeps the slices even).
            return self.sql.fullest[account.normal_side], {**this, "need": decrease}
        # Money coming in goes to the emptiest free slices, which keeps them even; a large
        # amount (a program's funding) is spread over as many free slices as it can fill.
        wanted = min(account.slices, max(1, (increase + decrease) // SLICE_SHARE))
        return self.sql.emptiest[account.normal_side], {**this, "count": wanted}

    def _fallback(self, account, decrease: int, picked: list[_Row]) -> list[_Row]:
        """When no free slice would do, wait: for all slices (a debit), or for any one (a credit)."""
        if picked:
            return picked
        this = {"account_id": account.id}
        if decrease and not account.allow_negative:
            return self._take(self.sql.all_slices, this)
        return self._take(self.sql.one_slice, {**this, "slice": random.randrange(account.slices)})


def _load_accounts(session: Session, codes: set[str]) -> dict[str, Any]:
    rows = session.connection().execute(_Sql.of(session).accounts, {"codes": sorted(codes)}).all()
    return {r.code: r for r in rows}


def _validate_against_accounts(op: _Op, by_code: dict[str, Any]) -> None:
    totals: dict[str, int] = defaultdict(int)
    for part in op.parts:
        account = by_code.get(part.code)
        if account is None:
            raise NotFound(f"No ledger account {part.code}.", code="unknown_account")
        if account.status is AccountStatus.CLOSED:
            raise Conflict(f"Account {part.code} is closed.", code="account_closed")
        if part.currency is not None and part.currency != account.currency:
            raise RuleViolation(
                f"Account {part.code} holds {account.currency}, not {part.currency}.",
                code="currency_mismatch",
            )
        if part.slice is not None and not 0 <= part.slice < account.slices:
            raise RuleViolation(f"Account {part.code} has no slice {part.slice}.", code="bad_slice")
        totals[account.currency] += part.amount
    unbalanced = sorted(cur for cur, total in totals.items() if total)
    if unbalanced:
        raise RuleViolation(
            "Debits and credits differ in " + ", ".join(unbalanced) + ".", code="unbalanced"
        )


def _apply(op: _Op, locks: _Locks, by_code: dict[str, Any], deltas: dict[int, list[int]]) -> None:
    """Work out the entries and counter changes of one op; refuse it if a balance would go negative."""
    staged: dict[_Row, list[int]] = {}
    staged_deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def counters(row: _Row) -> list[int]:
        if row not in staged:
            staged[row] = [c + d for c, d in zip(row.counters, row.change)]
        return staged[row]

    def change(account, slice_, amount, hold, sign=1):
        effect = _effect(amount, hold, sign)
        if account.mode is BalanceMode.APPEND_ONLY:
            acc = staged_deltas[account.id]
        else:
            acc = counters(locks.rows[(account.id, slice_)])
        for i in range(4):
            acc[i] += effect[i]

    for part in op.releases:
        account = by_code[part.code]
        change(account, part.slice, part.amount, True, -1)

    entries = []
    for part in op.parts:
        account = by_code[part.code]
        if account.mode is BalanceMode.SINGLE:
            allocation = [(0, part.amount)]
        elif account.mode is BalanceMode.APPEND_ONLY:
            allocation = [(0, part.amount)]
        elif part.slice is not None:
            allocation = [(part.slice, part.amount)]
        else:
            allocation = _allocate(account, part.amount, locks.preferred[account.id], counters)
            if allocation is None:
                raise RuleViolation(
                    f"Account {part.code} has not enough funds.", code="insufficient_funds"
                )
        for slice_, amount in allocation:
            change(account, slice_, amount, op.is_hold)
            entries.append({
                "account_id": account.id, "slice": slice_, "amount": amount,
                "currency": account.currency, "is_hold": op.is_hold,
            })

    for row, after in staged.items():
        if not row.allow_negative and row.available(after) < 0:
            code = next(a.code for a in by_code.values() if a.id == row.account_id)
            raise RuleViolation(f"Account {code} has not enough funds.", code="insufficient_funds")

    for row, after in staged.items():
        row.change = [a - c for a, c in zip(after, row.counters)]
    for account_id, effect in staged_deltas.items():
        acc = deltas.setdefault(account_id, [0, 0, 0, 0])
        for i in range(4):
            acc[i] += effect[i]
    op.entry_rows = entries


def _allocate(account, amount: int, rows: list[_Row], counters) -> list[tuple[int, int]] | None:
    """Split a change of a sliced account over its locked slices; None if they cannot cover it."""
    if not _decreases(account, amount):
        return _fill(amount, [(row.slice, row.available(counters(row))) for row in rows])
    if account.allow_negative:
        fullest = max(rows, key=lambda row: (row.available(counters(row)), -row.slice))
        return [(fullest.slice, amount)]
    levels = [(row.slice, row.available(counters(row))) for row in rows]
    if sum(max(0, free) for _, free in levels) < abs(amount):
        return None
    # Draw the fullest slices down first, levelling them, so as many as possible stay usable.
    return [(slice_, -share) for slice_, share in _fill(-amount, [(s, -free) for s, free in levels])]


def _fill(amount: int, levels: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pour an amount into the lowest slices first, levelling them (signed like `amount`)."""
    levels = sorted(levels, key=lambda sl: (sl[1], sl[0]))
    size = abs(amount)
    count, below = 1, levels[0][1]
    # Widen the level while raising the lowest `count` slices to the next one still fits.
    while count < len(levels) and levels[count][1] * count - below <= size:
        below += levels[count][1]
        count += 1
    level, extra = divmod(size + below, count)
    sign = 1 if amount > 0 else -1
    parts = []
    for n, (slice_, current) in enumerate(levels[:count]):
        share = level - current + (1 if n < extra else 0)
        if share:
            parts.append((slice_, sign * share))
    return parts


def _lookup(session: Session, ops: list[_Op]) -> None:
    """Answer replays from the transactions already stored under their idempotency keys."""
    first: dict[str, _Op] = {}
    for op in ops:
        if op.key is None:
            continue
        if op.key in first:
            op.same_as = first[op.key]
        else:
            first[op.key] = op
    if not first:
        return
    hits = session.connection().execute(_Sql.of(session).lookup, {"keys": list(first)}).all()
    if not hits:
        return
    stored = session.scalars(select(Transaction).where(Transaction.id.in_([h.id for h in hits]))).all()
    for txn in stored:
        op = first[txn.idempotency_key]
        op.result = _replay_result(txn, op.request_hash)


def _replay_result(txn: Transaction, request_hash: str) -> Transaction | DomainError:
    if txn.request_hash == request_hash:
        return txn
    return Conflict(
        "This idempotency key was already used for a different request.", code="idempotency_conflict"
    )


def _execute(session: Session, ops: list[_Op]) -> None:
    """Run a batch of ops: look up replays, lock, check, then write everything at once."""
    session.flush()  # the engine talks to the connection directly, past the ORM's autoflush
    # A lone op skips the look-up (a round trip): a replay shows up as a key the insert finds
    # taken, or, if the op is refused, by looking its key up before answering the refusal.
    lone = len(ops) == 1
    if not lone:
        _lookup(session, ops)
    live = [op for op in ops if op.result is None and op.same_as is None]
    codes = {p.code for op in live for p in (*op.parts, *op.releases)}
    by_code = _load_accounts(session, codes) if codes else {}
    for op in live:
        try:
            _validate_against_accounts(op, by_code)
        except DomainError as exc:
            op.result = exc
    live = [op for op in live if op.result is None]

    locks = _Locks(session, {a.id: a for a in by_code.values()})
    _lock_rows(locks, live, by_code)

    deltas: dict[int, list[int]] = {}
    for op in live:
        try:
            _apply(op, locks, by_code, deltas)
        except DomainError as exc:
            op.result = exc
    _write(session, [op for op in live if op.result is None], locks, deltas)

    if lone and isinstance(ops[0].result, DomainError) and ops[0].key is not None:
        refusal, ops[0].result = ops[0].result, None
        _lookup(session, ops)
        ops[0].result = ops[0].result or refusal
    for op in ops:
        if op.same_as is not None:
            target = op.same_as.result
            if isinstance(target, Transaction):
                op.result = _replay_result(target, op.request_hash)
            else:
                op.result = target


def _lock_rows(locks: _Locks, live: list[_Op], by_code: dict[str, Any]) -> None:
    single: set[int] = set()
    fixed: dict[int, set[int]] = defaultdict(set)
    decrease: dict[int, int] = defaultdict(int)
    increase: dict[int, int] = defaultdict(int)
    for op in live:
        for part in (*op.parts, *op.releases):
            account = by_code[part.code]
            if account.mode is BalanceMode.SINGLE:
                single.add(account.id)
            elif account.mode is BalanceMode.SLICED:
                if part.slice is not None:
                    fixed[account.id].add(part.slice)
                elif _decreases(account, part.amount):
                    decrease[account.id] += abs(part.amount)
                else:
                    increase[account.id] += abs(part.amount)
    sliced = sorted(set(fixed) | set(decrease) | set(increase))
    plans = [(account_id, fixed.get(account_id, set()), decrease.get(account_id, 0),
              increase.get(account_id, 0)) for account_id in sliced]
    if single and plans and locks.sql.postgres and not plans[0][1]:
        # One round trip locks the single rows and picks the first sliced account's slices.
        locks.single_then_pick(sorted(single), *plans.pop(0))
    elif single:
        locks.single(sorted(single))
    for account_id, fixed_slices, down, up in plans:
        locks.sliced(locks.accounts[account_id], fixed_slices, down, up)


def _write(session: Session, ops: list[_Op], locks: _Locks, deltas: dict[int, list[int]]) -> None:
    """Write the transactions, entries and balance changes of the ops that passed every check."""
    now = utcnow()
    creating = [op for op in ops if op.values is not None]
    for op in creating:
        op.values.update(
            public_id=new_public_id("txn"), idempotency_key=op.key, request_hash=op.request_hash,
            created_at=now, resolved_at=None,
        )
    changed = sorted(
        (row for row in locks.rows.values() if any(row.change)), key=lambda r: (r.account_id, r.slice)
    )
    delta_rows = [(account_id, d) for account_id, d in sorted(deltas.items()) if any(d)]
    if session.get_bind().dialect.name == "postgresql":
        ids = _write_postgres(session, creating, changed, delta_rows, now)
    else:
        ids = _write_generic(session, creating, changed, delta_rows, now)
    if len(ids) < len(creating):
        _lost_race(session, ops, ids)
        return
    for row in changed:
        row.counters = [a + b for a, b in zip(row.counters, row.change)]
        row.change = [0, 0, 0, 0]
    for op in creating:
        op.result = _materialize(session, op.values, ids[op.key])

    resolving = [op for op in ops if op.resolve is not None]
    for op in resolving:
        op.resolve.status = op.resolve_status
        op.resolve.resolved_at = now
        if op.values is None:
            op.result = op.resolve
    if resolving:
        session.flush()


def _materialize(session: Session, values: dict, txn_id: int) -> Transaction:
    """Return the ORM object of a transaction just inserted, without reading it back."""
    txn = Transaction(id=txn_id, **values)
    make_transient_to_detached(txn)
    if session.identity_key(Transaction, txn_id) in session.identity_map:
        # After a rollback SQLite may reuse the id of a rolled-back row whose expired object
        # is still in the identity map.
        return session.merge(txn, load=False)
    session.add(txn)
    return txn


# One round trip writes a whole batch, its rows passed as JSON. If any transaction's key was
# taken concurrently (`complete` is false) nothing but the other transactions' rows is written,
# and the caller answers the lone request or gives up the batch.
_PG_WRITE = text("""
WITH new_txn AS (
    INSERT INTO ledger_transactions (public_id, kind, status, is_hold, idempotency_key,
        request_hash, reference, metadata, reverses_id, pending_id, expires_at, created_at)
    SELECT t.public_id, t.kind, t.status, t.is_hold, t.idempotency_key, t.request_hash,
        t.reference, t.metadata, t.reverses_id, t.pending_id, t.expires_at, :now
    FROM json_to_recordset(CAST(:txns AS json)) AS t(public_id text, kind text, status text,
        is_hold boolean, idempotency_key text, request_hash text, reference text, metadata jsonb,
        reverses_id bigint, pending_id bigint, expires_at timestamptz)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
), complete AS (
    SELECT count(*) = :count AS ok FROM new_txn
), new_entries AS (
    INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
    SELECT new_txn.id, e.account_id, e.slice, e.amount, e.currency, e.is_hold, :now
    FROM json_to_recordset(CAST(:entries AS json)) AS e(key text, account_id bigint, slice smallint,
        amount bigint, currency text, is_hold boolean)
    JOIN new_txn ON new_txn.idempotency_key = e.key
    WHERE (SELECT ok FROM complete)
), balance_changes AS (
    UPDATE ledger_balances AS b
    SET debits_posted = b.debits_posted + c.ddp, credits_posted = b.credits_posted + c.dcp,
        debits_pending = b.debits_pending + c.ddh, credits_pending = b.credits_pending + c.dch
    FROM json_to_recordset(CAST(:balances AS json)) AS c(id bigint, ddp bigint, dcp bigint,
        ddh bigint, dch bigint)
    WHERE b.id = c.id AND (SELECT ok FROM complete)
), new_deltas AS (
    INSERT INTO ledger_balance_deltas (account_id, debits_posted, credits_posted, debits_pending,
        credits_pending)
    SELECT d.account_id, d.ddp, d.dcp, d.ddh, d.dch
    FROM json_to_recordset(CAST(:deltas AS json)) AS d(account_id bigint, ddp bigint, dcp bigint,
        ddh bigint, dch bigint)
    WHERE (SELECT ok FROM complete)
)
SELECT id, idempotency_key FROM new_txn
""")


def _json(rows) -> str:
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value):
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_TXN_COLUMNS = ("public_id", "kind", "status", "is_hold", "idempotency_key", "request_hash",
                "reference", "reverses_id", "pending_id", "expires_at")


def _write_postgres(session, creating, changed, delta_rows, now) -> dict[str, int]:
    txns = []
    for op in creating:
        row = {name: op.values[name] for name in _TXN_COLUMNS}
        row["metadata"] = op.values["meta"]
        txns.append(row)
    params = {
        "now": now,
        "count": len(creating),
        "txns": _json(txns),
        "entries": _json([{**e, "key": op.key} for op in creating for e in op.entry_rows]),
        "balances": _json([{"id": r.id, "ddp": r.change[0], "dcp": r.change[1], "ddh": r.change[2],
                            "dch": r.change[3]} for r in changed]),
        "deltas": _json([{"account_id": account_id, "ddp": d[0], "dcp": d[1], "ddh": d[2], "dch": d[3]}
                         for account_id, d in delta_rows]),
    }
    return {key: txn_id for txn_id, key in session.connection().execute(_PG_WRITE, params)}


def _write_generic(session, creating, changed, delta_rows, now) -> dict[str, int]:
    ids: dict[str, int] = {}
    if creating:
        stmt = (
            dialect_insert(session, _transactions)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(_transactions.c.id, _transactions.c.idempotency_key)
        )
        rows = [{**op.values, "metadata": op.values["meta"]} for op in creating]
        for row in rows:
            del row["meta"]
        ids = {key: txn_id for txn_id, key in session.execute(stmt, rows)}
        if len(ids) < len(creating):
            return ids
        entry_rows = [
            {**e, "transaction_id": ids[op.key], "created_at": now} for op in creating for e in op.entry_rows
        ]
        session.execute(_entries.insert(), entry_rows)
    if changed:
        c = _balances.c
        session.execute(
            _balances.update()
            .where(c.id == bindparam("row_id"))
            .values(
                debits_posted=c.debits_posted + bindparam("ddp"),
                credits_posted=c.credits_posted + bindparam("dcp"),
                debits_pending=c.debits_pending + bindparam("ddh"),
                credits_pending=c.credits_pending + bindparam("dch"),
            ),
            [{"row_id": r.id, "ddp": r.change[0], "dcp": r.change[1], "ddh": r.change[2],
              "dch": r.change[3]} for r in changed],
        )
    if delta_rows:
        session.execute(_deltas.insert(), [
            {"account_id": account_id, "debits_posted": d[0], "credits_posted": d[1],
             "debits_pending": d[2], "credits_pending": d[3]}
            for account_id, d in delta_rows
        ])
    return ids


def _lost_race(session: Session, ops: list[_Op], ids: dict[str, int]) -> None:
    """Answer a lone op whose key is taken (a replay), or give up a batch that lost a race."""
    if len(ops) > 1:
        raise Conflict(
            "A concurrent request used the same idempotency key; roll back and retry.",
            code="idempotency_race",
        )
    # Nothing has been written (the insert did nothing), so the request is answered cleanly.
    op = ops[0]
    txn = session.scalars(select(Transaction).where(Transaction.idempotency_key == op.key)).one()
    op.result = _replay_result(txn, op.request_hash)


def _one(session: Session, op: _Op) -> Transaction:
    _execute(session, [op])
    if isinstance(op.result, DomainError):
        raise op.result
    return op.result


# ---------------------------------------------------------------------------------------------
# Public operations


def post(
    session: Session,
    *,
    kind: str,
    idempotency_key: str,
    entries: Sequence[Leg],
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transaction:
    """Post one balanced transaction; a replay of the same request returns the first one."""
    return _one(session, _new_op("post", kind, idempotency_key, entries, reference, metadata))


def post_many(session: Session, transfers: Sequence[Transfer]) -> list[Transaction | DomainError]:
    """Post a batch of transactions under one set of locks; answer each with its transaction or refusal."""
    if not 1 <= len(transfers) <= MAX_BATCH:
        raise ValidationFailed({"transfers": [f"A batch has 1 to {MAX_BATCH} transfers."]})
    ops: list[_Op] = []
    refused: dict[int, DomainError] = {}
    for n, t in enumerate(transfers):
        try:
            ops.append(_new_op("post", t.kind, t.idempotency_key, t.entries, t.reference, t.metadata))
        except DomainError as exc:
            refused[n] = exc
    _execute(session, ops)
    answers = iter(op.result for op in ops)
    return [refused[n] if n in refused else next(answers) for n in range(len(transfers))]


def hold(
    session: Session,
    *,
    kind: str,
    idempotency_key: str,
    entries: Sequence[Leg],
    timeout: dt.timedelta | None = None,
    expires_at: dt.datetime | None = None,
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transaction:
    """Reserve funds in a pending transaction that is later posted (wholly or partly) or voided."""
    now = utcnow()
    if expires_at is not None and timeout is not None:
        raise ValidationFailed({"expires_at": ["Give a timeout or an expiry time, not both."]})
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationFailed({"expires_at": ["Must carry a time zone."]})
        extra = {"expires_at": expires_at.isoformat()}
        timeout_ = expires_at - now
    else:
        timeout_ = DEFAULT_HOLD_TIMEOUT if timeout is None else timeout
        extra = {"timeout": timeout_.total_seconds()}
        expires_at = now + timeout_
    if not dt.timedelta(0) < timeout_ <= MAX_HOLD_TIMEOUT:
        raise ValidationFailed({"timeout": [f"A hold lasts more than zero and at most {MAX_HOLD_TIMEOUT}."]})
    op = _new_op("hold", kind, idempotency_key, entries, reference, metadata,
                 is_hold=True, expires_at=expires_at, extra=extra)
    return _one(session, op)


def _find_locked(session: Session, txn: Transaction | str) -> Transaction:
    public_id = txn if isinstance(txn, str) else txn.public_id
    found = session.scalars(
        select(Transaction)
        .where(Transaction.public_id == public_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if found is None:
        raise NotFound(f"No ledger transaction {public_id}.", code="unknown_transaction")
    return found


def _entry_parts(session: Session, txn: Transaction) -> list[_Part]:
    rows = session.execute(
        select(Account.code, Entry.amount, Entry.currency, Entry.slice)
        .join(Account, Account.id == Entry.account_id)
        .where(Entry.transaction_id == txn.id)
        .order_by(Entry.id)
    ).all()
    return [_Part(r.code, r.amount, r.currency, r.slice) for r in rows]


def _stored(session: Session, key: str, request_hash: str) -> Transaction | None:
    txn = session.scalars(select(Transaction).where(Transaction.idempotency_key == key)).one_or_none()
    if txn is None:
        return None
    result = _replay_result(txn, request_hash)
    if isinstance(result, DomainError):
        raise result
    return result


def _net_by_account(parts: Iterable[_Part]) -> dict[str, int]:
    net: dict[str, int] = defaultdict(int)
    for part in parts:
        net[part.code] += part.amount
    return net


def _requested_amounts(held: dict[str, int], amount: int | None, entries, what: str) -> dict[str, int]:
    """Turn a partial amount or partial legs into a signed amount per account, within `held`."""
    if amount is not None and entries is not None:
        raise ValidationFailed({"amount": ["Give an amount or entries, not both."]})
    if amount is None and entries is None:
        return dict(held)
    if amount is not None:
        _check_int_amount(amount, "amount")
        if len(held) != 2:
            raise ValidationFailed(
                {"amount": [f"This transaction touches {len(held)} accounts; give the {what} entries."]}
            )
        wanted = {code: amount if net > 0 else -amount for code, net in held.items()}
    else:
        wanted = defaultdict(int)
        for leg in _check_legs(entries):
            wanted[leg.account] += _signed(leg)
    for code, value in wanted.items():
        limit = held.get(code, 0)
        if value and (limit == 0 or (value > 0) != (limit > 0) or abs(value) > abs(limit)):
            raise RuleViolation(
                f"The {what} on {code} exceeds what remains of the original.", code="exceeds_original"
            )
    return {code: value for code, value in wanted.items() if value}


def post_pending(
    session: Session,
    hold_txn: Transaction | str,
    *,
    amount: int | None = None,
    entries: Sequence[Leg] | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transaction:
    """Post a pending hold, wholly or partly; the rest of the reservation is released."""
    public_id = hold_txn if isinstance(hold_txn, str) else hold_txn.public_id
    key = idempotency_key or f"{public_id}:post"
    _check_header("capture", key, None)
    metadata = check_metadata(metadata)
    request_hash = _request_hash({
        "op": "capture", "hold": public_id, "amount": amount,
        "legs": _leg_json(list(entries) if entries is not None else None), "metadata": metadata,
    })
    replay = _stored(session, key, request_hash)
    if replay is not None:
        return replay
    held = _find_locked(session, public_id)
    if not held.is_hold:
        raise RuleViolation(f"{public_id} is not a hold.", code="not_a_hold")
    if held.status is TransactionStatus.VOIDED:
        raise Conflict(f"Hold {public_id} was voided.", code="hold_voided")
    if held.status is TransactionStatus.POSTED:
        # The same request may have won the lock just before us: answer it as a replay.
        replay = _stored(session, key, request_hash)
        if replay is not None:
            return replay
        raise Conflict(f"Hold {public_id} was already posted.", code="hold_posted")
    if held.expires_at <= utcnow():
        raise RuleViolation(f"Hold {public_id} has expired.", code="hold_expired")

    held_parts = _entry_parts(session, held)
    wanted = _requested_amounts(_net_by_account(held_parts), amount, entries, "capture")
    parts = []
    # Post on the very slices the hold reserved, so the reservation turns into the posting.
    for code, value in wanted.items():
        remaining = abs(value)
        for part in held_parts:
            if part.code != code or not remaining:
                continue
            take = min(abs(part.amount), remaining)
            parts.append(_Part(code, take if part.amount > 0 else -take, None, part.slice))
            remaining -= take
    values = {
        "kind": held.kind, "status": TransactionStatus.POSTED, "is_hold": False,
        "reference": held.reference, "meta": metadata or held.meta, "expires_at": None,
        "reverses_id": None, "pending_id": held.id,
    }
    op = _Op(key, request_hash, values, parts, releases=held_parts, resolve=held,
             resolve_status=TransactionStatus.POSTED)
    return _one(session, op)


def void_pending(session: Session, hold_txn: Transaction | str) -> Transaction:
    """Release a pending hold; voiding it again is a no-op, voiding a posted one a conflict."""
    public_id = hold_txn if isinstance(hold_txn, str) else hold_txn.public_id
    held = _find_locked(session, public_id)
    if not held.is_hold:
        raise RuleViolation(f"{public_id} is not a hold.", code="not_a_hold")
    if held.status is TransactionStatus.VOIDED:
        return held
    if held.status is TransactionStatus.POSTED:
        raise Conflict(f"Hold {public_id} was already posted.", code="hold_posted")
    op = _Op(None, None, None, [], releases=_entry_parts(session, held), resolve=held,
             resolve_status=TransactionStatus.VOIDED)
    return _one(session, op)


def void_expired_holds(session: Session, *, now: dt.datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
    """Void up to `limit` holds whose time is up; return how many (run it until it returns 0)."""
    now = now or utcnow()
    limit = max(1, min(int(limit), EXPIRY_BATCH))
    # SKIP LOCKED lets several workers share the work and passes over a hold being captured.
    expired = session.scalars(
        select(Transaction)
        .where(Transaction.status == TransactionStatus.PENDING, Transaction.expires_at <= now)
        .order_by(Transaction.expires_at, Transaction.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    if not expired:
        return 0
    ops = [
        _Op(None, None, None, [], releases=_entry_parts(session, held), resolve=held,
            resolve_status=TransactionStatus.VOIDED)
        for held in expired
    ]
    _execute(session, ops)
    for op in ops:
        if isinstance(op.result, DomainError):
            raise op.result
    return len(ops)


def reverse(
    session: Session,
    txn: Transaction | str,
    *,
    idempotency_key: str | None = None,
    amount: int | None = None,
    entries: Sequence[Leg] | None = None,
    kind: str = "reversal",
    reference: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transaction:
    """Post the opposite of a transaction, or of part of it (a refund), linked to it."""
    # Without an amount or entries it reverses whatever is left, after which the transaction is
    # fully reversed; partial reversals together never exceed the original.
    public_id = txn if isinstance(txn, str) else txn.public_id
    partial = amount is not None or entries is not None
    if partial and idempotency_key is None:
        raise ValidationFailed({"idempotency_key": ["A partial reversal needs its own idempotency key."]})
    key = idempotency_key or f"{public_id}:reverse"
    _check_header(kind, key, reference)
    metadata = check_metadata(metadata)
    request_hash = _request_hash({
        "op": "reverse", "txn": public_id, "amount": amount, "kind": kind, "reference": reference,
        "legs": _leg_json(list(entries) if entries is not None else None), "metadata": metadata,
    })
    replay = _stored(session, key, request_hash)
    if replay is not None:
        return replay
    original = _find_locked(session, public_id)
    if original.is_hold:
        raise RuleViolation("A hold is voided, not reversed; reverse its posting instead.", code="not_reversible")
    if original.reverses_id is not None:
        raise RuleViolation("A reversal is not reversed; post a new transaction.", code="not_reversible")

    remaining = _net_by_account(_entry_parts(session, original))
    earlier = session.execute(
        select(Account.code, total(Entry.amount))
        .join(Account, Account.id == Entry.account_id)
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .where(Transaction.reverses_id == original.id)
        .group_by(Account.code)
    ).all()
    for code, reversed_ in earlier:
        remaining[code] += reversed_
    remaining = {code: value for code, value in remaining.items() if value}
    if not remaining:
        # The same request may have won the lock just before us: answer it as a replay.
        replay = _stored(session, key, request_hash)
        if replay is not None:
            return replay
        raise Conflict(f"{public_id} is already fully reversed.", code="already_reversed")
    # What remains to reverse is the opposite of the remaining net movement.
    wanted = _requested_amounts(remaining, amount, _flip(entries), "reversal")
    values = {
        "kind": kind, "status": TransactionStatus.POSTED, "is_hold": False,
        "reference": reference if reference is not None else original.reference,
        "meta": metadata, "expires_at": None, "reverses_id": original.id, "pending_id": None,
    }
    parts = [_Part(code, -value) for code, value in wanted.items()]
    return _one(session, _Op(key, request_hash, values, parts))


def _flip(entries: Sequence[Leg] | None) -> list[Leg] | None:
    """Express reversal legs in the original's direction, to compare with what remains of it."""
    if entries is None:
        return None
    legs = _check_legs(entries)
    flipped = Side.CREDIT, Side.DEBIT
    return [Leg(leg.account, flipped[0] if Side(leg.side) is Side.DEBIT else flipped[1], leg.amount, leg.currency)
            for leg in legs]
