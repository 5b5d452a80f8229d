"""The union console's figures: refreshing the pre-aggregated tables, and reading one org subtree's overview,
its trends by month and its children for the drill-down.

`refresh` is the only writer. It recomputes, in one transaction, the days from the one before the last it
covered up to today (so a payment that committed just after the last refresh still counts), the months those
days fall in, the counts as they are now and the aid programs' days. The first refresh, or `full=True`, starts
from the oldest record. Every sum is grouped in SQL by the member's own union and business day; Python then
adds each union's row into its ancestors' (a member belongs to one union, so the distinct cards of two unions
never overlap and their counts add up too).

The readers never touch the payments: the overview of the whole province reads one row of counts, the union's
days, its programs' days, and the merchants and offers in its region (a few thousand rows at most).

Who sees what: a union admin their own subtree (any other union is not found), a platform admin (an admin with
no union), finance and auditors the whole platform or any union they name. Merchants are the partner merchants
registered in the union's region (640000 the province, 640100 a city), offers those on offer to its members.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, func, insert, literal, or_, select
from sqlalchemy.orm import Session

from benefits.models import FAMILY_OF_MERCHANT_CATEGORY, Offer, OfferCategory, OfferStatus
from cards.models import LIVE_STATUSES, Card, CardStatus
from core.auth import Actor
from core.db import business_day, business_month, dialect_insert, utcnow
from core.errors import Forbidden, NotFound, ValidationFailed
from core.i18n import business_date
from core.models import Role
from members.models import HardshipRecord, Member, MemberStatus, Union, UnionKind
from members.service import scope_root
from members.validators import region_prefix
from merchants.models import Merchant, MerchantCategory, MerchantStatus, Store, StoreStatus
from payments import ledger
from payments.checkout.models import Payment, Refund
from payments.disbursement.models import Program
from payments.ledger.models import Entry
from payments.reports.service import day_start, program_days
from stats.models import (
    DAY_FIGURES,
    NOW_FIGURES,
    PROGRAM_FIGURES,
    ProgramDay,
    StatsState,
    UnionDay,
    UnionFigures,
    UnionMonth,
)

READERS = (Role.UNION_ADMIN, Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR)
STATE = "figures"
USAGE_DAYS = 30
TREND_MONTHS = 12
MAX_TREND_MONTHS = 36
INSERT_CHUNK = 5000
CURRENCY = "CNY"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _as_date(value) -> dt.date:
    """A DATE from the database: SQLite may hand an aggregate's back as text."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


# --- refreshing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refreshed:
    """What a refresh did."""

    first_day: dt.date
    through: dt.date
    days: int
    day_rows: int
    month_rows: int
    union_rows: int
    program_rows: int
    seconds: float


class _Tree:
    """Each union's ancestors (itself included), read from the materialized paths."""

    def __init__(self, session: Session):
        self.up: dict[int, list[int]] = {
            union_id: [int(part) for part in path.strip("/").split("/") if part]
            for union_id, path in session.execute(select(Union.id, Union.path))}

    def roll_up(self, own: dict[tuple, dict[str, int]]) -> dict[tuple, dict[str, int]]:
        """Add each (union, key...) row into every ancestor's row with the same key."""
        out: dict[tuple, dict[str, int]] = {}
        for (union_id, *key), values in own.items():
            for ancestor in self.up.get(union_id, [union_id]):
                row = out.setdefault((ancestor, *key), dict.fromkeys(values, 0))
                for name, value in values.items():
                    row[name] += value
        return out


def _lock_state(session: Session) -> StatsState:
    """The state row, locked: two refreshes take turns."""
    session.execute(dialect_insert(session, StatsState).values(name=STATE, days=0, duration_ms=0, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["name"]))
    return session.execute(select(StatsState).where(StatsState.name == STATE).with_for_update()
                           .execution_options(populate_existing=True)).scalar_one()


def _earliest(session: Session, today: dt.date) -> dt.date:
    """The business day of the oldest record the figures count."""
    firsts = [session.scalar(select(func.min(column))) for column in
              (Member.created_at, Card.issued_at, Payment.created_at, Refund.created_at, Entry.created_at)]
    firsts = [business_date(moment) for moment in firsts if moment is not None]
    return min(firsts, default=today)


def _insert(session: Session, model, rows: list[dict]) -> None:
    for n in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(model), rows[n:n + INSERT_CHUNK])


