"""Finance reports: each aid program's money, each merchant's money, the books by account type, and the
figures of the finance dashboard.

Nothing here writes. Every figure is summed in SQL, a whole set at a time, from the ledger's entries and
the payment, refund, settlement and payout records; Python only folds the grouped sums into rows.

A program's figures come from the movements of its accounts: its budget (`program:<prg>:budget`), its
batches' reserves (`disbursement:<dsb>:reserve`) and its restricted purses on cards
(`card:<card>:aid:<prg>`), told apart by the kind of ledger transaction that moved them:

    funded      program_funding credits to the budget (approved fundings)
    disbursed   disbursement debits of the reserves (paid onto cards), less the claw-backs
    spent       card_payment debits of the aid purses, less what refunds gave back (to the purses, or to
                the budget when the aid had expired), plus `subsidised`
    subsidised  card_payment debits of the budget (the union's share of offer discounts), less the
                subsidy refunds gave back
    expired     purse_expiry credits to the budget (aid swept back from purses at expiry)
    returned    disbursement_return (failed lines), disbursement_clawback, and refunds of expired aid
                credited to the budget
    balance     the budget's posted balance now

Aid paid into general purses mixes with the member's own money there, so only a restricted program's
spending can be followed past the card (a general program's `spent` is its subsidy).

A refund's credit to a budget is the subsidy given back and, for aid that has expired since, the aid
itself; its legs (refunds.legs) tell the two apart.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    case,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from cards.models import Purse
from core.auth import Actor
from core.db import UTCDateTime, business_day, utcnow
from core.errors import NotFound, ValidationFailed
from core.i18n import BUSINESS_TZ
from core.models import Role
from core.pagination import Page, decode_cursor, encode_cursor
from members.validators import InvalidValue, region_prefix, validate_region
from merchants.models import Merchant, MerchantCategory
from payments import ledger
from payments.accounts import BANK, CLEARING, IN_TRANSIT
from payments.checkout.models import Payment, Refund
from payments.disbursement.models import Disbursement, Program
from payments.ledger.models import Account, Entry, Transaction, total
from payments.payouts.models import ExceptionStatus, Payout, PayoutStatus
from payments.settlement.models import Settlement, SettlementStatus

CURRENCY = "CNY"
MAX_MONTHS = 36
MAX_PROGRAM_IDS = 200
MAX_PAGE = 200
DEFAULT_PAGE = 50
BALANCE_CHUNK = 1000
DASHBOARD_DAYS = 30
FINANCE_READERS = (Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR)
MERCHANT_READERS = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)

# The ledger transactions that move a program's money.
PROGRAM_KINDS = ("program_funding", "disbursement", "disbursement_return", "disbursement_clawback",
                 "purse_expiry", "card_payment", "card_refund")
# Payouts whose money has left the merchant payable but not yet the platform.
IN_TRANSIT_STATUSES = (PayoutStatus.PENDING_APPROVAL, PayoutStatus.READY, PayoutStatus.SUBMITTED)


# --- periods ------------------------------------------------------------------------------------

def day_start(day: dt.date) -> dt.datetime:
    """The moment (UTC) a business day starts: 00:00 in Asia/Shanghai."""
    return dt.datetime.combine(day, dt.time(0), BUSINESS_TZ).astimezone(dt.UTC)


def period(first: dt.date | None, last: dt.date | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The moments [since, until) of business days `first` to `last`, both included; None leaves a side open."""
    if first is not None and last is not None and last < first:
        raise ValidationFailed({"to": ["The end of the period comes before its start."]})
    return (day_start(first) if first else None,
            day_start(last + dt.timedelta(days=1)) if last else None)


def _check_window(since: dt.datetime | None, until: dt.datetime | None) -> None:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ValidationFailed({name: ["Must carry a time zone."]})
    if since is not None and until is not None and until <= since:
        raise ValidationFailed({"until": ["The end of the period must come after its start."]})


