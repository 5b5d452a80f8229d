"""Reconciliation: import a Stripe or bank statement, match it, resolve its exceptions, report by day.

Importing the same statement again answers the reconciliation it made the first time: the same file is
the same SHA-256 of its bytes; the same API fetch is the same SHA-256 of the lines Stripe listed for the
same period. An import is one database transaction: a bad line, a limit passed or Stripe failing leaves
nothing behind.

An exception (a line not `matched`) is resolved with a note, or with an adjustment: a ledger transaction
between the statement's account (union:bank, stripe:clearing) and reconciliation:differences, entered by
finance and posted when an approver who did not enter it confirms it. A resolution is of a match group: the
lines of a mismatched group (split lines, a bank-file line) are explained together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.auth import Actor
from core.db import utcnow
from core.errors import Conflict, DomainError, Forbidden, NotFound, ValidationFailed
from core.i18n import BUSINESS_TZ
from core.ids import new_public_id
from core.pagination import Page, paginate
from payments import accounts, ledger
from payments.disbursement.models import Funding
from payments.ledger import Entry, NormalSide, credit, debit
from payments.payouts.models import Payout
from payments.reconciliation import importers, matching
from payments.reconciliation.importers import BalanceTransactions
from payments.reconciliation.models import (ImportMethod, LineOrigin, LineState, Reconciliation, ReconciliationItem,
                                            ReconciliationLine, Resolution, ResolutionKind, ResolutionStatus, Source)
from payments.topups.models import TopUp

ACCOUNT_OF = {Source.BANK: accounts.BANK, Source.STRIPE: accounts.CLEARING}
REPORT_ACCOUNTS = (accounts.BANK, accounts.CLEARING, accounts.IN_TRANSIT)
STATEMENT_OF = {accounts.BANK: Source.BANK, accounts.CLEARING: Source.STRIPE}
DEFAULT_MAX_LINES = 1_000_000
DEFAULT_API_MAX_LINES = 100_000
DEFAULT_MAX_BYTES = 128 * 1024 * 1024
MAX_API_DAYS = 92
MAX_REPORT_DAYS = 62
MAX_NOTE = 1000
MAX_ADJUSTMENT = 10**12
EXPORT_MAX_LINES = 100_000
_READ_CHUNK = 1024 * 1024
EXCEPTION_STATES = (LineState.UNMATCHED_INTERNAL, LineState.UNMATCHED_EXTERNAL, LineState.MISMATCHED)


@dataclass(frozen=True)
class Limits:
    """How big a statement may be."""

    max_lines: int = DEFAULT_MAX_LINES
    api_max_lines: int = DEFAULT_API_MAX_LINES
    max_bytes: int = DEFAULT_MAX_BYTES


def limits_from(config) -> Limits:
    """Read the limits from the app configuration (defaults where it says nothing)."""
    return Limits(int(config.get("RECONCILIATION_MAX_LINES", DEFAULT_MAX_LINES)),
                  int(config.get("RECONCILIATION_API_MAX_LINES", DEFAULT_API_MAX_LINES)),
                  int(config.get("RECONCILIATION_MAX_BYTES", DEFAULT_MAX_BYTES)))


def snapshot(rec: Reconciliation) -> dict:
    return {"source": rec.source.value, "method": rec.method.value, "filename": rec.filename, "sha256": rec.sha256,
            "period": [rec.period_start, rec.period_end], "lines": rec.lines_count, "matched": rec.matched,
            "unmatched_internal": rec.unmatched_internal, "unmatched_external": rec.unmatched_external,
            "mismatched": rec.mismatched}


# --- imports -------------------------------------------------------------------------------------------

def _digest(fileobj: BinaryIO, max_bytes: int) -> tuple[str, BinaryIO]:
    """Hash the upload (refusing one past the size limit) and return it rewound for reading."""
    if not (hasattr(fileobj, "seekable") and fileobj.seekable()):
        spooled = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        shutil.copyfileobj(fileobj, spooled)
        fileobj = spooled
    fileobj.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := fileobj.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ValidationFailed({"file": [f"The file is larger than {max_bytes // (1024 * 1024)} MiB."]})
        digest.update(chunk)
    fileobj.seek(0)
    return digest.hexdigest(), fileobj


def _existing(session: Session, source: Source, sha256: str) -> Reconciliation | None:
    return session.scalar(select(Reconciliation).where(Reconciliation.source == source,
                                                       Reconciliation.sha256 == sha256))


def import_file(session: Session, actor: Actor, *, source: Source, fileobj: BinaryIO, filename: str | None,
                window_days: int, limits: Limits = Limits()) -> tuple[Reconciliation, bool]:
    """Import a statement CSV (the bank's, or Stripe's balance-transactions export) and match it.

    Returns the reconciliation and whether it is new; the same file again returns the first one."""
    sha256, fileobj = _digest(fileobj, limits.max_bytes)
    parse = importers.bank_lines if source is Source.BANK else importers.stripe_csv_lines
    return _import(session, actor, source=source, method=ImportMethod.FILE,
                   filename=(filename or f"{source.value}.csv")[:255], sha256=sha256,
                   rows=lambda: parse(fileobj, max_lines=limits.max_lines), period=None, window_days=window_days)


def import_stripe_api(session: Session, actor: Actor, provider: BalanceTransactions, *, since: dt.date,
                      until: dt.date, window_days: int, limits: Limits = Limits(),
                      today: dt.date | None = None) -> tuple[Reconciliation, bool]:
    """Fetch the platform's Stripe balance transactions of the business days since..until (both included)
    through the API and match them."""
    today = today or dt.datetime.now(BUSINESS_TZ).date()
    if until < since:
        raise ValidationFailed({"until": ["The period ends before it starts."]})
    if (until - since).days >= MAX_API_DAYS:
        raise ValidationFailed({"until": [f"A period is at most {MAX_API_DAYS} days."]})
    if until > today:
        raise ValidationFailed({"until": ["The period cannot end after today."]})
    # No transaction is held open across the calls to Stripe (on SQLite it would hold the write lock).
    session.rollback()
    found = provider.list(created_gte=int(matching.start_of(since).timestamp()),
                          created_lt=int(matching.start_of(until + dt.timedelta(days=1)).timestamp()),
                          max_items=limits.api_max_lines)
    rows = list(importers.stripe_api_lines(found))
    canonical = json.dumps(["stripe-api", since.isoformat(), until.isoformat(), rows], default=str,
                           ensure_ascii=False, separators=(",", ":"))
    sha256 = hashlib.sha256(canonical.encode()).hexdigest()
    return _import(session, actor, source=Source.STRIPE, method=ImportMethod.API, filename=None, sha256=sha256,
                   rows=lambda: iter(rows), period=(since, until), window_days=window_days)


def _import(session: Session, actor: Actor, *, source: Source, method: ImportMethod, filename: str | None,
            sha256: str, rows, period: tuple[dt.date, dt.date] | None,
            window_days: int) -> tuple[Reconciliation, bool]:
    existing = _existing(session, source, sha256)
    if existing is not None:
        return existing, False
    today = dt.datetime.now(BUSINESS_TZ).date()
    rec = Reconciliation(public_id=new_public_id("rec"), source=source, method=method, account=ACCOUNT_OF[source],
                         filename=filename, sha256=sha256, period_start=today, period_end=today,
                         imported_by_id=actor.user_id)
    try:
        session.add(rec)
        # The unique (source, sha256) makes a concurrent import of the same statement wait here for the first.
        session.flush()
        matching.stage(session, rows())
        count, last, first_day, last_day, out, in_, fees = matching.staged_summary(session)
        rec.period_start, rec.period_end = period or (first_day or today, last_day or today)
        rec.lines_count, rec.total_out, rec.total_in, rec.total_fees = count, out, in_, fees
        session.flush()
        matching.match(session, rec, window_days=window_days, last_line_no=last)
        counts = dict(session.execute(select(ReconciliationLine.state, func.count())
                                      .where(ReconciliationLine.reconciliation_id == rec.id)
                                      .group_by(ReconciliationLine.state)).all())
        rec.matched = counts.get(LineState.MATCHED, 0)
        rec.unmatched_internal = counts.get(LineState.UNMATCHED_INTERNAL, 0)
        rec.unmatched_external = counts.get(LineState.UNMATCHED_EXTERNAL, 0)
        rec.mismatched = counts.get(LineState.MISMATCHED, 0)
        audit.record(session, actor, "reconciliation.imported", "reconciliation", rec.public_id, after=snapshot(rec))
        session.commit()
    except IntegrityError:
        session.rollback()
        existing = _existing(session, source, sha256)
        if existing is None:
            raise
        return existing, False
    except BaseException:
        session.rollback()
        raise
    return rec, True


# --- reads ---------------------------------------------------------------------------------------------

def get_reconciliation(session: Session, public_id: str, *, lock: bool = False) -> Reconciliation:
    query = select(Reconciliation).where(Reconciliation.public_id == public_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    rec = session.scalar(query)
    if rec is None:
        raise NotFound("No such reconciliation.")
    return rec


def list_reconciliations(session: Session, *, source: Source | None = None, limit: int,
                         cursor: str | None) -> Page:
    """The reconciliations, newest first."""
    query = select(Reconciliation)
    if source is not None:
        query = query.where(Reconciliation.source == source)
    return paginate(session, query, Reconciliation.id, limit=limit, cursor=cursor, descending=True)


EXCEPTIONS = "exceptions"


def _line_filter(query, state: LineState | str | None):
    if state == EXCEPTIONS:
        return query.where(ReconciliationLine.state != LineState.MATCHED)
    if state is not None:
        return query.where(ReconciliationLine.state == LineState(state))
    return query


def list_lines(session: Session, rec: Reconciliation, *, state: LineState | str | None = None, limit: int,
               cursor: str | None) -> Page:
    """A page of the reconciliation's lines in line order; `state` picks one state, or `exceptions`."""
    query = _line_filter(select(ReconciliationLine).where(ReconciliationLine.reconciliation_id == rec.id), state)
    page = paginate(session, query, ReconciliationLine.line_no, limit=limit, cursor=cursor)
    describe(session, rec, page.items)
    return page