def _day_rows(session: Session, tree: _Tree, start: dt.datetime) -> dict[tuple, dict[str, int]]:
    """The days from `start` on, by own union, rolled up the tree."""
    own: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(DAY_FIGURES, 0))

    def grouped(moment, sums: dict, joins=()):
        day = business_day(moment)
        query = select(Member.union_id, day, *sums.values())
        for target, on in joins:
            query = query.join(target, on)
        for union_id, key, *values in session.execute(query.where(moment >= start).group_by(Member.union_id, day)):
            row = own[(union_id, _as_date(key))]
            for name, value in zip(sums, values):
                row[name] += int(value or 0)

    card_member = [(Card, Card.member_id == Member.id)]
    grouped(Member.created_at, {"members_joined": func.count()})
    grouped(Card.issued_at, {"cards_issued": func.count()}, card_member)
    grouped(Card.activated_at, {"cards_activated": func.count()}, card_member)
    grouped(Payment.created_at,
            {"payments": func.count(), "amount": func.sum(Payment.amount), "discount": func.sum(Payment.discount),
             "charged": func.sum(Payment.charged), "merchant_share": func.sum(Payment.merchant_share),
             "union_share": func.sum(Payment.union_share)},
            [(Payment, Payment.member_id == Member.id)])
    grouped(Refund.created_at,
            {"refunds": func.count(), "refunded": func.sum(Refund.amount), "union_refunded": func.sum(Refund.union_back)},
            [(Payment, Payment.member_id == Member.id), (Refund, Refund.payment_id == Payment.id)])
    return tree.roll_up(own)


def _month_rows(session: Session, tree: _Tree, first_month: dt.date, last_month: dt.date) -> dict[tuple, dict]:
    """The months from `first_month` to `last_month`: cards that paid, cards in use, by own union, rolled up."""
    own: dict[tuple, dict[str, int]] = defaultdict(lambda: {"card_users": 0, "live_cards": 0})
    month = business_month(Payment.created_at)
    for union_id, key, users in session.execute(
            select(Member.union_id, month, func.count(Payment.card_id.distinct()))
            .join(Member, Member.id == Payment.member_id)
            .where(Payment.created_at >= day_start(first_month))
            .group_by(Member.union_id, month)):
        own[(union_id, _as_date(key))]["card_users"] += int(users)
    current = first_month
    while current <= last_month:
        start, end = day_start(current), day_start(next_month(current))
        for union_id, live in session.execute(
                select(Member.union_id, func.count()).select_from(Card).join(Member, Member.id == Card.member_id)
                .where(Card.activated_at < end, or_(Card.closed_at.is_(None), Card.closed_at >= start))
                .group_by(Member.union_id)):
            own[(union_id, current)]["live_cards"] += int(live)
        current = next_month(current)
    return tree.roll_up(own)


def _now_rows(session: Session, tree: _Tree, now: dt.datetime) -> dict[tuple, dict]:
    """Every subtree's counts now."""
    own: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(NOW_FIGURES, 0))
    for union_id, n in session.execute(select(Member.union_id, func.count()).where(Member.status == MemberStatus.ACTIVE)
                                       .group_by(Member.union_id)):
        own[(union_id,)]["members"] += n
    for union_id, n in session.execute(
            select(Member.union_id, func.count()).join(HardshipRecord, HardshipRecord.member_id == Member.id)
            .where(Member.status == MemberStatus.ACTIVE, HardshipRecord.valid_until >= business_date(now))
            .group_by(Member.union_id)):
        own[(union_id,)]["hardship_members"] += n
    by_status = {CardStatus.ISSUED: "cards_not_activated", CardStatus.ACTIVE: "cards_active",
                 CardStatus.FROZEN: "cards_frozen", CardStatus.LOST: "cards_lost"}
    for union_id, status, n in session.execute(
            select(Member.union_id, Card.status, func.count()).join(Member, Member.id == Card.member_id)
            .where(Card.status.in_(LIVE_STATUSES)).group_by(Member.union_id, Card.status)):
        own[(union_id,)]["cards_issued"] += n
        own[(union_id,)][by_status[CardStatus(status)]] += n
    for union_id, n in session.execute(
            select(Member.union_id, func.count(Payment.card_id.distinct()))
            .join(Card, Card.id == Payment.card_id).join(Member, Member.id == Payment.member_id)
            .where(Payment.created_at >= now - dt.timedelta(days=USAGE_DAYS), Card.status == CardStatus.ACTIVE)
            .group_by(Member.union_id)):
        own[(union_id,)]["cards_used_30d"] += n
    return tree.roll_up(own)