def months(since: dt.datetime, until: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The business months ("YYYY-MM", start, end) the window [since, until) touches, clipped to it."""
    _check_window(since, until)
    local = since.astimezone(BUSINESS_TZ)
    start = dt.datetime(local.year, local.month, 1, tzinfo=BUSINESS_TZ)
    out = []
    while start < until:
        end = dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=BUSINESS_TZ)
        out.append((f"{start:%Y-%m}", max(start, since), min(end, until)))
        start = end
        if len(out) > MAX_MONTHS:
            raise ValidationFailed({"to": [f"A period of at most {MAX_MONTHS} months."]})
    return out


def _bucket(column, buckets: Sequence[tuple[str, dt.datetime, dt.datetime]]):
    """SQL naming the bucket (month or day) a moment falls in; rows of the window only reach it."""
    return case(*[(column < end, literal(key)) for key, _start, end in buckets], else_=literal(buckets[-1][0]))


def _within(column, since: dt.datetime | None, until: dt.datetime | None) -> list:
    out = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


# --- aid programs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProgramFigures:
    """One program's money over a period (or one month of it), in fen."""

    program_id: str
    name: str
    funded: int = 0
    disbursed: int = 0  # paid onto cards, less claw-backs
    spent: int = 0  # spent at merchants from its aid purses, net of refunds, plus `subsidised`
    subsidised: int = 0  # the union's share of offer discounts paid from the budget, net of refunds
    expired: int = 0  # swept back from aid purses at expiry
    returned: int = 0  # back to the budget: failed lines' reserve, claw-backs, refunds of expired aid
    clawed_back: int = 0  # the part of `returned` (and of what `disbursed` leaves out) taken back from cards
    balance: int | None = None  # in the budget now (None on a month's row)
    month: str | None = None
    currency: str = CURRENCY

    @property
    def aid_spent(self) -> int:
        """What members spent of the aid itself (the rest of `spent` is the union's subsidy)."""
        return self.spent - self.subsidised


AMOUNT_FIELDS = ("funded", "disbursed", "spent", "subsidised", "expired", "returned", "clawed_back")


@dataclass
class _Movements:
    """The grouped ledger sums of one program (and month) before they are folded into figures."""

    funded: int = 0
    reserve_paid: int = 0
    reserve_returned: int = 0
    clawed_back: int = 0
    expired: int = 0
    subsidy_paid: int = 0
    budget_refunds: int = 0  # subsidy given back + expired aid refunded to the budget
    expired_refunds: int = 0
    aid_paid: int = 0
    aid_refunded: int = 0

    def add(self, role: str, kind: str, debits: int, credits: int) -> None:
        if role == "budget":
            if kind == "program_funding":
                self.funded += credits - debits
            elif kind == "disbursement_return":
                self.reserve_returned += credits - debits
            elif kind == "disbursement_clawback":
                self.clawed_back += credits - debits
            elif kind == "purse_expiry":
                self.expired += credits - debits
            elif kind == "card_payment":
                self.subsidy_paid += debits - credits
            elif kind == "card_refund":
                self.budget_refunds += credits - debits
        elif role == "reserve" and kind == "disbursement":
            self.reserve_paid += debits - credits
        elif role == "purse":
            if kind == "card_payment":
                self.aid_paid += debits - credits
            elif kind == "card_refund":
                self.aid_refunded += credits - debits

    def figures(self, program: Program, month: str | None, balance: int | None) -> ProgramFigures:
        subsidised = self.subsidy_paid - (self.budget_refunds - self.expired_refunds)
        aid_spent = self.aid_paid - self.aid_refunded - self.expired_refunds
        return ProgramFigures(
            program_id=program.public_id, name=program.name, month=month, balance=balance,
            funded=self.funded, disbursed=self.reserve_paid - self.clawed_back, spent=aid_spent + subsidised,
            subsidised=subsidised, expired=self.expired, clawed_back=self.clawed_back,
            returned=self.reserve_returned + self.clawed_back + self.expired_refunds)


def _program_accounts(program_ids: list[int]):
    """Every ledger account of the programs, with its program and role: budget, reserve or aid purse."""
    budgets = (select(Account.id.label("account_id"), Program.id.label("program_id"),
                      literal("budget", String).label("role"))
               .join(Program, Program.budget_account == Account.code).where(Program.id.in_(program_ids)))
    reserves = (select(Account.id, Disbursement.program_id, literal("reserve", String))
                .join(Disbursement, Disbursement.reserve_account == Account.code)
                .where(Disbursement.program_id.in_(program_ids)))
    purses = (select(Account.id, Program.id, literal("purse", String))
              .join(Purse, Purse.account_code == Account.code)
              .join(Program, Program.public_id == Purse.program_id).where(Program.id.in_(program_ids)))
    return union_all(budgets, reserves, purses).subquery("program_accounts")


def _refund_legs(session: Session):
    """Refund legs that gave expired aid back to its program's budget: (program public id, when, amount).

    The time is the refund's ledger transaction's, so the split of a budget's refund credits is made
    over the very movements the ledger sums count."""
    if session.get_bind().dialect.name == "postgresql":
        sql = """
            SELECT leg->>'program_id' AS program, t.created_at AS created_at, (leg->>'amount')::bigint AS amount
            FROM refunds r
            JOIN ledger_transactions t ON t.public_id = r.transaction_id
            CROSS JOIN LATERAL jsonb_array_elements(r.legs) AS leg
            WHERE leg->>'to' = 'program'"""
    else:
        sql = """
            SELECT json_extract(leg.value, '$.program_id') AS program, t.created_at AS created_at,
                   CAST(json_extract(leg.value, '$.amount') AS INTEGER) AS amount
            FROM refunds r
            JOIN ledger_transactions t ON t.public_id = r.transaction_id,
                 json_each(r.legs) AS leg
            WHERE json_extract(leg.value, '$.to') = 'program'"""
    return text(sql).columns(program=String, created_at=UTCDateTime(), amount=BigInteger).subquery("expired_legs")


def _programs(session: Session, program_ids: Iterable[str] | None) -> list[Program]:
    query = select(Program).order_by(Program.id)
    if program_ids is not None:
        wanted = sorted(set(program_ids))
        if len(wanted) > MAX_PROGRAM_IDS:
            raise ValidationFailed({"program_id": [f"At most {MAX_PROGRAM_IDS} programs at once."]})
        query = query.where(Program.public_id.in_(wanted))
    return list(session.scalars(query))


def _movements(session: Session, programs: list[Program], since: dt.datetime | None, until: dt.datetime | None,
               bucket_of: Callable | None) -> dict[tuple[int, object], _Movements]:
    """Sum the programs' ledger movements in the window, by program (and by the bucket `bucket_of` names for a
    moment: a month, a day), in two queries."""
    out: dict[tuple[int, object], _Movements] = defaultdict(_Movements)
    if not programs:
        return out
    accounts = _program_accounts([p.id for p in programs])
    bucket = bucket_of(Entry.created_at).label("bucket") if bucket_of else literal(None, String).label("bucket")
    rows = session.execute(
        select(accounts.c.program_id, accounts.c.role, Transaction.kind, bucket,
               total(case((Entry.amount > 0, Entry.amount), else_=0)),
               total(case((Entry.amount < 0, -Entry.amount), else_=0)))
        .select_from(accounts)
        .join(Entry, Entry.account_id == accounts.c.account_id)
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .where(Entry.is_hold.is_(False), Transaction.kind.in_(PROGRAM_KINDS), *_within(Entry.created_at, since, until))
        .group_by(accounts.c.program_id, accounts.c.role, Transaction.kind, bucket))
    for program_id, role, kind, key, debits, credits in rows:
        out[(program_id, key)].add(role, kind, int(debits), int(credits))
    legs = _refund_legs(session)
    leg_bucket = bucket_of(legs.c.created_at).label("bucket") if bucket_of else literal(None, String).label("bucket")
    for program_id, key, amount in session.execute(
            select(Program.id, leg_bucket, total(legs.c.amount))
            .join(Program, Program.public_id == legs.c.program)
            .where(Program.id.in_([p.id for p in programs]), *_within(legs.c.created_at, since, until))
            .group_by(Program.id, leg_bucket)):
        out[(program_id, key)].expired_refunds += int(amount)
    return out


def program_figures(session: Session, *, program_ids: Iterable[str] | None = None,
                    since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[ProgramFigures]:
    """Each program's funded, disbursed, spent (and subsidised), expired and returned money over [since, until)
    (all time when open), and its budget's balance now; in the order the programs were created."""
    _check_window(since, until)
    programs = _programs(session, program_ids)
    moved = _movements(session, programs, since, until, None)
    balances = ledger.balances(session, [p.budget_account for p in programs])
    return [moved[(p.id, None)].figures(p, None, balances[p.budget_account].posted if p.budget_account in balances
                                        else 0) for p in programs]


def program_months(session: Session, *, program_ids: Iterable[str] | None = None, since: dt.datetime,
                   until: dt.datetime) -> list[ProgramFigures]:
    """The same figures by business month of [since, until): every program, every month, months in order."""
    buckets = months(since, until)
    programs = _programs(session, program_ids)
    moved = _movements(session, programs, since, until, lambda column: _bucket(column, buckets))
    return [moved[(p.id, key)].figures(p, key, None) for p in programs for key, _start, _end in buckets]


def program_days(session: Session, *, since: dt.datetime, until: dt.datetime | None = None
                 ) -> dict[tuple[int, dt.date], ProgramFigures]:
    """Every program's figures by business day of [since, until), keyed by (program row id, day); days with no
    movement are left out. For the pre-aggregated figures of the union console."""
    _check_window(since, until)
    programs = _programs(session, None)
    moved = _movements(session, programs, since, until, business_day)
    by_id = {p.id: p for p in programs}
    out = {}
    for (program_id, key), movements in moved.items():
        day = key if isinstance(key, dt.date) else dt.date.fromisoformat(str(key)[:10])
        out[(program_id, day)] = movements.figures(by_id[program_id], None, None)
    return out


def sum_programs(rows: Iterable[ProgramFigures], *, program_id: str = "", name: str = "",
                 month: str | None = None) -> ProgramFigures:
    """Add rows up (the balance too, when every row has one)."""
    rows = list(rows)
    sums = {name_: sum(getattr(r, name_) for r in rows) for name_ in AMOUNT_FIELDS}
    balance = sum(r.balance for r in rows) if rows and all(r.balance is not None for r in rows) else None
    return ProgramFigures(program_id=program_id, name=name, month=month, balance=balance, **sums)


def months_total(rows: Iterable[ProgramFigures]) -> list[ProgramFigures]:
    """All programs added up per month, months in order."""
    by_month: dict[str, list[ProgramFigures]] = {}
    for r in rows:
        by_month.setdefault(r.month, []).append(r)
    return [sum_programs(group, program_id="", name=key, month=key) for key, group in by_month.items()]


# --- merchants ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MerchantFigures:
    """What the platform owes one merchant now, and its money over a period, in fen."""

    merchant_id: str
    name: str
    category: str
    region: str
    status: str
    payable: int = 0  # its payable's balance now (negative: it owes the platform)
    in_transit: int = 0  # settled, in payouts not yet paid
    paid: int = 0  # payouts paid (in the period)
    payments: int = 0  # card payments taken (in the period)
    sales: int = 0  # what cards were charged
    union_subsidy: int = 0  # the union's share of discounts, paid to it from program budgets
    refunds: int = 0  # refunds given (in the period)
    refunded: int = 0  # given back to cards (or to programs, for expired aid)
    union_refunded: int = 0  # subsidy given back to programs
    settled: int = 0  # nets of its settlements (business days in the period) moved towards payouts
    fees: int = 0  # settlement fees
    currency: str = CURRENCY

    @property
    def receivable(self) -> int:
        """What the platform owes the merchant now: its payable plus its money in transit."""
        return self.payable + self.in_transit


MERCHANT_SUMS = ("payable", "in_transit", "paid", "payments", "sales", "union_subsidy", "refunds", "refunded",
                 "union_refunded", "settled", "fees")


@dataclass(frozen=True)
class MerchantFilter:
    """Which merchants a report covers: some by id, and/or by category and region (a region covers its
    sub-regions: 640000 the province, 640100 a city)."""

    merchant_ids: tuple[str, ...] | None = None
    category: str | None = None
    region: str | None = None

    def where(self) -> list:
        out = []
        if self.merchant_ids is not None:
            out.append(Merchant.public_id.in_(list(self.merchant_ids)))
        if self.category:
            try:
                out.append(Merchant.category == MerchantCategory(self.category))
            except ValueError:
                raise ValidationFailed({"category": ["Unknown merchant category."]}) from None
        if self.region:
            try:
                out.append(Merchant.region.startswith(region_prefix(validate_region(self.region))))
            except InvalidValue as exc:
                raise ValidationFailed({"region": [str(exc)]}) from None
        return out


def _business_days(since: dt.datetime | None, until: dt.datetime | None) -> list:
    """Settlement dates whose business day starts in [since, until)."""
    out = []
    if since is not None:
        first = since.astimezone(BUSINESS_TZ).date()
        if day_start(first) < since:
            first += dt.timedelta(days=1)
        out.append(Settlement.business_date >= first)
    if until is not None:
        last = until.astimezone(BUSINESS_TZ).date()
        if day_start(last) < until:
            last += dt.timedelta(days=1)
        out.append(Settlement.business_date < last)
    return out


def _merchant_sums(session: Session, scope, since: dt.datetime | None, until: dt.datetime | None) -> dict[int, dict]:
    """The period's sums (and money in transit now) of the merchants `scope` selects, by merchant row id."""
    sums: dict[int, dict] = defaultdict(lambda: dict.fromkeys(MERCHANT_SUMS, 0))
    for mid, count, charged, subsidy in session.execute(
            select(Payment.merchant_id, func.count(), total(Payment.charged), total(Payment.union_share))
            .where(Payment.merchant_id.in_(scope), *_within(Payment.created_at, since, until))
            .group_by(Payment.merchant_id)):
        sums[mid].update(payments=count, sales=int(charged), union_subsidy=int(subsidy))
    for mid, count, amount, union_back in session.execute(
            select(Payment.merchant_id, func.count(), total(Refund.amount), total(Refund.union_back))
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Payment.merchant_id.in_(scope), *_within(Refund.created_at, since, until))
            .group_by(Payment.merchant_id)):
        sums[mid].update(refunds=count, refunded=int(amount), union_refunded=int(union_back))
    for mid, settled, fees in session.execute(
            select(Settlement.merchant_id,
                   total(case((Settlement.status == SettlementStatus.SETTLED, Settlement.net), else_=0)),
                   total(Settlement.fee))
            .where(Settlement.merchant_id.in_(scope), *_business_days(since, until))
            .group_by(Settlement.merchant_id)):
        sums[mid].update(settled=int(settled), fees=int(fees))
    paid_in_period = and_(Payout.status == PayoutStatus.PAID, *_within(Payout.paid_at, since, until))
    for mid, in_transit, paid in session.execute(
            select(Payout.merchant_id,
                   total(case((Payout.status.in_(IN_TRANSIT_STATUSES), Payout.amount), else_=0)),
                   total(case((paid_in_period, Payout.amount), else_=0)))
            .where(Payout.merchant_id.in_(scope))
            .group_by(Payout.merchant_id)):
        sums[mid].update(in_transit=int(in_transit), paid=int(paid))
    return sums


def _payables(session: Session, codes: list[str]) -> dict[str, int]:
    """Merchant payables' posted balances, read a chunk of accounts at a time."""
    out: dict[str, int] = {}
    for n in range(0, len(codes), BALANCE_CHUNK):
        out.update({code: b.posted for code, b in ledger.balances(session, codes[n:n + BALANCE_CHUNK]).items()})
    return out


def _merchant_row(m, sums: dict, payables: dict[str, int]) -> MerchantFigures:
    values = {**sums, "payable": payables.get(m.payable_account, 0)}
    return MerchantFigures(merchant_id=m.public_id, name=m.name, category=m.category.value, region=m.region,
                           status=m.status.value, **values)


def merchant_figures(session: Session, *, merchants: MerchantFilter = MerchantFilter(),
                     since: dt.datetime | None = None, until: dt.datetime | None = None,
                     limit: int = DEFAULT_PAGE, cursor: str | None = None) -> Page:
    """A page of merchants (in the order they joined) with what the platform owes each now and its
    money over [since, until): sales, union subsidies, refunds, settled, fees and payouts paid."""
    _check_window(since, until)
    limit = max(1, min(int(limit or DEFAULT_PAGE), MAX_PAGE))
    query = select(Merchant.id, Merchant.public_id, Merchant.name, Merchant.category, Merchant.region,
                   Merchant.status, Merchant.payable_account).where(*merchants.where())
    if cursor:
        query = query.where(Merchant.id > decode_cursor(cursor))
    rows = session.execute(query.order_by(Merchant.id).limit(limit + 1)).all()
    more, rows = len(rows) > limit, rows[:limit]
    if not rows:
        return Page([], None)
    sums = _merchant_sums(session, [r.id for r in rows], since, until)
    payables = _payables(session, [r.payable_account for r in rows])
    items = [_merchant_row(r, sums[r.id], payables) for r in rows]
    return Page(items, encode_cursor(rows[-1].id) if more else None)


def merchant_totals(session: Session, *, merchants: MerchantFilter = MerchantFilter(),
                    since: dt.datetime | None = None, until: dt.datetime | None = None) -> MerchantFigures:
    """The figures of every merchant the filter selects, added up."""
    _check_window(since, until)
    scope = select(Merchant.id).where(*merchants.where())
    sums = _merchant_sums(session, scope, since, until)
    codes = list(session.scalars(select(Merchant.payable_account).where(*merchants.where())))
    added = {name: sum(s[name] for s in sums.values()) for name in MERCHANT_SUMS}
    added["payable"] = sum(_payables(session, codes).values())
    return MerchantFigures(merchant_id="", name="", category="", region="", status="", **added)


def all_merchant_figures(session: Session, *, merchants: MerchantFilter = MerchantFilter(),
                         since: dt.datetime | None = None, until: dt.datetime | None = None,
                         page: int = MAX_PAGE):
    """Every merchant's figures, a page at a time (for downloads)."""
    cursor = None
    while True:
        result = merchant_figures(session, merchants=merchants, since=since, until=until, limit=page, cursor=cursor)
        yield from result.items
        if result.next_cursor is None:
            return
        cursor = result.next_cursor


def merchant_scope(session: Session, actor: Actor, merchant_id: str | None) -> MerchantFilter:
    """The merchants an actor may see in the merchant report: finance and auditors any (or the one asked
    for), a merchant's owner or manager only their own; another's is not found."""
    if actor.role in FINANCE_READERS:
        if merchant_id is None:
            return MerchantFilter()
    elif actor.role in MERCHANT_READERS:
        own = session.scalar(select(Merchant.public_id).where(Merchant.id == actor.merchant_id))
        if own is None or (merchant_id is not None and merchant_id != own):
            raise NotFound("No such merchant.")
        merchant_id = own
    else:
        raise NotFound("No such merchant.")
    if session.scalar(select(Merchant.id).where(Merchant.public_id == merchant_id)) is None:
        raise NotFound("No such merchant.")
    return MerchantFilter(merchant_ids=(merchant_id,))


# --- the dashboard ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tiles:
    """The platform's position now, in fen."""

    bank: int  # the union's bank account
    clearing: int  # money Stripe holds for the platform
    in_transit: int  # settled money on its way to merchants
    payables: int  # owed to merchants and not yet settled (all payables together)
    open_exceptions: int  # failed payouts finance has not resolved
    currency: str = CURRENCY


def tiles(session: Session) -> Tiles:
    """The platform accounts' balances, the merchant payables' total and the open payout exceptions."""
    balances = ledger.balances(session, [BANK, CLEARING, IN_TRANSIT])
    posted = {code: b.posted for code, b in balances.items()}
    payables = sum(row.credits - row.debits for row in ledger.trial_balance(session).rows
                   if row.group == "merchant" and row.currency == CURRENCY)
    exceptions = session.scalar(select(func.count()).select_from(Payout)
                                .where(Payout.exception_status == ExceptionStatus.OPEN))
    return Tiles(bank=posted.get(BANK, 0), clearing=posted.get(CLEARING, 0), in_transit=posted.get(IN_TRANSIT, 0),
                 payables=payables, open_exceptions=int(exceptions or 0))


@dataclass(frozen=True)
class DayFigures:
    """One business day's card payments, refunds and settlements, in fen."""

    day: dt.date
    payments: int = 0
    charged: int = 0
    refunded: int = 0
    settled: int = 0  # nets of the day's settlements moved towards payouts
    fees: int = 0


def daily_activity(session: Session, *, days: int = DASHBOARD_DAYS, today: dt.date | None = None) -> list[DayFigures]:
    """The last `days` business days (today included): payments and refunds by the day they were made,
    settlements by the business day they settle."""
    days = max(1, min(int(days), 92))
    today = today or utcnow().astimezone(BUSINESS_TZ).date()
    dates = [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]
    buckets = [(d.isoformat(), day_start(d), day_start(d + dt.timedelta(days=1))) for d in dates]
    since, until = buckets[0][1], buckets[-1][2]
    out = {d.isoformat(): {"payments": 0, "charged": 0, "refunded": 0, "settled": 0, "fees": 0} for d in dates}
    paid_day = _bucket(Payment.created_at, buckets).label("day")
    for key, count, charged in session.execute(
            select(paid_day, func.count(), total(Payment.charged))
            .where(*_within(Payment.created_at, since, until)).group_by(paid_day)):
        out[key].update(payments=count, charged=int(charged))
    refund_day = _bucket(Refund.created_at, buckets).label("day")
    for key, amount in session.execute(
            select(refund_day, total(Refund.amount)).where(*_within(Refund.created_at, since, until))
            .group_by(refund_day)):
        out[key]["refunded"] = int(amount)
    for day, settled, fees in session.execute(
            select(Settlement.business_date,
                   total(case((Settlement.status == SettlementStatus.SETTLED, Settlement.net), else_=0)),
                   total(Settlement.fee))
            .where(Settlement.business_date >= dates[0], Settlement.business_date <= dates[-1])
            .group_by(Settlement.business_date)):
        out[day.isoformat()].update(settled=int(settled), fees=int(fees))
    return [DayFigures(day=d, **out[d.isoformat()]) for d in dates]