@dataclass(frozen=True)
class ItemRef:
    """One of ours in a match group, as the workbench shows it."""

    kind: str
    id: str
    amount: int  # what the statement should show for it (statement sign)
    status: str


def _items_by_group(session: Session, rec_id: int, groups: set[int]) -> dict[int, list[ItemRef]]:
    """The items of the bigger groups (more than one line or item) among `groups`."""
    if not groups:
        return {}
    i = ReconciliationItem
    rows = session.execute(
        select(i.group_no, Payout.public_id, Payout.status, Funding.public_id, Funding.status, TopUp.public_id,
               TopUp.status, i.amount)
        .outerjoin(Payout, Payout.id == i.payout_id).outerjoin(Funding, Funding.id == i.funding_id)
        .outerjoin(TopUp, TopUp.id == i.top_up_id)
        .where(i.reconciliation_id == rec_id, i.group_no.in_(sorted(groups)))
        .order_by(i.group_no, i.id)).all()
    out: dict[int, list[ItemRef]] = {}
    for group, payout, payout_status, funding, funding_status, top_up, top_up_status, amount in rows:
        if payout:
            ref = ItemRef("payout", payout, amount, payout_status.value)
        elif funding:
            ref = ItemRef("funding", funding, amount, funding_status.value)
        else:
            ref = ItemRef("top_up", top_up, amount, top_up_status.value)
        out.setdefault(group, []).append(ref)
    return out