def refresh(session: Session, *, since: dt.date | None = None, full: bool = False,
            now: dt.datetime | None = None) -> Refreshed:
    """Recompute the console's figures (see the module's text); the caller commits."""
    clock = time.monotonic()
    now = now or utcnow()
    today = business_date(now)
    state = _lock_state(session)
    if full or state.through is None:
        first = _earliest(session, today)
    elif since is not None:
        first = since
    else:
        first = state.through - dt.timedelta(days=1)
    first = min(first, today)
    tree = _Tree(session)

    days = _day_rows(session, tree, day_start(first))
    session.execute(delete(UnionDay).where(UnionDay.day >= first))
    _insert(session, UnionDay, [{"union_id": u, "day": d, **values} for (u, d), values in days.items()
                                if any(values.values())])

    months = _month_rows(session, tree, month_start(first), month_start(today))
    session.execute(delete(UnionMonth).where(UnionMonth.month >= month_start(first)))
    _insert(session, UnionMonth, [{"union_id": u, "month": m, **values} for (u, m), values in months.items()
                                  if any(values.values())])

    counts = _now_rows(session, tree, now)
    session.execute(delete(UnionFigures))
    _insert(session, UnionFigures, [{"union_id": u, "computed_at": now, **values} for (u,), values in counts.items()])

    programs = program_days(session, since=day_start(first))
    session.execute(delete(ProgramDay).where(ProgramDay.day >= first))
    _insert(session, ProgramDay, [{"program_id": p, "day": d, **{name: getattr(f, name) for name in PROGRAM_FIGURES}}
                                  for (p, d), f in programs.items()])

    seconds = time.monotonic() - clock
    state.through, state.refreshed_at = today, now
    state.days, state.duration_ms = (today - first).days + 1, int(seconds * 1000)
    session.flush()
    return Refreshed(first_day=first, through=today, days=state.days, day_rows=len(days), month_rows=len(months),
                     union_rows=len(counts), program_rows=len(programs), seconds=seconds)


def state(session: Session) -> StatsState | None:
    """When the figures were last refreshed (None: never)."""
    return session.get(StatsState, STATE)


def figures_age_seconds(session: Session) -> float | None:
    """Seconds since the figures were last refreshed (None before the first refresh)."""
    current = state(session)
    if current is None or current.refreshed_at is None:
        return None
    return max(0.0, (utcnow() - current.refreshed_at).total_seconds())


# --- scope --------------------------------------------------------------------------------------

def scope_for(session: Session, actor: Actor, union_public_id: str | None) -> Union | None:
    """The union whose subtree the actor asks for (None: the whole platform), or NotFound when it is not theirs."""
    if actor.role not in READERS:
        raise Forbidden("Your role may not see the union's figures.")
    root = scope_root(session, actor)
    if not union_public_id:
        return root
    union = session.scalar(select(Union).where(Union.public_id == union_public_id))
    if union is None or (root is not None and not union.path.startswith(root.path)):
        raise NotFound("No such union.")
    return union


def _covering(session: Session, union: Union | None) -> list[int]:
    """The unions whose rows add up to the scope: the union itself, or every root for the whole platform."""
    if union is not None:
        return [union.id]
    return list(session.scalars(select(Union.id).where(Union.parent_id.is_(None))))


def breadcrumbs(session: Session, union: Union | None, top: Union | None) -> list[Union]:
    """The unions from the actor's top (or the roots) down to `union`."""
    if union is None:
        return []
    ids = [int(part) for part in union.path.strip("/").split("/") if part]
    if top is not None:
        ids = ids[ids.index(top.id):] if top.id in ids else [union.id]
    by_id = {u.id: u for u in session.scalars(select(Union).where(Union.id.in_(ids)))}
    return [by_id[i] for i in ids if i in by_id]


# --- the overview -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    """A subtree's members and cards now; `usage_rate` is None when it has no active card."""

    members: int = 0
    hardship_members: int = 0
    cards_issued: int = 0
    cards_not_activated: int = 0
    cards_active: int = 0
    cards_frozen: int = 0
    cards_lost: int = 0
    cards_used_30d: int = 0

    @property
    def usage_rate(self) -> float | None:
        return round(self.cards_used_30d / self.cards_active, 4) if self.cards_active else None


