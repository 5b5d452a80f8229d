"""Pricing: which published offers apply to a member paying at a store, and which one (or which stack)
gives the most. One pure function of plain values: no database, no clock of its own.

Rules:
- An offer applies when it is live at `now` (its window, weekdays and local hours, Asia/Shanghai), at
  this store (its merchant, or every merchant of its family / trade), to this member (hardship register,
  unions), for this amount (min_spend), within the member's limits and the offer's budget.
- Each kind prices the amount: percent_off takes value basis points, rounded half-up to the fen and
  capped by max_discount; amount_off takes value off; fixed_price and entitlement make the price value
  (never more than the amount). A discount never exceeds what is left to pay, so no price is negative.
- A member's amount limit and the offer's remaining budget cap the discount (they never refuse it
  outright while any of it is left); a count limit reached refuses it.
- Exclusive offers stand alone; stackable offers combine, each applied in turn (higher priority first)
  to what is left to pay. The candidates are each exclusive offer alone and the stack of all stackable
  ones; the most discount wins, ties going to the higher priority (then the lower id, to be stable).
- The union's share of a discount is union_share_bp of it (all of it for union funding), half-up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Asia/Shanghai")
BP = 10_000


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def percent_of(amount: int, basis_points: int) -> int:
    """basis_points of amount (1200 = 12 %), rounded half-up to the fen."""
    return round_half_up(amount * basis_points, BP)


def period_key(period: str, now: dt.datetime) -> str:
    """The limit period `now` falls in, by the local (Asia/Shanghai) calendar: d:YYYY-MM-DD, m:YYYY-MM,
    y:YYYY, or ever."""
    local = now.astimezone(LOCAL)
    if period == "day":
        return f"d:{local:%Y-%m-%d}"
    if period == "month":
        return f"m:{local:%Y-%m}"
    if period == "year":
        return f"y:{local:%Y}"
    return "ever"


@dataclass(frozen=True)
class Terms:
    """A published offer version, as pricing needs it."""

    id: str  # the version's public id
    lineage: str
    kind: str  # percent_off | amount_off | fixed_price | entitlement
    value: int
    funding: str = "merchant"  # merchant | union | split
    union_share_bp: int = 0
    program_id: str | None = None
    merchant_id: str | None = None  # the merchant's public id, or None for a category-wide offer
    category: str | None = None  # the 普惠 family
    merchant_category: str | None = None
    min_spend: int = 0
    max_discount: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    weekdays: tuple[int, ...] | None = None  # ISO, 1 = Monday
    hours_from: str | None = None  # "HH:MM", local
    hours_to: str | None = None
    limit_count: int | None = None
    limit_amount: int | None = None
    limit_period: str | None = None
    budget_left: int | None = None  # None: no budget
    hardship_only: bool = False
    union_ids: tuple[str, ...] | None = None
    stackable: bool = False
    priority: int = 0
    title: str = ""


@dataclass(frozen=True)
class Shopper:
    """Who pays, where, how much and when."""

    merchant_id: str
    merchant_category: str  # the store's trade
    family: str  # the 普惠 family of that trade
    amount: int
    now: dt.datetime
    on_hardship_register: bool = False
    # The member's union and all its ancestors (public ids): an offer for a union reaches its subtree.
    unions: frozenset[str] = frozenset()
    # What the member already used of each lineage in its limit period: {lineage: (count, discount)}.
    used: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Applied:
    offer_id: str
    lineage: str
    discount: int
    union_share: int
    merchant_share: int
    program_id: str | None
    capped_by: str | None = None  # max_discount | member_limit | budget


@dataclass(frozen=True)
class Quote:
    amount: int
    discount: int
    charged: int
    union_share: int
    merchant_share: int
    applied: tuple[Applied, ...]
    # Why each offer considered did not apply: {offer_id: reason}; an offer that applied but lost to a
    # better one is "not_best".
    not_applied: dict[str, str]

    @property
    def offer_id(self) -> str | None:
        """The offer that gave the most (the first of a stack)."""
        return max(self.applied, key=lambda a: a.discount).offer_id if self.applied else None


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def refusal(terms: Terms, shopper: Shopper) -> str | None:
    """Why the offer does not apply to this shopper now, or None if it does (before pricing)."""
    now = shopper.now
    if terms.starts_at is not None and now < terms.starts_at:
        return "not_started"
    if terms.ends_at is not None and now >= terms.ends_at:
        return "ended"
    local = now.astimezone(LOCAL)
    if terms.weekdays and local.isoweekday() not in terms.weekdays:
        return "not_today"
    if terms.hours_from and terms.hours_to:
        minute, start, end = local.hour * 60 + local.minute, _minutes(terms.hours_from), _minutes(terms.hours_to)
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)  # over midnight
        if not inside:
            return "outside_hours"
    if terms.merchant_id is not None:
        if terms.merchant_id != shopper.merchant_id:
            return "other_merchant"
    else:
        if terms.merchant_category is not None and terms.merchant_category != shopper.merchant_category:
            return "other_category"
        if terms.merchant_category is None and terms.category is not None and terms.category != shopper.family:
            return "other_category"
    if terms.hardship_only and not shopper.on_hardship_register:
        return "hardship_only"
    if terms.union_ids and not shopper.unions.intersection(terms.union_ids):
        return "other_union"
    if shopper.amount < terms.min_spend:
        return "below_min_spend"
    count, _amount = shopper.used.get(terms.lineage, (0, 0))
    if terms.limit_count is not None and count >= terms.limit_count:
        return "limit_reached"
    if terms.limit_amount is not None and _amount >= terms.limit_amount:
        return "limit_reached"
    if terms.budget_left is not None and terms.budget_left <= 0:
        return "budget_used_up"
    return None


def discount_on(terms: Terms, amount: int, used_amount: int = 0) -> tuple[int, str | None]:
    """The discount the offer gives on `amount` left to pay, and what capped it, if anything."""
    if terms.kind == "percent_off":
        discount = percent_of(amount, terms.value)
    elif terms.kind == "amount_off":
        discount = terms.value
    else:  # fixed_price, entitlement: the member pays `value`
        discount = amount - terms.value
    discount = max(0, min(discount, amount))
    capped = None
    if terms.max_discount is not None and discount > terms.max_discount:
        discount, capped = terms.max_discount, "max_discount"
    if terms.limit_amount is not None and discount > terms.limit_amount - used_amount:
        discount, capped = max(0, terms.limit_amount - used_amount), "member_limit"
    if terms.budget_left is not None and discount > terms.budget_left:
        discount, capped = max(0, terms.budget_left), "budget"
    return discount, capped


def _applied(terms: Terms, discount: int, capped: str | None) -> Applied:
    if terms.funding == "union":
        union = discount
    elif terms.funding == "split":
        union = percent_of(discount, terms.union_share_bp)
    else:
        union = 0
    return Applied(terms.id, terms.lineage, discount, union, discount - union,
                   terms.program_id if union else None, capped)


def _stack(offers: list[Terms], shopper: Shopper) -> list[Applied]:
    left, applied = shopper.amount, []
    for terms in offers:
        discount, capped = discount_on(terms, left, shopper.used.get(terms.lineage, (0, 0))[1])
        if discount > 0 or terms.kind == "entitlement":
            applied.append(_applied(terms, discount, capped))
            left -= discount
    return applied


def price(offers: list[Terms], shopper: Shopper) -> Quote:
    """Price the shopper's amount with the best applicable offer or stack of offers."""
    if shopper.amount < 0:
        raise ValueError("amount must not be negative")
    not_applied: dict[str, str] = {}
    candidates: list[Terms] = []
    for terms in offers:
        reason = refusal(terms, shopper)
        if reason is None:
            candidates.append(terms)
        else:
            not_applied[terms.id] = reason
    order = sorted(candidates, key=lambda t: (-t.priority, t.id))
    options = [_stack([t], shopper) for t in order if not t.stackable]
    stackable = [t for t in order if t.stackable]
    if stackable:
        options.append(_stack(stackable, shopper))
    rank = {t.id: n for n, t in enumerate(order)}
    best: list[Applied] = []
    best_key = None
    for option in options:
        if not option:
            continue
        key = (sum(a.discount for a in option), -min(rank[a.offer_id] for a in option))
        if best_key is None or key > best_key:
            best, best_key = option, key
    chosen = {a.offer_id for a in best}
    for terms in candidates:
        if terms.id not in chosen:
            not_applied[terms.id] = "not_best" if discount_on(terms, shopper.amount)[0] > 0 else "no_discount"
    discount = sum(a.discount for a in best)
    union = sum(a.union_share for a in best)
    return Quote(shopper.amount, discount, shopper.amount - discount, union, discount - union, tuple(best),
                 not_applied)