def _own_items(session: Session, lines: list[ReconciliationLine]) -> dict[int, ItemRef]:
    """The one item each line of a one-to-one group holds, by line number."""
    found: dict[int, ItemRef] = {}
    for kind, model, column in (("payout", Payout, "payout_id"), ("funding", Funding, "funding_id"),
                                ("top_up", TopUp, "top_up_id")):
        holders: dict[int, list[ReconciliationLine]] = {}
        for line in lines:
            if getattr(line, column) is not None:
                holders.setdefault(getattr(line, column), []).append(line)
        if not holders:
            continue
        for pk, public_id, status in session.execute(
                select(model.id, model.public_id, model.status).where(model.id.in_(sorted(holders)))).all():
            for line in holders[pk]:
                found[line.line_no] = ItemRef(kind, public_id, _expected_of(line), status.value)
    return found


def _expected_of(line: ReconciliationLine) -> int:
    """What the statement should show for a one-to-one line's item: the line's amount, less the difference."""
    if line.origin is LineOrigin.INTERNAL or not line.difference:
        return line.amount
    return line.amount - line.difference


def describe(session: Session, rec: Reconciliation, lines: list[ReconciliationLine]) -> None:
    """Attach to each line its group's items and its resolution (if any) for showing."""
    own = _own_items(session, lines)
    bigger = _items_by_group(session, rec.id, {line.group_no for line in lines if line.line_no not in own})
    resolutions = _resolutions_by_group(session, rec.id, {line.group_no for line in lines
                                                           if line.state != LineState.MATCHED})
    for line in lines:
        line.items = [own[line.line_no]] if line.line_no in own else bigger.get(line.group_no, [])
        line.resolution = resolutions.get(line.group_no)