@dataclass(frozen=True)
class Activity:
    """Card payments over a period, in fen."""

    payments: int = 0
    amount: int = 0
    discount: int = 0
    charged: int = 0
    merchant_share: int = 0
    union_share: int = 0
    refunds: int = 0
    refunded: int = 0
    union_refunded: int = 0
    members_joined: int = 0
    cards_issued: int = 0
    cards_activated: int = 0
    currency: str = CURRENCY

    @property
    def union_subsidised(self) -> int:
        """The union's share of the discounts, less what refunds gave back to the programs."""
        return self.union_share - self.union_refunded


@dataclass(frozen=True)
class MerchantGroup:
    key: str  # a merchant category, or a city's region code
    name: str  # the city's name (its union's), or "" for a category
    merchants: int = 0
    stores: int = 0


@dataclass(frozen=True)
class ProgramRow:
    program_id: str
    name: str
    union_name: str
    funded: int = 0
    disbursed: int = 0
    spent: int = 0
    subsidised: int = 0
    expired: int = 0
    returned: int = 0
    clawed_back: int = 0
    balance: int = 0
    currency: str = CURRENCY


@dataclass(frozen=True)
class Child:
    """One union of the next level down, for the drill-down."""

    union: Union
    counts: Counts
    last_30_days: Activity


@dataclass(frozen=True)
class Overview:
    union: Union | None
    refreshed_at: dt.datetime | None
    counts: Counts
    total: Activity  # since the start
    last_30_days: Activity
    merchants: int
    stores: int
    merchants_by_category: list[MerchantGroup]
    merchants_by_city: list[MerchantGroup]
    offers: int
    offers_by_category: list[tuple[str, int]]
    programs: list[ProgramRow]
    children: list[Child] = field(default_factory=list)

    @property
    def usage_rate(self) -> float | None:
        return self.counts.usage_rate


def _counts(session: Session, union_ids: Sequence[int]) -> dict[int, Counts]:
    rows = session.scalars(select(UnionFigures).where(UnionFigures.union_id.in_(list(union_ids))))
    return {r.union_id: Counts(**{name: getattr(r, name) for name in NOW_FIGURES}) for r in rows}


def _sum_counts(counts: Iterable[Counts]) -> Counts:
    counts = list(counts)
    return Counts(**{name: sum(getattr(c, name) for c in counts) for name in NOW_FIGURES})


def _activity(session: Session, union_ids: Sequence[int], since: dt.date | None = None,
              by_union: bool = False) -> dict[int | None, Activity]:
    """The days' sums of each union (or of all of them together), from `since` on."""
    sums = [func.coalesce(func.sum(getattr(UnionDay, name)), 0) for name in DAY_FIGURES]
    key = UnionDay.union_id if by_union else literal(None)
    query = select(key, *sums).where(UnionDay.union_id.in_(list(union_ids)))
    if since is not None:
        query = query.where(UnionDay.day >= since)
    if by_union:
        query = query.group_by(UnionDay.union_id)
    return {union_id: Activity(**{name: int(v) for name, v in zip(DAY_FIGURES, values)})
            for union_id, *values in session.execute(query)}


def _merchant_scope(union: Union | None) -> list:
    where = [Merchant.status == MerchantStatus.ACTIVE]
    if union is not None:
        where.append(Merchant.region.startswith(region_prefix(union.region)))
    return where


def _city_names(session: Session, union: Union | None) -> dict[str, str]:
    """City region code -> the city union's name (in the scope's tree, when there is one)."""
    query = select(Union.region, Union.name).where(Union.kind == UnionKind.CITY)
    if union is not None:
        root_path = "/" + union.path.strip("/").split("/")[0] + "/"
        query = query.where(Union.path.startswith(root_path))
    names: dict[str, str] = {}
    for region, name in session.execute(query.order_by(Union.id)):
        names.setdefault(region, name)
    return names


