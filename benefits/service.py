"""The offer catalog: what applies at a store, and what members use of it (limits and budgets).

The checkout asks `live_terms` for the published offers that may apply at a store, prices with
`benefits.pricing`, then `take` counts what was applied against each member limit and offer budget in
its own transaction, with conditional updates, so concurrent payments never overrun either; `give_back`
returns it on a refund.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, column, or_, select, table, text, update
from sqlalchemy.orm import Session, lazyload

from benefits.models import (FAMILY_OF_MERCHANT_CATEGORY, LimitPeriod, Offer, OfferBudget, OfferCategory,
                             OfferFunding, OfferKind, OfferStatus, OfferUsage)
from benefits.pricing import Applied, Terms, period_key
from core import audit
from core.auth import Actor
from core.db import dialect_insert, utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.i18n import N_
from core.ids import new_public_id
from core.models import Role, User
from core.pagination import Page, paginate
from members.models import Member, Union
from members.service import scope_root
from merchants.models import Merchant, MerchantCategory, MerchantStatus, Store


class UsageRace(Exception):
    """A member limit or an offer budget was used up by another payment since pricing: price again."""

    def __init__(self, lineage: str):
        super().__init__(lineage)
        self.lineage = lineage


def terms_of(offer: Offer, budget_left: int | None, merchant_public_id: str | None = None) -> Terms:
    """The pricing view of an offer version (its merchant's public id given, or read from the offer)."""
    if offer.merchant_id is None:
        merchant_public_id = None
    elif merchant_public_id is None:
        merchant_public_id = offer.merchant.public_id
    return Terms(
        id=offer.public_id, lineage=offer.lineage, kind=offer.kind.value, value=offer.value,
        funding=offer.funding.value, union_share_bp=offer.union_share_bp, program_id=offer.program_id,
        merchant_id=merchant_public_id,
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
    # Every one of them is the store's merchant's or no merchant's: the merchant is not loaded again.
    return list(session.scalars(
        select(Offer).options(lazyload(Offer.merchant)).where(Offer.status == OfferStatus.PUBLISHED,
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
            [terms_of(o, left.get(o.lineage, o.budget_amount) if o.budget_amount is not None else None,
                      store.merchant.public_id) for o in offers])


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


# --- the catalog's management: drafts, merchant proposals, versions, publication, withdrawal ---------

ADMINS = (Role.UNION_ADMIN,)
PROPOSERS = (Role.MERCHANT_OWNER,)
MERCHANT_READERS = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)
READ_ALL = (Role.AUDITOR,)
# A version not yet decided: edited in place, and at most one of them waits per lineage.
EDITABLE = (OfferStatus.DRAFT, OfferStatus.PROPOSED, OfferStatus.REJECTED)
ENDED = (OfferStatus.WITHDRAWN, OfferStatus.SUPERSEDED)
MAX_FEN = 10**11
MAX_LIMIT_COUNT = 10_000
MAX_PRIORITY = 1_000
MAX_UNIONS = 100
MAX_COMMENT = 500
BP = 10_000
HHMM_RE = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$")
INPUT_FIELDS = frozenset({
    "merchant_id", "title", "description", "category", "merchant_category", "kind", "value", "min_spend",
    "max_discount", "funding", "union_share_bp", "program_id", "starts_at", "ends_at", "weekdays", "hours_from",
    "hours_to", "per_member_limit", "budget_amount", "eligibility", "stackable", "priority"})
LIMIT_FIELDS = frozenset({"count", "amount", "period"})
ELIGIBILITY_FIELDS = frozenset({"hardship_only", "union_ids"})
# The offer's terms as columns: what a new version copies and what an edit may change.
TERMS = ("merchant", "category", "merchant_category", "title", "description", "kind", "value", "min_spend",
         "max_discount", "funding", "union_share_bp", "program_id", "starts_at", "ends_at", "weekdays", "hours_from",
         "hours_to", "limit_count", "limit_amount", "limit_period", "budget_amount", "hardship_only", "union_ids",
         "stackable", "priority")
# Aid programs belong to payments, which depends on benefits: read their table, never their model.
PROGRAMS = table("aid_programs", column("public_id"), column("name"), column("status"), column("union_id"))

MSG_NOT_FOUND = N_("No such offer.")
MSG_ROLE = N_("Your role may not do this.")


def _require(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(MSG_ROLE)


def offer_snapshot(offer: Offer) -> dict[str, Any]:
    """Return the fields the audit log keeps for an offer version."""
    return {"id": offer.public_id, "lineage": offer.lineage, "version": offer.version, "status": offer.status,
            "merchant_id": offer.merchant.public_id if offer.merchant is not None else None,
            "category": offer.category, "merchant_category": offer.merchant_category, "title": offer.title,
            "kind": offer.kind, "value": offer.value, "min_spend": offer.min_spend,
            "max_discount": offer.max_discount, "funding": offer.funding, "union_share_bp": offer.union_share_bp,
            "program_id": offer.program_id, "starts_at": offer.starts_at, "ends_at": offer.ends_at,
            "weekdays": offer.weekdays, "hours_from": offer.hours_from, "hours_to": offer.hours_to,
            "per_member_limit": limit_of(offer), "budget_amount": offer.budget_amount,
            "eligibility": {"hardship_only": offer.hardship_only, "union_ids": offer.union_ids or []},
            "stackable": offer.stackable, "priority": offer.priority}


def limit_of(offer: Offer) -> dict | None:
    """Return the offer's per-member limit as the API shows it, or None when it has none."""
    if offer.limit_count is None and offer.limit_amount is None:
        return None
    return {"count": offer.limit_count, "amount": offer.limit_amount,
            "period": offer.limit_period.value if offer.limit_period else None}


# --- who may see and manage an offer ---------------------------------------------------------------

def _made_by_merchant(session: Session, offer: Offer) -> bool:
    """Tell whether a merchant's staff wrote this version (it then waits for their proposal)."""
    if offer.created_by_id is None:
        return False
    return session.scalar(select(User.merchant_id).where(User.id == offer.created_by_id)) is not None


def _union_paths(session: Session, public_ids) -> dict[str, str]:
    ids = list(public_ids or [])
    if not ids:
        return {}
    return dict(session.execute(select(Union.public_id, Union.path).where(Union.public_id.in_(ids))).all())


def _within(session: Session, union_ids, root: Union) -> bool:
    """Tell whether every one of the unions lies in root's subtree (an empty list does not)."""
    if not union_ids:
        return False
    paths = _union_paths(session, union_ids)
    return all(paths.get(u, "").startswith(root.path) for u in union_ids)


def _may_manage(session: Session, actor: Actor, offer: Offer, root: Union | None) -> bool:
    if actor.role == Role.UNION_ADMIN:
        if root is None:
            return True
        if offer.union_ids:
            return _within(session, offer.union_ids, root)
        # A merchant's proposal is for all members until an admin narrows it to the unions they run.
        return offer.status in (OfferStatus.PROPOSED, OfferStatus.REJECTED)
    if actor.role in PROPOSERS:
        return offer.merchant_id is not None and offer.merchant_id == actor.merchant_id
    return False


def _may_see(session: Session, actor: Actor | None, offer: Offer, root: Union | None) -> bool:
    if offer.status == OfferStatus.PUBLISHED:
        return True
    if actor is None:
        return False
    if actor.role in READ_ALL:
        return True
    if actor.role in MERCHANT_READERS:
        return offer.merchant_id is not None and offer.merchant_id == actor.merchant_id
    return _may_manage(session, actor, offer, root)


def _find(session: Session, public_id: str) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.public_id == public_id))


def get_offer(session: Session, actor: Actor | None, public_id: str) -> Offer:
    """Return an offer version the actor may see (anyone sees a published one), or raise NotFound."""
    offer = _find(session, public_id)
    if offer is None or not _may_see(session, actor, offer, scope_root(session, actor) if actor else None):
        raise NotFound(MSG_NOT_FOUND)
    return offer


def _managed(session: Session, actor: Actor, public_id: str) -> tuple[Offer, Union | None]:
    root = scope_root(session, actor)
    offer = _find(session, public_id)
    if offer is None or not _may_manage(session, actor, offer, root):
        raise NotFound(MSG_NOT_FOUND)
    return offer, root


def get_managed_offer(session: Session, actor: Actor, public_id: str) -> Offer:
    """Return an offer version the actor may change, or raise NotFound."""
    return _managed(session, actor, public_id)[0]


def _lock_lineage(session: Session, offer: Offer) -> list[Offer]:
    """Lock every version of the offer's lineage, in id order, and read them afresh: changes of one lineage
    take turns, so two publications cannot both win and two edits cannot both add a version."""
    query = (select(Offer).where(Offer.lineage == offer.lineage).order_by(Offer.id).with_for_update(of=Offer)
             .execution_options(populate_existing=True))
    session.execute(query)
    # A version added by the transaction just waited for is visible to a new statement only.
    return list(session.scalars(query))


def lineage_versions(session: Session, actor: Actor | None, offer: Offer) -> list[Offer]:
    """List the versions of the offer's lineage the actor may see, oldest first."""
    root = scope_root(session, actor) if actor else None
    rows = session.scalars(select(Offer).where(Offer.lineage == offer.lineage).order_by(Offer.version))
    return [o for o in rows if _may_see(session, actor, o, root)]


# --- reading and checking terms --------------------------------------------------------------------

def _state_of(offer: Offer | None) -> dict[str, Any]:
    if offer is None:
        return {"merchant": None, "category": None, "merchant_category": None, "title": "", "description": "",
                "kind": None, "value": None, "min_spend": 0, "max_discount": None, "funding": None,
                "union_share_bp": None, "program_id": None, "starts_at": None, "ends_at": None, "weekdays": None,
                "hours_from": None, "hours_to": None, "limit_count": None, "limit_amount": None,
                "limit_period": None, "budget_amount": None, "hardship_only": False, "union_ids": None,
                "stackable": False, "priority": 0}
    return {name: getattr(offer, name) for name in TERMS}


def _write(offer: Offer, state: dict[str, Any]) -> None:
    for name in TERMS:
        setattr(offer, name, state[name])


def _whole(raw, low: int, high: int) -> int:
    """Return raw as an int within [low, high], or raise ValueError."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise ValueError
    return raw


def _amount(errors: dict, name: str, raw, *, low: int = 0, optional: bool = True) -> int | None:
    if raw is None and optional:
        return None
    try:
        return _whole(raw, low, MAX_FEN)
    except ValueError:
        errors[name] = [N_("Give an amount in fen, a whole number of at least 0.") if low == 0
                        else N_("Give an amount in fen, a whole number of at least 1.")]
        return None


def _choice(errors: dict, name: str, enum_cls, raw, message: str):
    if raw is None or raw == "":
        return None
    try:
        return enum_cls(getattr(raw, "value", raw))
    except ValueError:
        errors[name] = [message]
        return None


def _moment(errors: dict, name: str, raw) -> dt.datetime | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = dt.datetime.fromisoformat(raw)
        except ValueError:
            errors[name] = [N_("Give a date and time with its time zone.")]
            return None
    if not isinstance(raw, dt.datetime) or raw.tzinfo is None:
        errors[name] = [N_("Give a date and time with its time zone.")]
        return None
    try:
        return raw.astimezone(dt.timezone.utc)
    except OverflowError:
        errors[name] = [N_("Give a date and time with its time zone.")]
        return None


def _read(session: Session, state: dict, data: dict, errors: dict) -> None:
    """Parse the given fields of an offer's input onto state, noting what is wrong with each."""
    for name in sorted(set(data) - INPUT_FIELDS):
        errors[name] = [N_("Unknown field.")]
    if "title" in data:
        title = data["title"].strip() if isinstance(data["title"], str) else ""
        if not 1 <= len(title) <= 100:
            errors["title"] = [N_("Give the offer a title (1-100 characters).")]
        state["title"] = title
    if "description" in data:
        description = "" if data["description"] is None else data["description"]
        if not isinstance(description, str) or len(description) > 1000:
            errors["description"] = [N_("At most 1000 characters.")]
            description = ""
        state["description"] = description.strip()
    if "merchant_id" in data:
        state["merchant"] = None
        if data["merchant_id"] is not None:
            merchant = (session.scalar(select(Merchant).where(Merchant.public_id == data["merchant_id"]))
                        if isinstance(data["merchant_id"], str) else None)
            if merchant is None:
                errors["merchant_id"] = [N_("No such merchant.")]
            state["merchant"] = merchant
    if "category" in data:
        state["category"] = _choice(errors, "category", OfferCategory, data["category"],
                                    N_("Choose one of the families: culture, legal, health, safety, entertainment, "
                                       "everyday."))
    if "merchant_category" in data:
        state["merchant_category"] = _choice(errors, "merchant_category", MerchantCategory,
                                             data["merchant_category"], N_("Choose a trade from the list."))
    if "kind" in data:
        state["kind"] = _choice(errors, "kind", OfferKind, data["kind"],
                                N_("Choose percent_off, amount_off, fixed_price or entitlement."))
    if "value" in data:
        state["value"] = _amount(errors, "value", data["value"], optional=False)
    if "min_spend" in data:
        state["min_spend"] = _amount(errors, "min_spend", data["min_spend"]) or 0
    if "max_discount" in data:
        state["max_discount"] = _amount(errors, "max_discount", data["max_discount"], low=1)
    if "funding" in data:
        funding = _choice(errors, "funding", OfferFunding, data["funding"],
                          N_("Choose merchant, union or split funding."))
        if funding is not None and funding != state["funding"]:
            # A change of who pays resets what the old funding implied, unless given alongside.
            if "union_share_bp" not in data:
                state["union_share_bp"] = {OfferFunding.MERCHANT: 0, OfferFunding.UNION: BP}.get(funding)
            if "program_id" not in data and funding == OfferFunding.MERCHANT:
                state["program_id"] = None
        state["funding"] = funding
    if "union_share_bp" in data:
        try:
            state["union_share_bp"] = (None if data["union_share_bp"] is None
                                       else _whole(data["union_share_bp"], 0, BP))
        except ValueError:
            errors["union_share_bp"] = [N_("Give the union's share in basis points, 0 to 10000.")]
    if "program_id" in data:
        program = data["program_id"]
        if program is not None and not isinstance(program, str):
            errors["program_id"] = [N_("Not an active aid program.")]
            program = None
        state["program_id"] = program or None
    if "starts_at" in data:
        state["starts_at"] = _moment(errors, "starts_at", data["starts_at"])
    if "ends_at" in data:
        state["ends_at"] = _moment(errors, "ends_at", data["ends_at"])
    if "weekdays" in data:
        _read_weekdays(state, data["weekdays"], errors)
    for name in ("hours_from", "hours_to"):
        if name in data:
            hours = data[name] or None
            if hours is not None and not (isinstance(hours, str) and HHMM_RE.match(hours)):
                errors[name] = [N_("Give a time of day as HH:MM, such as 09:00.")]
            state[name] = hours
    if "per_member_limit" in data:
        _read_limit(state, data["per_member_limit"], errors)
    if "budget_amount" in data:
        state["budget_amount"] = _amount(errors, "budget_amount", data["budget_amount"], low=1)
    if "eligibility" in data:
        _read_eligibility(session, state, data["eligibility"], errors)
    if "stackable" in data:
        if not isinstance(data["stackable"], bool):
            errors["stackable"] = [N_("Give true or false.")]
        state["stackable"] = data["stackable"] is True
    if "priority" in data:
        try:
            state["priority"] = _whole(0 if data["priority"] is None else data["priority"], -MAX_PRIORITY,
                                       MAX_PRIORITY)
        except ValueError:
            errors["priority"] = [N_("Give a whole number from -1000 to 1000.")]


def _read_weekdays(state: dict, raw, errors: dict) -> None:
    if raw is None or raw == []:
        state["weekdays"] = None
        return
    days = raw if isinstance(raw, (list, tuple)) else None
    if days is None or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in days) \
            or len(set(days)) != len(days):
        errors["weekdays"] = [N_("List distinct days of the week, 1 (Monday) to 7 (Sunday).")]
        return
    state["weekdays"] = sorted(days)


def _read_limit(state: dict, raw, errors: dict) -> None:
    state["limit_count"] = state["limit_amount"] = state["limit_period"] = None
    if raw is None:
        return
    if not isinstance(raw, dict):
        errors["per_member_limit"] = [N_("Give count, amount and period.")]
        return
    for name in sorted(set(raw) - LIMIT_FIELDS):
        errors[f"per_member_limit.{name}"] = [N_("Unknown field.")]
    count, amount = raw.get("count"), raw.get("amount")
    if count is not None:
        try:
            state["limit_count"] = _whole(count, 1, MAX_LIMIT_COUNT)
        except ValueError:
            errors["per_member_limit.count"] = [N_("Give how many times, a whole number from 1 to 10000.")]
    if amount is not None:
        state["limit_amount"] = _amount(errors, "per_member_limit.amount", amount, low=1)
    if count is None and amount is None:
        errors["per_member_limit"] = [N_("Limit the number of times, the discount, or both.")]
    state["limit_period"] = _choice(errors, "per_member_limit.period", LimitPeriod, raw.get("period"),
                                    N_("Choose the period: day, month, year or ever."))
    if raw.get("period") in (None, ""):
        errors["per_member_limit.period"] = [N_("Choose the period: day, month, year or ever.")]


def _read_eligibility(session: Session, state: dict, raw, errors: dict) -> None:
    if raw is None:
        state["hardship_only"], state["union_ids"] = False, None
        return
    if not isinstance(raw, dict):
        errors["eligibility"] = [N_("Give hardship_only and union_ids.")]
        return
    for name in sorted(set(raw) - ELIGIBILITY_FIELDS):
        errors[f"eligibility.{name}"] = [N_("Unknown field.")]
    if "hardship_only" in raw:
        if not isinstance(raw["hardship_only"], bool):
            errors["eligibility.hardship_only"] = [N_("Give true or false.")]
        state["hardship_only"] = raw["hardship_only"] is True
    if "union_ids" in raw:
        ids = raw["union_ids"]
        if ids is None or ids == []:
            state["union_ids"] = None
            return
        if not isinstance(ids, (list, tuple)) or not all(isinstance(u, str) for u in ids):
            errors["eligibility.union_ids"] = [N_("List the public ids of unions.")]
            return
        ids = list(dict.fromkeys(ids))
        if len(ids) > MAX_UNIONS:
            errors["eligibility.union_ids"] = [N_("At most 100 unions.")]
            return
        known = _union_paths(session, ids)
        if any(u not in known for u in ids):
            errors["eligibility.union_ids"] = [N_("Unknown union.")]
            return
        state["union_ids"] = ids


def _program(session: Session, public_id: str):
    return session.execute(select(PROGRAMS.c.public_id, PROGRAMS.c.status, Union.path, Union.parent_id)
                           .join(Union, Union.id == PROGRAMS.c.union_id)
                           .where(PROGRAMS.c.public_id == public_id)).first()


def _check(session: Session, state: dict, errors: dict, root: Union | None, *, now: dt.datetime) -> None:
    """Check the offer's terms as a whole, filling in what defaults from other fields."""
    if not state["title"] and "title" not in errors:
        errors["title"] = [N_("Give the offer a title (1-100 characters).")]
    for name, message in (("kind", N_("Choose percent_off, amount_off, fixed_price or entitlement.")),
                          ("value", N_("Give an amount in fen, a whole number of at least 0.")),
                          ("funding", N_("Choose merchant, union or split funding."))):
        if state[name] is None and name not in errors:
            errors[name] = [message]
    merchant = state["merchant"]
    if merchant is not None and merchant.status == MerchantStatus.TERMINATED:
        errors["merchant_id"] = [N_("The merchant is terminated.")]
    if merchant is not None and state["category"] is None:
        state["category"] = FAMILY_OF_MERCHANT_CATEGORY[merchant.category]
    if merchant is None and state["category"] is None and "merchant_id" not in errors and "category" not in errors:
        message = N_("Name the merchant, or the family of merchants, the offer is for.")
        errors["merchant_id"] = errors["category"] = [message]
    trade = state["merchant_category"]
    if trade is not None:
        if merchant is not None:
            errors["merchant_category"] = [N_("Only an offer for a whole family of merchants names a trade.")]
        elif state["category"] is not None and FAMILY_OF_MERCHANT_CATEGORY[trade] != state["category"]:
            errors["merchant_category"] = [N_("This trade is not in the offer's family.")]
    kind, value = state["kind"], state["value"]
    if kind == OfferKind.PERCENT_OFF and value is not None and not 1 <= value <= BP:
        errors["value"] = [N_("A percentage off is 1 to 10000 basis points (100 = 1%).")]
    if kind == OfferKind.ENTITLEMENT and state["limit_count"] is None and "per_member_limit" not in errors:
        errors["per_member_limit.count"] = [N_("An entitlement is counted: say how many times a member may use it.")]
    _check_funding(state, errors)
    if state["starts_at"] is None and "starts_at" not in errors:
        state["starts_at"] = now
    if state["ends_at"] is not None and state["starts_at"] is not None and state["ends_at"] <= state["starts_at"]:
        errors["ends_at"] = [N_("The end must come after the start.")]
    if (state["hours_from"] is None) != (state["hours_to"] is None):
        for name in ("hours_from", "hours_to"):
            errors.setdefault(name, [N_("Give both hours, or neither.")])
    elif state["hours_from"] is not None and state["hours_from"] == state["hours_to"]:
        errors["hours_to"] = [N_("The hours must not start and end at the same time.")]
    if root is not None and "eligibility.union_ids" not in errors:
        if not state["union_ids"]:
            state["union_ids"] = [root.public_id]
        elif not _within(session, state["union_ids"], root):
            errors["eligibility.union_ids"] = [N_("Choose unions you administer.")]
    _check_program(session, state, errors, root)


def _check_funding(state: dict, errors: dict) -> None:
    funding, share = state["funding"], state["union_share_bp"]
    if funding == OfferFunding.MERCHANT:
        if share not in (None, 0):
            errors["union_share_bp"] = [N_("The merchant bears all of the discount: the union's share is 0.")]
        if state["program_id"] is not None:
            errors["program_id"] = [N_("Only union or split funding draws on an aid program.")]
        state["union_share_bp"] = 0
    elif funding == OfferFunding.UNION:
        if share not in (None, BP):
            errors["union_share_bp"] = [N_("Union funding pays all of the discount: the union's share is 10000.")]
        state["union_share_bp"] = BP
    elif funding == OfferFunding.SPLIT:
        if share is None or not 1 <= share <= BP - 1:
            errors.setdefault("union_share_bp", [N_("A split gives the union a share of 1 to 9999 basis points.")])
    if funding in (OfferFunding.UNION, OfferFunding.SPLIT) and state["program_id"] is None \
            and "program_id" not in errors:
        errors["program_id"] = [N_("Union or split funding names the aid program that pays.")]


def _check_program(session: Session, state: dict, errors: dict, root: Union | None) -> None:
    if state["program_id"] is None or "program_id" in errors:
        return
    program = _program(session, state["program_id"])
    if program is None or program.status != "active":
        errors["program_id"] = [N_("Not an active aid program.")]
        return
    if root is not None and not program.path.startswith(root.path):
        errors["program_id"] = [N_("The aid program belongs to a union you do not administer.")]
        return
    if "eligibility.union_ids" in errors:
        return
    # A program pays for the members of its own union and the unions under it.
    if state["union_ids"]:
        paths = _union_paths(session, state["union_ids"])
        if not all(paths.get(u, "").startswith(program.path) for u in state["union_ids"]):
            errors["eligibility.union_ids"] = [N_("A union-funded offer is for members of the program's unions.")]
    elif program.parent_id is not None:
        errors["eligibility.union_ids"] = [N_("A union-funded offer is for members of the program's unions.")]


def _check_merchant_input(data: dict, errors: dict) -> None:
    """A merchant proposes offers it pays for itself, for all members; the union narrows them."""
    funding = data.get("funding")
    if funding is not None and getattr(funding, "value", funding) != OfferFunding.MERCHANT.value:
        errors["funding"] = [N_("A merchant's offer is funded by the merchant.")]
    for name in ("program_id", "union_share_bp"):
        if data.get(name) not in (None, 0):
            errors[name] = [N_("A merchant's offer is funded by the merchant.")]
    eligibility = data.get("eligibility")
    if isinstance(eligibility, dict) and eligibility.get("union_ids"):
        errors["eligibility.union_ids"] = [N_("The union chooses which unions' members an offer is for.")]


# --- use cases -------------------------------------------------------------------------------------

def create_offer(session: Session, actor: Actor, data: dict, *, now: dt.datetime | None = None) -> Offer:
    """Create an offer as a draft: a union admin's to publish, or a merchant owner's to propose for their
    own merchant (funded by the merchant)."""
    _require(actor, *ADMINS, *PROPOSERS)
    now = now or utcnow()
    data = dict(data)
    errors: dict[str, list[str]] = {}
    root = scope_root(session, actor)
    if actor.role in PROPOSERS:
        own = session.get(Merchant, actor.merchant_id)
        data["merchant_id"] = own.public_id if own is not None else None
        data.setdefault("funding", OfferFunding.MERCHANT.value)
        _check_merchant_input(data, errors)
    state = _state_of(None)
    _read(session, state, data, errors)
    _check(session, state, errors, root, now=now)
    if errors:
        raise ValidationFailed(errors)
    public_id = new_public_id("off")
    offer = Offer(public_id=public_id, lineage=public_id, version=1, previous_id=None, status=OfferStatus.DRAFT,
                  created_by_id=actor.user_id, created_at=now)
    _write(offer, state)
    session.add(offer)
    session.flush()
    audit.record(session, actor, "offer.created", "offer", offer.public_id, after=offer_snapshot(offer))
    session.commit()
    return offer


def update_offer(session: Session, actor: Actor, public_id: str, changes: dict, *,
                 now: dt.datetime | None = None) -> Offer:
    """Change an offer: a version not yet decided is edited in place; a published one gets a new draft
    version, and keeps applying, unchanged, until that one is published. Return the version edited."""
    _require(actor, *ADMINS, *PROPOSERS)
    now = now or utcnow()
    offer, root = _managed(session, actor, public_id)
    versions = _lock_lineage(session, offer)
    if offer.status not in EDITABLE + (OfferStatus.PUBLISHED,):
        raise Conflict(N_("This version of the offer has ended; it cannot be edited."), code="invalid_state")
    pending = [v for v in versions if v.status in EDITABLE and v.id != offer.id]
    if offer.status == OfferStatus.PUBLISHED and pending:
        raise Conflict(N_("A newer version of this offer is waiting: edit that one."), code="version_pending")
    errors: dict[str, list[str]] = {}
    if actor.role in PROPOSERS:
        changes = {k: v for k, v in changes.items() if k != "merchant_id"}
        _check_merchant_input(changes, errors)
    state = _state_of(offer)
    _read(session, state, changes, errors)
    _check(session, state, errors, root, now=now)
    if errors:
        raise ValidationFailed(errors)
    before = offer_snapshot(offer)
    if offer.status in EDITABLE:
        _write(offer, state)
        session.flush()
        audit.record(session, actor, "offer.updated", "offer", offer.public_id, before=before,
                     after=offer_snapshot(offer))
        session.commit()
        return offer
    version = Offer(public_id=new_public_id("off"), lineage=offer.lineage,
                    version=max(v.version for v in versions) + 1, previous_id=offer.id, status=OfferStatus.DRAFT,
                    created_by_id=actor.user_id, created_at=now)
    _write(version, state)
    session.add(version)
    session.flush()
    audit.record(session, actor, "offer.version_created", "offer", version.public_id, before=before,
                 after=offer_snapshot(version))
    session.commit()
    return version


def propose(session: Session, actor: Actor, public_id: str, *, now: dt.datetime | None = None) -> Offer:
    """Send the merchant's draft (or a rejected proposal, changed) to the union."""
    _require(actor, *PROPOSERS)
    offer, _root = _managed(session, actor, public_id)
    _lock_lineage(session, offer)
    if offer.status not in (OfferStatus.DRAFT, OfferStatus.REJECTED):
        raise Conflict(N_("Only a draft or a rejected proposal can be proposed."), code="invalid_state")
    before = offer_snapshot(offer)
    offer.status, offer.proposed_at, offer.ended_at = OfferStatus.PROPOSED, now or utcnow(), None
    audit.record(session, actor, "offer.proposed", "offer", offer.public_id, before=before,
                 after=offer_snapshot(offer))
    session.commit()
    return offer


def _set_budget(session: Session, actor: Actor, offer: Offer) -> None:
    """Make the lineage's budget the new version's, keeping what was already used of it."""
    if offer.budget_amount is None:
        return
    budget = session.get(OfferBudget, offer.lineage, with_for_update=True, populate_existing=True)
    if budget is None:
        budget = OfferBudget(lineage=offer.lineage, budget=offer.budget_amount, used=0)
        session.add(budget)
        before = None
    else:
        if offer.budget_amount < budget.used:
            raise ValidationFailed({"budget_amount": [N_("The budget is below what has already been used of it.")]},
                                   code="budget_below_used")
        before = {"budget": budget.budget, "used": budget.used}
        budget.budget = offer.budget_amount
    session.flush()
    audit.record(session, actor, "offer.budget_set", "offer", offer.lineage, before=before,
                 after={"budget": budget.budget, "used": budget.used})


def publish(session: Session, actor: Actor, public_id: str, *, now: dt.datetime | None = None) -> Offer:
    """Publish a draft or a proposal: it applies at checkout from now on, in place of the lineage's
    published version, which is superseded."""
    _require(actor, *ADMINS)
    now = now or utcnow()
    offer, root = _managed(session, actor, public_id)
    versions = _lock_lineage(session, offer)
    if offer.status not in (OfferStatus.DRAFT, OfferStatus.PROPOSED):
        raise Conflict(N_("Only a draft or a proposal can be published."), code="invalid_state")
    if any(v.status == OfferStatus.WITHDRAWN for v in versions):
        raise Conflict(N_("The offer was withdrawn; create a new one instead."), code="invalid_state")
    if offer.status == OfferStatus.DRAFT and _made_by_merchant(session, offer):
        raise Conflict(N_("The merchant has not proposed this offer yet."), code="not_proposed")
    if root is not None and not offer.union_ids:
        raise ValidationFailed({"eligibility.union_ids": [N_("Narrow the offer to unions you administer first.")]},
                               code="narrow_first")
    current = next((v for v in versions if v.status == OfferStatus.PUBLISHED), None)
    if current is not None and not _may_manage(session, actor, current, root):
        raise NotFound(MSG_NOT_FOUND)
    errors: dict[str, list[str]] = {}
    state = _state_of(offer)
    _check(session, state, errors, root, now=now)
    if offer.ends_at is not None and offer.ends_at <= now:
        errors["ends_at"] = [N_("The offer has already ended.")]
    if errors:
        raise ValidationFailed(errors)
    _set_budget(session, actor, offer)
    if current is not None:
        before = offer_snapshot(current)
        current.status, current.ended_at = OfferStatus.SUPERSEDED, now
        audit.record(session, actor, "offer.superseded", "offer", current.public_id, before=before,
                     after=offer_snapshot(current) | {"by": offer.public_id})
    before = offer_snapshot(offer)
    offer.status, offer.published_at, offer.decided_by_id, offer.ended_at = OfferStatus.PUBLISHED, now, \
        actor.user_id, None
    offer.decision_comment = None
    session.flush()
    audit.record(session, actor, "offer.published", "offer", offer.public_id, before=before,
                 after=offer_snapshot(offer))
    session.commit()
    return offer


def _comment(comment: str | None, *, required: bool) -> str | None:
    text_ = (comment or "").strip()
    if required and not text_:
        raise ValidationFailed({"comment": [N_("Tell the merchant why.")]})
    if len(text_) > MAX_COMMENT:
        raise ValidationFailed({"comment": [N_("At most 500 characters.")]})
    return text_ or None


def reject(session: Session, actor: Actor, public_id: str, comment: str, *,
           now: dt.datetime | None = None) -> Offer:
    """Turn a merchant's proposal down, saying why; the merchant may change it and propose it again."""
    _require(actor, *ADMINS)
    offer, _root = _managed(session, actor, public_id)
    _lock_lineage(session, offer)
    if offer.status != OfferStatus.PROPOSED:
        raise Conflict(N_("Only a proposal can be rejected."), code="invalid_state")
    why = _comment(comment, required=True)
    before = offer_snapshot(offer)
    offer.status, offer.ended_at, offer.decided_by_id, offer.decision_comment = OfferStatus.REJECTED, \
        now or utcnow(), actor.user_id, why
    audit.record(session, actor, "offer.rejected", "offer", offer.public_id, before=before,
                 after=offer_snapshot(offer) | {"comment": why})
    session.commit()
    return offer


def withdraw(session: Session, actor: Actor, public_id: str, comment: str | None = None, *,
             now: dt.datetime | None = None) -> Offer:
    """Take a published offer off for good, with the versions of it still waiting."""
    _require(actor, *ADMINS)
    now = now or utcnow()
    offer, _root = _managed(session, actor, public_id)
    versions = _lock_lineage(session, offer)
    if offer.status != OfferStatus.PUBLISHED:
        raise Conflict(N_("Only a published offer can be withdrawn."), code="invalid_state")
    why = _comment(comment, required=False)
    for version in [offer] + [v for v in versions if v.status in EDITABLE]:
        before = offer_snapshot(version)
        version.status, version.ended_at, version.decided_by_id = OfferStatus.WITHDRAWN, now, actor.user_id
        version.decision_comment = why
        audit.record(session, actor, "offer.withdrawn", "offer", version.public_id, before=before,
                     after=offer_snapshot(version) | ({"comment": why} if why else {}))
    session.commit()
    return offer


# --- lists ----------------------------------------------------------------------------------------

def _json_unions(session: Session) -> tuple[str, str]:
    """Return SQL for the offer's union ids as an array (empty when none) and for its elements' table."""
    if session.get_bind().dialect.name == "postgresql":
        ids = "(CASE WHEN jsonb_typeof(offers.union_ids) = 'array' THEN offers.union_ids ELSE '[]'::jsonb END)"
        return f"jsonb_array_length({ids})", f"jsonb_array_elements_text({ids}) AS e(value)"
    ids = "(CASE WHEN json_type(offers.union_ids) = 'array' THEN offers.union_ids ELSE '[]' END)"
    return f"json_array_length({ids})", f"json_each({ids}) AS e"


def _for_all_members(session: Session):
    length, _elements = _json_unions(session)
    return text(f"{length} = 0")


def _within_subtree(session: Session, root: Union):
    length, elements = _json_unions(session)
    # Every listed union is in the subtree: none of them is outside it.
    return text(f"{length} > 0 AND NOT EXISTS (SELECT 1 FROM {elements} WHERE NOT EXISTS ("
                "SELECT 1 FROM unions u WHERE u.public_id = e.value AND u.path LIKE :subtree))"
                ).bindparams(subtree=root.path + "%")


def _visible(session: Session, actor: Actor | None, query, now: dt.datetime):
    published = Offer.status == OfferStatus.PUBLISHED
    if actor is not None and (actor.role in READ_ALL or (actor.role == Role.UNION_ADMIN and actor.union_id is None)):
        return query
    if actor is not None and actor.role == Role.UNION_ADMIN:
        root = scope_root(session, actor)
        return query.where(or_(published, _within_subtree(session, root),
                               Offer.status.in_((OfferStatus.PROPOSED, OfferStatus.REJECTED))
                               & _for_all_members(session)))
    if actor is not None and actor.role in MERCHANT_READERS:
        return query.where(or_(published, Offer.merchant_id == actor.merchant_id))
    # Members and the public browse what is on offer now or soon.
    active = select(Merchant.id).where(Merchant.status == MerchantStatus.ACTIVE)
    return query.where(published, or_(Offer.ends_at.is_(None), Offer.ends_at > now),
                       or_(Offer.merchant_id.is_(None), Offer.merchant_id.in_(active)))


def list_offers(session: Session, actor: Actor | None, *, status: OfferStatus | None = None,
                merchant_id: str | None = None, category: OfferCategory | None = None, q: str | None = None,
                limit: int, cursor: str | None, newest_first: bool = False,
                now: dt.datetime | None = None) -> Page:
    """List the offer versions the actor may see: published ones for anyone (the live ones for the public
    and members), every one for union staff in their scope, and their own merchant's for its staff."""
    query = _visible(session, actor, select(Offer), now or utcnow())
    if status is not None:
        query = query.where(Offer.status == status)
    if merchant_id:
        query = query.where(Offer.merchant_id == select(Merchant.id).where(Merchant.public_id == merchant_id)
                            .scalar_subquery())
    if category is not None:
        query = query.where(Offer.category == category)
    if q:
        term = q.strip()
        query = query.where(Offer.title.contains(term, autoescape=True)
                            | Offer.description.contains(term, autoescape=True))
    return paginate(session, query, Offer.id, limit=limit, cursor=cursor, descending=newest_first)


def program_choices(session: Session, actor: Actor, *, limit: int = 200) -> list[tuple[str, str]]:
    """List the active aid programs (public id, name) an admin may fund offers from."""
    query = (select(PROGRAMS.c.public_id, PROGRAMS.c.name).join(Union, Union.id == PROGRAMS.c.union_id)
             .where(PROGRAMS.c.status == "active").order_by(PROGRAMS.c.name).limit(limit))
    root = scope_root(session, actor)
    if root is not None:
        query = query.where(Union.path.startswith(root.path))
    return [tuple(row) for row in session.execute(query)]


def merchant_choices(session: Session, *, limit: int = 500) -> list[tuple[str, str]]:
    """List the active merchants (public id, name) an offer may be for."""
    return [tuple(row) for row in session.execute(
        select(Merchant.public_id, Merchant.name).where(Merchant.status == MerchantStatus.ACTIVE)
        .order_by(Merchant.name).limit(limit))]