def _resolutions_by_group(session: Session, rec_id: int, groups: set[int]) -> dict[int, Resolution]:
    if not groups:
        return {}
    return {r.group_no: r for r in session.scalars(select(Resolution).where(
        Resolution.reconciliation_id == rec_id, Resolution.group_no.in_(sorted(groups)),
        Resolution.status != ResolutionStatus.REJECTED))}


def get_line(session: Session, rec: Reconciliation, line_no: int) -> ReconciliationLine:
    line = session.get(ReconciliationLine, (rec.id, line_no))
    if line is None:
        raise NotFound("No such line in this reconciliation.")
    return line


def list_resolutions(session: Session, *, rec: Reconciliation | None = None, kind: ResolutionKind | None = None,
                     status: ResolutionStatus | None = None, limit: int, cursor: str | None) -> Page:
    """Resolutions, oldest first: of one reconciliation, of a kind and status (the approvers' queue: pending
    adjustments)."""
    query = select(Resolution)
    if rec is not None:
        query = query.where(Resolution.reconciliation_id == rec.id)
    if kind is not None:
        query = query.where(Resolution.kind == kind)
    if status is not None:
        query = query.where(Resolution.status == status)
    return paginate(session, query, Resolution.id, limit=limit, cursor=cursor)


# --- resolutions ---------------------------------------------------------------------------------------

def _group_size(session: Session, rec: Reconciliation, line: ReconciliationLine) -> int:
    """How many exception lines the line's group has (a mismatched group may have several)."""
    if line.state != LineState.MISMATCHED:
        return 1
    return session.scalar(select(func.count()).where(
        ReconciliationLine.reconciliation_id == rec.id, ReconciliationLine.state == LineState.MISMATCHED,
        ReconciliationLine.group_no == line.group_no))


def _note(note: str | None) -> str:
    note = (note or "").strip()
    if not note or len(note) > MAX_NOTE:
        raise ValidationFailed({"note": [f"Say how the exception is explained (1-{MAX_NOTE} characters)."]})
    return note


def resolution_snapshot(r: Resolution) -> dict:
    return {"reconciliation_id": r.reconciliation.public_id, "group": r.group_no, "line": r.line_no,
            "kind": r.kind.value, "status": r.status.value, "note": r.note, "account": r.account,
            "amount": r.amount, "transaction_id": r.transaction_id}