def merchant_groups(session: Session, union: Union | None) -> tuple[list[MerchantGroup], list[MerchantGroup]]:
    """The scope's active partner merchants and their open stores, by category and by city."""
    city = func.substr(Merchant.region, 1, 4)
    merchants = {(category, c): n for category, c, n in session.execute(
        select(Merchant.category, city, func.count()).where(*_merchant_scope(union)).group_by(Merchant.category, city))}
    stores = {(category, c): n for category, c, n in session.execute(
        select(Merchant.category, city, func.count()).join(Store, Store.merchant_id == Merchant.id)
        .where(*_merchant_scope(union), Store.status == StoreStatus.OPEN).group_by(Merchant.category, city))}
    by_category: dict[str, list[int]] = {c.value: [0, 0] for c in MerchantCategory}
    by_city: dict[str, list[int]] = {}
    for key in set(merchants) | set(stores):
        category = MerchantCategory(key[0]).value
        region = f"{key[1]}00"
        for bucket in (by_category.setdefault(category, [0, 0]), by_city.setdefault(region, [0, 0])):
            bucket[0] += merchants.get(key, 0)
            bucket[1] += stores.get(key, 0)
    names = _city_names(session, union)
    return ([MerchantGroup(k, "", *v) for k, v in by_category.items()],
            [MerchantGroup(k, names.get(k, ""), *v) for k, v in sorted(by_city.items())])


def offer_groups(session: Session, union: Union | None, now: dt.datetime) -> list[tuple[str, int]]:
    """The 普惠 offers on offer now to the scope's members, by family: published, started and not ended, at an
    active merchant in the scope's region (or at every merchant of a trade), for every member or for unions in
    the scope's line (its ancestors, itself or its subtree)."""
    query = (select(Offer.id, Offer.category, Offer.union_ids, Merchant.category)
             .outerjoin(Merchant, Merchant.id == Offer.merchant_id)
             .where(Offer.status == OfferStatus.PUBLISHED, Offer.starts_at <= now,
                    or_(Offer.ends_at.is_(None), Offer.ends_at > now),
                    or_(Offer.merchant_id.is_(None), and_(*_merchant_scope(union)))))
    rows = session.execute(query).all()
    paths: dict[str, str] = {}
    if union is not None:
        wanted = {u for _id, _c, union_ids, _m in rows for u in (union_ids or [])}
        if wanted:
            paths = dict(session.execute(select(Union.public_id, Union.path).where(Union.public_id.in_(wanted))).all())
    counts = {c.value: 0 for c in OfferCategory}
    for _id, category, union_ids, merchant_category in rows:
        if union is not None and union_ids:
            lines = [paths.get(u) for u in union_ids]
            if not any(p and (union.path.startswith(p) or p.startswith(union.path)) for p in lines):
                continue
        family = (OfferCategory(category) if category is not None
                  else FAMILY_OF_MERCHANT_CATEGORY[MerchantCategory(merchant_category)])
        counts[family.value] += 1
    return list(counts.items())


def _run_in(query, union: Union | None):
    """Narrow a query over programs (joined to their unions) to those run by unions of the scope."""
    query = query.join(Union, Union.id == Program.union_id)
    return query if union is None else query.where(Union.path.startswith(union.path))


def programs_of(session: Session, union: Union | None) -> list[ProgramRow]:
    """The aid programs run by unions of the scope, each with its money since the start and its budget now."""
    programs = session.execute(_run_in(select(Program, Union.name), union).order_by(Program.id)).all()
    if not programs:
        return []
    sums = {program_id: values for program_id, *values in session.execute(
        select(ProgramDay.program_id, *[func.coalesce(func.sum(getattr(ProgramDay, name)), 0)
                                        for name in PROGRAM_FIGURES])
        .where(ProgramDay.program_id.in_([p.id for p, _n in programs])).group_by(ProgramDay.program_id))}
    balances = ledger.balances(session, [p.budget_account for p, _n in programs])
    out = []
    for program, union_name in programs:
        values = sums.get(program.id, [0] * len(PROGRAM_FIGURES))
        balance = balances[program.budget_account].posted if program.budget_account in balances else 0
        out.append(ProgramRow(program.public_id, program.name, union_name, balance=balance,
                              **{name: int(v) for name, v in zip(PROGRAM_FIGURES, values)}))
    return out


def children(session: Session, union: Union | None, today: dt.date) -> list[Child]:
    """The next level down (the federations, for the whole platform), with their counts and last 30 days."""
    query = select(Union).where(Union.parent_id.is_(None) if union is None else Union.parent_id == union.id)
    kids = list(session.scalars(query.order_by(Union.region, Union.name)))
    ids = [k.id for k in kids]
    counts = _counts(session, ids)
    recent = _activity(session, ids, today - dt.timedelta(days=USAGE_DAYS - 1), by_union=True) if ids else {}
    return [Child(k, counts.get(k.id, Counts()), recent.get(k.id, Activity())) for k in kids]


