"""The offer catalog: what applies at a store, and what members use of it (limits and budgets).

The checkout asks `live_terms` for the published offers that may apply at a store, prices with
`benefits.pricing`, then `take` counts what was applied against each member limit and offer budget in
its own transaction, with conditional updates, so concurrent payments never overrun either; `give_back`
returns it on a refund.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from benefits.models import FAMILY_OF_MERCHANT_CATEGORY, Offer, OfferBudget, OfferStatus, OfferUsage
from benefits.pricing import Applied, Terms, period_key
from members.models import Member, Union
from merchants.models import Store
from payments.ledger.accounts import dialect_insert


class UsageRace(Exception):
    """A member limit or an offer budget was used up by another payment since pricing: price again."""

    def __init__(self, lineage: str):
        super().__init__(lineage)
        self.lineage = lineage


def terms_of(offer: Offer, budget_left: int | None) -> Terms:
    """The pricing view of an offer version."""
    return Terms(
        id=offer.public_id, lineage=offer.lineage, kind=offer.kind.value, value=offer.value,
        funding=offer.funding.value, union_share_bp=offer.union_share_bp, program_id=offer.program_id,
        merchant_id=offer.merchant.public_id if offer.merchant is not None else None,
        category=offer.category.value if offer.category else None,
        merchant_category=offer.merchant_category.value if offer.merchant_category else None,
        min_spend=offer.min_spend, max_discount=offer.max_discount, starts_at=offer.starts_at,
        ends_at=offer.ends_at, weekdays=tuple(offer.weekdays) if offer.weekdays else None,
        hours_from=offer.hours_from, hours_to=offer.hours_to, limit_count=offer.limit_count,
        limit_amount=offer.limit_amount, limit_period=offer.limit_period.value if offer.limit_period else None,
        budget_left=budget_left, hardship_only=offer.hardship_only,
        union_ids=tuple(offer.union_ids) if offer.union_ids else None, stackable=offer.stackable,
        priority=offer.priority, title=offer.title)


def live_offers(session: Session, store: Store) -> list[Offer]:
    """The published offers that may apply at the store: its merchant's, and those for every merchant of
    its family or trade (the time window and the member are pricing's to judge)."""
    trade = store.effective_category
    family = FAMILY_OF_MERCHANT_CATEGORY[trade]
    return list(session.scalars(
        select(Offer).where(Offer.status == OfferStatus.PUBLISHED,
                            or_(Offer.merchant_id == store.merchant_id,
                                (Offer.merchant_id.is_(None)
                                 & or_(Offer.merchant_category == trade,
                                       Offer.merchant_category.is_(None) & (Offer.category == family)))))
        .order_by(Offer.id)))


def live_terms(session: Session, store: Store) -> tuple[dict[str, Offer], list[Terms]]:
    """The store's live offers by public id, and their pricing terms with each budget's remainder."""
    offers = live_offers(session, store)
    budgeted = [o.lineage for o in offers if o.budget_amount is not None]
    left = {}
    if budgeted:
        left = {lineage: budget - used for lineage, budget, used in session.execute(
            select(OfferBudget.lineage, OfferBudget.budget, OfferBudget.used)
            .where(OfferBudget.lineage.in_(budgeted)))}
    return ({o.public_id: o for o in offers},
            [terms_of(o, left.get(o.lineage, o.budget_amount) if o.budget_amount is not None else None)
             for o in offers])


def member_unions(session: Session, member: Member) -> frozenset[str]:
    """The public ids of the member's union and every union above it."""
    ids = [int(part) for part in member.union.path.strip("/").split("/") if part]
    if not ids:
        return frozenset({member.union.public_id})
    return frozenset(session.scalars(select(Union.public_id).where(Union.id.in_(ids))))


def used_by(session: Session, member_id: int, terms: list[Terms], now: dt.datetime) -> dict[str, tuple[int, int]]:
    """What the member already used, in each limited offer's current period: {lineage: (count, discount)}."""
    keys = {(t.lineage, period_key(t.limit_period or "ever", now)) for t in terms
            if t.limit_count is not None or t.limit_amount is not None}
    if not keys:
        return {}
    rows = session.execute(select(OfferUsage.lineage, OfferUsage.period_key, OfferUsage.count, OfferUsage.amount)
                           .where(OfferUsage.member_id == member_id,
                                  OfferUsage.lineage.in_({lineage for lineage, _ in keys})))
    return {lineage: (count, amount) for lineage, key, count, amount in rows if (lineage, key) in keys}


@dataclass(frozen=True)
class Taken:
    """What a payment counted against an offer: its member-usage period and budget."""

    lineage: str
    usage_key: str | None
    budget: bool


def take(session: Session, member_id: int, applied: Applied, offer: Offer, now: dt.datetime) -> Taken:
    """Count one applied offer against the member's limit and the offer's budget, in the caller's
    transaction; raise UsageRace (changing nothing the caller keeps if it rolls back to its savepoint)
    when either is used up."""
    usage_key = None
    if offer.limit_count is not None or offer.limit_amount is not None:
        usage_key = period_key(offer.limit_period.value if offer.limit_period else "ever", now)
        table = OfferUsage.__table__
        insert = dialect_insert(session, table).values(lineage=offer.lineage, member_id=member_id,
                                                       period_key=usage_key, count=1, amount=applied.discount)
        within = []
        if offer.limit_count is not None:
            within.append(table.c.count + 1 <= offer.limit_count)
        if offer.limit_amount is not None:
            within.append(table.c.amount + applied.discount <= offer.limit_amount)
        counted = session.execute(insert.on_conflict_do_update(
            index_elements=[table.c.lineage, table.c.member_id, table.c.period_key],
            set_={"count": table.c.count + 1, "amount": table.c.amount + applied.discount},
            where=within[0] if len(within) == 1 else (within[0] & within[1]),
        ).returning(table.c.count)).first()
        if counted is None or (offer.limit_count is not None and counted[0] > offer.limit_count):
            raise UsageRace(offer.lineage)
    budget = offer.budget_amount is not None and applied.discount > 0
    if budget:
        b = OfferBudget.__table__.c
        taken = session.execute(update(OfferBudget.__table__)
                                .where(b.lineage == offer.lineage, b.used + applied.discount <= b.budget)
                                .values(used=b.used + applied.discount).returning(b.used)).first()
        if taken is None:
            raise UsageRace(offer.lineage)
    return Taken(offer.lineage, usage_key, budget)


def _less(column, amount: int):
    return case((column >= amount, column - amount), else_=0)


def give_back(session: Session, member_id: int, lineage: str, usage_key: str | None, *, count: int, discount: int,
              budget: bool) -> None:
    """Return to a member's usage and an offer's budget what a refund undoes."""
    if usage_key is not None and (count or discount):
        u = OfferUsage.__table__.c
        session.execute(update(OfferUsage.__table__)
                        .where(u.lineage == lineage, u.member_id == member_id, u.period_key == usage_key)
                        .values(count=_less(u.count, count), amount=_less(u.amount, discount)))
    if budget and discount:
        b = OfferBudget.__table__.c
        session.execute(update(OfferBudget.__table__).where(b.lineage == lineage).values(used=_less(b.used, discount)))