def resolve_line(session: Session, actor: Actor, rec_id: str, line_no: int, *, kind: ResolutionKind, note: str,
                 amount: int | None = None) -> ReconciliationLine:
    """Resolve an exception (and the rest of its group) with a note, at once, or with an adjustment, posted
    when another approver confirms it. An adjustment's `amount` is in the statement's sign and defaults to
    the group's difference."""
    try:
        rec = get_reconciliation(session, rec_id, lock=True)
        line = get_line(session, rec, line_no)
        if line.state == LineState.MATCHED:
            raise Conflict("The line is matched: there is nothing to resolve.", code="line_matched")
        if _resolutions_by_group(session, rec.id, {line.group_no}):
            raise Conflict("The line is already resolved, or its adjustment awaits approval.",
                           code="already_resolved")
        note = _note(note)
        size = _group_size(session, rec, line)
        resolution = Resolution(reconciliation_id=rec.id, reconciliation=rec, group_no=line.group_no,
                                line_no=line.line_no, lines=size, kind=kind, note=note, currency=line.currency,
                                created_by_id=actor.user_id)
        if kind is ResolutionKind.NOTE:
            resolution.public_id, resolution.status = new_public_id("res"), ResolutionStatus.RESOLVED
            resolution.decided_by_id, resolution.decided_at = actor.user_id, utcnow()
            rec.resolved += size
            action = "reconciliation.resolved"
        else:
            amount = line.difference if amount is None else amount
            if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_ADJUSTMENT:
                raise ValidationFailed({"amount": ["The adjustment is a non-zero whole number of fen."]})
            resolution.public_id, resolution.status = new_public_id("adj"), ResolutionStatus.PENDING
            resolution.account, resolution.amount = rec.account, amount
            action = "reconciliation.adjustment_entered"
        session.add(resolution)
        session.flush()
        audit.record(session, actor, action, "reconciliation_resolution", resolution.public_id,
                     after=resolution_snapshot(resolution))
        session.commit()
    except DomainError:
        session.rollback()
        raise
    describe(session, rec, [line])
    return line


def _locked_adjustment(session: Session, public_id: str) -> tuple[Reconciliation, Resolution]:
    found = session.scalar(select(Resolution).where(Resolution.public_id == public_id,
                                                    Resolution.kind == ResolutionKind.ADJUSTMENT))
    if found is None:
        raise NotFound("No such adjustment.")
    # The reconciliation first, as resolving takes it: one order, no deadlock.
    rec = session.scalar(select(Reconciliation).where(Reconciliation.id == found.reconciliation_id)
                         .with_for_update().execution_options(populate_existing=True))
    adjustment = session.scalar(select(Resolution).where(Resolution.id == found.id).with_for_update()
                                .execution_options(populate_existing=True))
    if adjustment.status != ResolutionStatus.PENDING:
        raise Conflict(f"The adjustment is already {adjustment.status.value}.", code="adjustment_decided")
    return rec, adjustment


def approve_adjustment(session: Session, actor: Actor, public_id: str) -> Resolution:
    """Confirm an adjustment (an approver who did not enter it): the ledger transaction is posted and the
    exception resolved."""
    try:
        rec, adjustment = _locked_adjustment(session, public_id)
        if actor.user_id is not None and actor.user_id == adjustment.created_by_id:
            raise Forbidden("The adjustment was entered by you: another approver must confirm it.",
                            code="same_person")
        before = resolution_snapshot(adjustment)
        accounts.open_platform_accounts(session)
        amount = abs(adjustment.amount)
        if adjustment.amount > 0:  # the statement shows more leaving than the books: the account is credited
            entries = [credit(adjustment.account, amount), debit(accounts.DIFFERENCES, amount)]
        else:
            entries = [debit(adjustment.account, amount), credit(accounts.DIFFERENCES, amount)]
        txn = ledger.post(session, kind="reconciliation_adjustment", idempotency_key=f"{adjustment.public_id}:post",
                          reference=adjustment.public_id, entries=entries,
                          metadata={"reconciliation_id": rec.public_id, "line": adjustment.line_no,
                                    "adjustment_id": adjustment.public_id})
        adjustment.status, adjustment.transaction_id = ResolutionStatus.RESOLVED, txn.public_id
        adjustment.decided_by_id, adjustment.decided_at = actor.user_id, utcnow()
        rec.resolved += adjustment.lines
        audit.record(session, actor, "reconciliation.adjustment_approved", "reconciliation_resolution",
                     adjustment.public_id, before=before, after=resolution_snapshot(adjustment))
        session.commit()
    except DomainError:
        session.rollback()
        raise
    return adjustment


def reject_adjustment(session: Session, actor: Actor, public_id: str) -> Resolution:
    """Turn an adjustment down: nothing is posted and the exception is open again."""
    try:
        _rec, adjustment = _locked_adjustment(session, public_id)
        before = resolution_snapshot(adjustment)
        adjustment.status, adjustment.decided_by_id, adjustment.decided_at = (ResolutionStatus.REJECTED,
                                                                              actor.user_id, utcnow())
        audit.record(session, actor, "reconciliation.adjustment_rejected", "reconciliation_resolution",
                     adjustment.public_id, before=before, after=resolution_snapshot(adjustment))
        session.commit()
    except DomainError:
        session.rollback()
        raise
    return adjustment