def overview(session: Session, union: Union | None, *, now: dt.datetime | None = None) -> Overview:
    """The scope's figures, read from the pre-aggregated tables and the merchants and offers of its region."""
    now = now or utcnow()
    today = business_date(now)
    covering = _covering(session, union)
    counts = _sum_counts(_counts(session, covering).values())
    total = _activity(session, covering).get(None, Activity())
    recent = _activity(session, covering, today - dt.timedelta(days=USAGE_DAYS - 1)).get(None, Activity())
    by_category, by_city = merchant_groups(session, union)
    offers = offer_groups(session, union, now)
    current = state(session)
    return Overview(
        union=union, refreshed_at=current.refreshed_at if current else None, counts=counts, total=total,
        last_30_days=recent, merchants=sum(g.merchants for g in by_category), stores=sum(g.stores for g in by_category),
        merchants_by_category=by_category, merchants_by_city=by_city, offers=sum(n for _c, n in offers),
        offers_by_category=offers, programs=programs_of(session, union), children=children(session, union, today))


# --- trends -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonthRow(Activity):
    """One business month of a subtree; `usage_rate` is the cards that paid over the cards in use."""

    month: str = ""  # YYYY-MM
    card_users: int = 0
    live_cards: int = 0
    aid_funded: int = 0
    aid_disbursed: int = 0
    aid_spent: int = 0

    @property
    def usage_rate(self) -> float | None:
        return round(self.card_users / self.live_cards, 4) if self.live_cards else None


def trend_window(first: dt.date | None, last: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The months asked for (their first days): by default the last twelve, this one included."""
    last = month_start(last or today)
    if first is None:
        first = last
        for _ in range(TREND_MONTHS - 1):
            first = (first - dt.timedelta(days=1)).replace(day=1)
    first = month_start(first)
    if last < first:
        raise ValidationFailed({"to": ["The last month comes before the first."]})
    if (last.year - first.year) * 12 + last.month - first.month >= MAX_TREND_MONTHS:
        raise ValidationFailed({"from": [f"At most {MAX_TREND_MONTHS} months at once."]})
    return first, last


def trends(session: Session, union: Union | None, first: dt.date, last: dt.date) -> list[MonthRow]:
    """The scope's figures month by month, from month `first` to month `last` (first days), all months listed."""
    covering = _covering(session, union)
    end = next_month(last)
    out: dict[dt.date, dict[str, int]] = {}
    current = first
    while current <= last:
        out[current] = defaultdict(int)
        current = next_month(current)
    for day, *values in session.execute(
            select(UnionDay.day, *[func.sum(getattr(UnionDay, name)) for name in DAY_FIGURES])
            .where(UnionDay.union_id.in_(covering), UnionDay.day >= first, UnionDay.day < end)
            .group_by(UnionDay.day)):
        row = out[month_start(_as_date(day))]
        for name, value in zip(DAY_FIGURES, values):
            row[name] += int(value or 0)
    for month, users, live in session.execute(
            select(UnionMonth.month, func.sum(UnionMonth.card_users), func.sum(UnionMonth.live_cards))
            .where(UnionMonth.union_id.in_(covering), UnionMonth.month >= first, UnionMonth.month < end)
            .group_by(UnionMonth.month)):
        row = out[_as_date(month)]
        row["card_users"] += int(users or 0)
        row["live_cards"] += int(live or 0)
    programs = _run_in(select(Program.id), union)
    for day, funded, disbursed, spent in session.execute(
            select(ProgramDay.day, func.sum(ProgramDay.funded), func.sum(ProgramDay.disbursed),
                   func.sum(ProgramDay.spent))
            .where(ProgramDay.program_id.in_(programs), ProgramDay.day >= first, ProgramDay.day < end)
            .group_by(ProgramDay.day)):
        row = out[month_start(_as_date(day))]
        row["aid_funded"] += int(funded or 0)
        row["aid_disbursed"] += int(disbursed or 0)
        row["aid_spent"] += int(spent or 0)
    return [MonthRow(month=f"{month:%Y-%m}", **values) for month, values in out.items()]