def get_adjustment(session: Session, public_id: str) -> Resolution:
    adjustment = session.scalar(select(Resolution).where(Resolution.public_id == public_id,
                                                         Resolution.kind == ResolutionKind.ADJUSTMENT))
    if adjustment is None:
        raise NotFound("No such adjustment.")
    return adjustment


# --- the daily report ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReportRow:
    """One account on one business day: the books against the statement (amounts in fen)."""

    account: str
    day: dt.date
    currency: str
    opening: int
    inflow: int  # movements that grow the balance
    outflow: int  # movements that shrink it
    closing: int
    statement_in: int | None  # what the statement shows arriving (None: no statement covers the day)
    statement_out: int | None  # what it shows leaving, fees included
    reconciliation_id: str | None  # the statement the figures come from (the latest covering the day)

    @property
    def statement_net(self) -> int | None:
        return None if self.statement_in is None else self.statement_in - self.statement_out

    @property
    def difference(self) -> int | None:
        """The books' net movement minus the statement's."""
        return None if self.statement_in is None else (self.inflow - self.outflow) - self.statement_net


def report_period(day: dt.date | None, since: dt.date | None, until: dt.date | None,
                  today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """Check and settle the report's days: one `date`, or `since`..`until` (yesterday when none given)."""
    today = today or dt.datetime.now(BUSINESS_TZ).date()
    if day is not None and (since is not None or until is not None):
        raise ValidationFailed({"date": ["Give either a date or since and until."]})
    if day is not None:
        since = until = day
    since = since or until or today - dt.timedelta(days=1)
    until = until or since
    if until < since:
        raise ValidationFailed({"until": ["The period ends before it starts."]})
    if (until - since).days >= MAX_REPORT_DAYS:
        raise ValidationFailed({"until": [f"A report covers at most {MAX_REPORT_DAYS} days."]})
    return since, until


def daily_report(session: Session, *, since: dt.date, until: dt.date,
                 accounts_: tuple[str, ...] = REPORT_ACCOUNTS) -> list[ReportRow]:
    """Per account and business day: opening balance, movements in and out and closing balance from the
    ledger, the statement's figures for the day, and the difference."""
    rows: list[ReportRow] = []
    for code in accounts_:
        try:
            account = ledger.get_account(session, code)
        except NotFound:
            account = None
        movements = _movements(session, account, since, until) if account is not None else {}
        statements = _statement_days(session, code, since, until)
        # One point-in-time balance, then each day's movements: the next day opens where this one closed.
        opening = (ledger.balance_as_of(session, account, matching.start_of(since) - dt.timedelta(microseconds=1))
                   if account is not None else 0)
        currency = account.currency if account is not None else accounts.CURRENCY
        day = since
        while day <= until:
            inflow, outflow = movements.get(day, (0, 0))
            closing = opening + inflow - outflow
            found = statements.get(day)
            rows.append(ReportRow(code, day, currency, opening, inflow, outflow, closing,
                                  found[0] if found else None, found[1] if found else None,
                                  found[2] if found else None))
            opening = closing
            day += dt.timedelta(days=1)
    return rows


def _movements(session: Session, account, since: dt.date, until: dt.date) -> dict[dt.date, tuple[int, int]]:
    """Sum the account's posted entries per business day: debits and credits, on its normal side."""
    t0, t1 = matching.start_of(since), matching.start_of(until + dt.timedelta(days=1))
    if session.get_bind().dialect.name == "postgresql":
        day = func.date(func.timezone("Asia/Shanghai", Entry.created_at))
    else:
        day = func.date(Entry.created_at, "+8 hours")
    debits = func.coalesce(func.sum(case((Entry.amount > 0, Entry.amount), else_=0)), 0)
    credits = func.coalesce(func.sum(case((Entry.amount < 0, -Entry.amount), else_=0)), 0)
    found = {}
    for raw_day, dr, cr in session.execute(
            select(day.label("day"), debits, credits)
            .where(Entry.account_id == account.id, Entry.is_hold.is_(False), Entry.created_at >= t0,
                   Entry.created_at < t1)
            .group_by(day)).all():
        key = raw_day if isinstance(raw_day, dt.date) else dt.date.fromisoformat(str(raw_day))
        dr, cr = int(dr), int(cr)
        found[key] = (dr, cr) if account.normal_side is NormalSide.DEBIT else (cr, dr)
    return found


def _statement_days(session: Session, account: str, since: dt.date,
                    until: dt.date) -> dict[dt.date, tuple[int, int, str]]:
    """For each day a statement of the account covers: what the latest such statement shows arriving and
    leaving that day (fees included), and its id."""
    if account not in STATEMENT_OF:
        return {}
    covering = session.execute(
        select(Reconciliation.id, Reconciliation.public_id, Reconciliation.period_start, Reconciliation.period_end)
        .where(Reconciliation.account == account, Reconciliation.period_start <= until,
               Reconciliation.period_end >= since)
        .order_by(Reconciliation.id.desc()).limit(1000)).all()
    latest: dict[dt.date, tuple[int, str]] = {}
    for rec_id, public_id, start, end in covering:
        day = max(start, since)
        while day <= min(end, until):
            latest.setdefault(day, (rec_id, public_id))
            day += dt.timedelta(days=1)
    if not latest:
        return {}
    line = ReconciliationLine
    moved = line.amount + line.fee
    sums = {}
    for rec_id, day, arriving, leaving in session.execute(
            select(line.reconciliation_id, line.value_date,
                   func.coalesce(func.sum(case((moved < 0, -moved), else_=0)), 0),
                   func.coalesce(func.sum(case((moved > 0, moved), else_=0)), 0))
            .where(line.reconciliation_id.in_({r for r, _ in latest.values()}), line.origin == "statement",
                   line.value_date >= since, line.value_date <= until)
            .group_by(line.reconciliation_id, line.value_date)).all():
        sums[(rec_id, day)] = (int(arriving), int(leaving))
    return {day: (*sums.get((rec_id, day), (0, 0)), public_id) for day, (rec_id, public_id) in latest.items()}


# --- exports -------------------------------------------------------------------------------------------

def export_lines(session: Session, rec: Reconciliation, *, state: LineState | str | None = None) -> list[list]:
    """Every line (of a state) with its items and resolution, for a download; bounded by EXPORT_MAX_LINES."""
    query = _line_filter(select(ReconciliationLine).where(ReconciliationLine.reconciliation_id == rec.id), state)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    if total > EXPORT_MAX_LINES:
        raise ValidationFailed({"state": [f"An export holds at most {EXPORT_MAX_LINES} lines; this one would hold "
                                          f"{total}: export one state at a time, such as the exceptions."]})
    lines = list(session.scalars(query.order_by(ReconciliationLine.line_no)))
    describe(session, rec, lines)
    out = []
    for line in lines:
        out.append([line.line_no, line.origin.value, line.value_date.isoformat(), line.reference or "", line.amount,
                    line.fee, line.currency, line.description or "", line.external_id or "", line.type or "",
                    line.state.value, line.rule.value if line.rule else "",
                    "; ".join(f"{i.id} ({i.amount})" for i in line.items),
                    line.difference, *_resolution_cells(line.resolution)])
    return out


def _resolution_cells(resolution: Resolution | None) -> list:
    if resolution is None:
        return ["", "", "", "", ""]
    return [resolution.kind.value, resolution.status.value, resolution.note, resolution.amount,
            resolution.public_id]


def report_table(rows: list[ReportRow]) -> list[list]:
    return [[r.account, r.day.isoformat(), r.currency, r.opening, r.inflow, r.outflow, r.closing, r.statement_in,
             r.statement_out, r.statement_net, r.difference, r.reconciliation_id or ""] for r in rows]


def pending_adjustments_count(session: Session, rec: Reconciliation) -> int:
    return session.scalar(select(func.count()).where(Resolution.reconciliation_id == rec.id,
                                                     Resolution.status == ResolutionStatus.PENDING))


def users_named(session: Session, ids) -> dict[int, str]:
    """Display names of the people who entered or decided something."""
    from core.models import User

    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())
