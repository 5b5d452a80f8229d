"""Paying at a merchant and refunds: each one database transaction and one ledger transaction.

A payment checks the store, merchant and card, prices the amount with the best published offer(s),
counts what it used against member limits and offer budgets, and posts one balanced transaction:
the card's purses (restricted aid that allows the store's trade first, soonest expiry first, then the
general purse) and the union's share of the discount from the program budget, to the merchant's
payable. The card row is locked for the payment, so two payments of one card take turns and a purse
never pays more than it holds; nothing else is locked that every payment shares (the merchant's payable
takes appended entries; program budgets are sliced).

A refund gives back part or all of what was charged, never more in total: to the purses it came from
(last drawn, first back; the card that replaced a replaced card; the program, for aid that has expired),
the union's subsidy back to the program in proportion, and the member's limits and the offer's budget
in proportion too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from benefits import service as benefits
from benefits.models import FAMILY_OF_MERCHANT_CATEGORY, Offer
from benefits.pricing import Quote, Shopper, Terms, price, round_half_up
from cards import service as cards
from cards.models import Card, CardStatus, Purse, PurseKind
from core import audit
from core.auth import Actor
from core.db import utcnow
from core.money import format_amount
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from core.models import MERCHANT_ROLES, Role
from core.pagination import Page, paginate
from members.models import Member, Union
from merchants.models import Merchant, Store
from payments import ledger
from payments.checkout.models import (
    Payment,
    PaymentMethod,
    PaymentOffer,
    PaymentPurse,
    PaymentStatus,
    Refund,
)
from payments.disbursement.models import Program
from payments.ledger import credit, debit

CURRENCY = "CNY"
LOCAL = ZoneInfo("Asia/Shanghai")
REFUNDERS = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)
PRICING_ATTEMPTS = 3


def budget_account(program_id: str) -> str:
    return f"program:{program_id}:budget"


@dataclass(frozen=True)
class PayRequest:
    store_id: str
    amount: int
    currency: str = CURRENCY
    payment_code: str | None = None  # the cashier scanned the member's code
    card_id: str | None = None  # the member scanned the store's QR ...
    pin: str | None = None  # ... and confirms with the PIN
    idempotency_key: str | None = None

    @property
    def method(self) -> PaymentMethod:
        return PaymentMethod.PAYMENT_CODE if self.payment_code is not None else PaymentMethod.PIN

    def fingerprint(self) -> str:
        """What a replay must repeat: everything but the PIN (a secret, and not part of what was asked)."""
        code = hashlib.sha256(self.payment_code.encode()).hexdigest() if self.payment_code else None
        payload = [self.store_id, self.amount, self.currency, code, self.card_id]
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _check_request(req: PayRequest, max_amount: int) -> None:
    errors: dict[str, list[str]] = {}
    if isinstance(req.amount, bool) or not isinstance(req.amount, int) or not 0 < req.amount <= max_amount:
        errors["amount"] = [f"A whole number of fen from 1 to {max_amount}."]
    if req.currency != CURRENCY:
        errors["currency"] = ["Cards pay in CNY."]
    if req.payment_code is not None and (req.card_id is not None or req.pin is not None):
        errors["payment_code"] = ["Send a payment code, or a card and its PIN, not both."]
    elif req.payment_code is None and (req.card_id is None or req.pin is None):
        errors["payment_code"] = ["Send the member's payment code, or card_id and pin."]
    if errors:
        raise ValidationFailed(errors)


def _store(session: Session, public_id: str) -> Store:
    """The store with its merchant, in one query (the merchant's other stores and agreements are left out)."""
    store = session.scalar(select(Store).where(Store.public_id == public_id).options(
        joinedload(Store.merchant).options(lazyload(Merchant.stores), lazyload(Merchant.agreements))))
    if store is None:
        raise NotFound("No such store.")
    return store


def _store_for(session: Session, actor: Actor, req: PayRequest) -> Store:
    """The store paid at: a till's own merchant's store; any store taking cards for a member."""
    if req.method == PaymentMethod.PAYMENT_CODE:
        if actor.role not in MERCHANT_ROLES:
            raise Forbidden("Only a merchant's till takes payment codes.")
        store = _store(session, req.store_id)
        if store.merchant_id != actor.merchant_id:
            raise NotFound("No such store.")
    else:
        if actor.role != Role.MEMBER:
            raise Forbidden("Only the card's owner pays with its PIN.")
        store = _store(session, req.store_id)
    return _accepting(store)


def _accepting(store: Store) -> Store:
    """The store, if it takes cards now; a 409 saying it does not otherwise."""
    if not store.accepts_cards():
        raise Conflict("This store does not accept member cards at the moment.", code="store_not_accepting")
    return store


def _replayed(session: Session, model, actor: Actor, key: str | None, fingerprint: str):
    """The earlier answer to this Idempotency-Key, if any; the key reused for another request is refused."""
    if key is None:
        return None
    row = session.scalar(select(model).where(model.created_by_id == actor.user_id, model.idempotency_key == key))
    if row is not None and row.request_hash != fingerprint:
        raise Conflict("This Idempotency-Key was used with a different request.", code="idempotency_key_reused")
    return row


def _shopper(session: Session, card: Card, store: Store, amount: int, terms: list[Terms], now: dt.datetime,
             ) -> Shopper:
    member: Member = card.member
    hardship = member.hardship is not None and member.hardship.is_current(now.astimezone(LOCAL).date())
    unions = benefits.member_unions(session, member) if any(t.union_ids for t in terms) else frozenset()
    trade = store.effective_category
    return Shopper(merchant_id=store.merchant.public_id, merchant_category=trade.value,
                   family=FAMILY_OF_MERCHANT_CATEGORY[trade].value, amount=amount, now=now,
                   on_hardship_register=hardship, unions=unions,
                   used=benefits.used_by(session, member.id, terms, now))


def _draw(session: Session, card: Card, category: str, charged: int, now: dt.datetime) -> list[tuple[Purse, int]]:
    """Split what the card pays over its purses in spending order; refuse if they cannot cover it."""
    drawn, left = [], charged
    order = cards.spending_order(card, category, now) if charged else []
    balances = ledger.balances(session, [purse.account_code for purse in order])
    for purse in order:
        if left == 0:
            break
        take = min(balances[purse.account_code].available, left)
        if take > 0:
            drawn.append((purse, take))
            left -= take
    if left:
        held = charged - left
        raise RuleViolation(f"The card can pay {format_amount(held)} here, less than the {format_amount(charged)} "
                            "due.", code="insufficient_funds")
    return drawn


def _count_usage(session: Session, member_id: int, quote: Quote, offers: dict[str, Offer], now: dt.datetime,
                 ) -> dict[str, benefits.Taken]:
    """Count the applied offers against member limits and budgets, in a savepoint; UsageRace if one ran out."""
    if not any(offers[a.offer_id].limit_count is not None or offers[a.offer_id].limit_amount is not None
               or offers[a.offer_id].budget_amount is not None for a in quote.applied):
        return {}
    savepoint = session.begin_nested()
    try:
        taken = {a.offer_id: benefits.take(session, member_id, a, offers[a.offer_id], now) for a in quote.applied}
    except benefits.UsageRace:
        savepoint.rollback()
        raise
    savepoint.commit()
    return taken


def _priced(session: Session, card: Card, store: Store, amount: int, now: dt.datetime,
            ) -> tuple[Quote, dict[str, Offer], dict[str, benefits.Taken]]:
    """Price the payment and count its offers; a limit or budget used up meanwhile means pricing again
    (without that offer, if it keeps losing the race)."""
    excluded: set[str] = set()
    for attempt in range(PRICING_ATTEMPTS):
        offers, terms = benefits.live_terms(session, store)
        terms = [t for t in terms if t.lineage not in excluded]
        quote = price(terms, _shopper(session, card, store, amount, terms, now))
        try:
            return quote, offers, _count_usage(session, card.member_id, quote, offers, now)
        except benefits.UsageRace as race:
            if attempt >= 1:
                excluded.add(race.lineage)
    quote = price([], _shopper(session, card, store, amount, [], now))
    return quote, {}, {}


def pay(session: Session, actor: Actor, req: PayRequest, *, codes: cards.PaymentCodes, pins: cards.PinGuard,
        max_amount: int, now: dt.datetime | None = None) -> tuple[Payment, bool]:
    """Take a card payment at a store; return it and whether it is the replay of an earlier request."""
    _check_request(req, max_amount)
    fingerprint = req.fingerprint()
    earlier = _replayed(session, Payment, actor, req.idempotency_key, fingerprint)
    if earlier is not None:
        return earlier, True
    store = _store_for(session, actor, req)
    if req.method == PaymentMethod.PAYMENT_CODE:
        consumer = f"{actor.user_id}:{req.idempotency_key or new_public_id('req')}"
        card = codes.redeem(session, req.payment_code, consumer=consumer)
    else:
        card = cards.owned_card(session, actor, req.card_id)
        cards.usable_card(card)
        pins.verify(card, req.pin)
    # The card's payments take turns from here to COMMIT: balances read below stay true, and a
    # replacement or freeze waits for this payment (or this payment for it).
    card = session.scalar(select(Card).where(Card.id == card.id)
                          .options(selectinload(Card.purses), joinedload(Card.member).joinedload(Member.hardship))
                          .with_for_update(of=Card, key_share=True).execution_options(populate_existing=True))
    cards.usable_card(card)
    now = now or utcnow()
    quote, offers, taken = _priced(session, card, store, req.amount, now)
    category = store.effective_category.value
    drawn = _draw(session, card, category, quote.charged, now)
    # Built with its store, merchant, card and (empty) collections in hand, so the answer is read back
    # from memory rather than from the database.
    payment = Payment(public_id=new_public_id("pay"), store=store, merchant=store.merchant, card=card,
                      member_id=card.member_id, purses=[], offers=[], refunds=[], method=req.method, currency=CURRENCY,
                      amount=quote.amount, discount=quote.discount, charged=quote.charged,
                      union_share=quote.union_share, merchant_share=quote.merchant_share,
                      program_id=next((a.program_id for a in quote.applied if a.program_id), None),
                      offer_id=quote.offer_id, created_by_id=actor.user_id, idempotency_key=req.idempotency_key,
                      request_hash=fingerprint, created_at=now,
                      pricing_notes=[{"offer_id": k, "reason": v} for k, v in sorted(quote.not_applied.items())])
    legs = [debit(purse.account_code, amount) for purse, amount in drawn]
    subsidy: dict[str, int] = defaultdict(int)
    for applied in quote.applied:
        if applied.union_share:
            subsidy[applied.program_id] += applied.union_share
    legs += [debit(budget_account(program_id), amount) for program_id, amount in sorted(subsidy.items())]
    to_merchant = quote.charged + quote.union_share
    if to_merchant:
        legs.append(credit(store.merchant.payable_account, to_merchant))
        try:
            txn = ledger.post(session, kind="card_payment", idempotency_key=f"payment:{payment.public_id}",
                              entries=legs, reference=payment.public_id,
                              metadata={"description": store.merchant.name, "payment_id": payment.public_id,
                                        "store_id": store.public_id})
        except RuleViolation as exc:
            if exc.code == "insufficient_funds" and subsidy:
                session.rollback()
                raise Conflict("The union's subsidy for this offer has run out; try the payment again.",
                               code="subsidy_used_up") from None
            raise
        payment.transaction_id = txn.public_id
    try:
        session.add(payment)
        session.flush()
        for position, (purse, amount) in enumerate(drawn):
            payment.purses.append(PaymentPurse(position=position, account_code=purse.account_code,
                                               purse_kind=purse.kind.value, program_id=purse.program_id,
                                               amount=amount, refunded=0))
        for applied in quote.applied:
            t = taken.get(applied.offer_id)
            payment.offers.append(PaymentOffer(offer=offers[applied.offer_id], lineage=applied.lineage,
                                               discount=applied.discount, union_share=applied.union_share,
                                               program_id=applied.program_id,
                                               usage_keys=[t.usage_key] if t is not None and t.usage_key else None))
        audit.record(session, actor, "payment.created", "payment", payment.public_id,
                     after={"store_id": store.public_id, "card_id": card.public_id, "amount": payment.amount,
                            "discount": payment.discount, "charged": payment.charged,
                            "union_share": payment.union_share, "offer_id": payment.offer_id,
                            "transaction_id": payment.transaction_id})
        session.commit()
    except IntegrityError:  # the same Idempotency-Key, written by a concurrent request first
        session.rollback()
        earlier = _replayed(session, Payment, actor, req.idempotency_key, fingerprint)
        if earlier is None:
            raise
        return earlier, True
    return payment, False


# --- reading --------------------------------------------------------------------------------------

def get_payment(session: Session, actor: Actor, public_id: str, *, lock: bool = False) -> Payment:
    """A payment its merchant's staff, its member, or finance may see; 404 for anyone else."""
    query = select(Payment).where(Payment.public_id == public_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    payment = session.scalar(query)
    if payment is None or not _may_see(actor, payment):
        raise NotFound("No such payment.")
    return payment


def _may_see(actor: Actor, payment: Payment) -> bool:
    if actor.role in MERCHANT_ROLES:
        return payment.merchant_id == actor.merchant_id
    if actor.role == Role.MEMBER:
        return payment.member_id == actor.member_id
    return actor.role in (Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR)


# --- refunds --------------------------------------------------------------------------------------

def _share(total: int, part: int, whole: int) -> int:
    """`total` in proportion part / whole, half-up; all of it when part is the whole."""
    return total if part >= whole else round_half_up(total * part, whole)


def _refund_target(session: Session, purse_row: PaymentPurse, now: dt.datetime) -> tuple[str, str]:
    """Where money drawn from a purse goes back to: (account, what it is)."""
    purse = session.scalar(select(Purse).where(Purse.account_code == purse_row.account_code))
    expired = purse.expires_at is not None and purse.expires_at <= now
    if purse.kind == PurseKind.RESTRICTED and (expired or (purse.closed_at is not None
                                                           and purse.card.status != CardStatus.REPLACED)):
        return budget_account(purse.program_id), "program"
    card = purse.card
    if card.status == CardStatus.REPLACED:
        card = cards.successor(session, card)
    if card.status == CardStatus.CANCELLED:
        raise Conflict("The member's card is cancelled; this payment cannot go back to a card.",
                       code="card_cancelled")
    if purse.kind == PurseKind.GENERAL:
        return cards.general_account(card.public_id), "card"
    return cards.aid_account(card.public_id, purse.program_id), "card"


def refund(session: Session, actor: Actor, payment_id: str, *, amount: int, reason: str = "",
           idempotency_key: str | None = None, now: dt.datetime | None = None) -> tuple[Refund, bool]:
    """Give back `amount` of what a payment charged; return the refund and whether it is a replay."""
    if actor.role not in REFUNDERS:
        raise Forbidden("Only the merchant's owner or a manager may refund.")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationFailed({"amount": ["A positive whole number of fen."]})
    reason = (reason or "").strip()[:200]
    fingerprint = hashlib.sha256(json.dumps([payment_id, amount, reason]).encode()).hexdigest()
    payment = get_payment(session, actor, payment_id, lock=True)  # refunds of one payment take turns
    earlier = _replayed(session, Refund, actor, idempotency_key, fingerprint)
    if earlier is not None:
        session.rollback()
        return earlier, True
    left = payment.charged - payment.refunded
    if left == 0:
        raise Conflict("Everything this payment charged has been refunded.", code="fully_refunded")
    if amount > left:
        raise RuleViolation(f"At most {format_amount(left)} of this payment is left to refund.",
                            code="refund_exceeds_charged")
    now = now or utcnow()
    before, after = payment.refunded, payment.refunded + amount
    # Purses: last drawn, first back.
    legs_out, legs = [], []
    remaining = amount
    for purse_row in sorted(payment.purses, key=lambda p: -p.position):
        back = min(remaining, purse_row.amount - purse_row.refunded)
        if back <= 0:
            continue
        account, to = _refund_target(session, purse_row, now)
        purse_row.refunded += back
        remaining -= back
        legs.append(credit(account, back))
        legs_out.append({"account": account, "amount": back, "to": to, "program_id": purse_row.program_id})
    # The subsidy, per program, in proportion to what has been refunded in all.
    union_back = 0
    by_program: dict[str, int] = defaultdict(int)
    for po in payment.offers:
        if po.union_share:
            by_program[po.program_id] += po.union_share
    for program_id, share in sorted(by_program.items()):
        back = _share(share, after, payment.charged) - _share(share, before, payment.charged)
        if back > 0:
            legs.append(credit(budget_account(program_id), back))
            legs_out.append({"account": budget_account(program_id), "amount": back, "to": "subsidy",
                             "program_id": program_id})
            union_back += back
    legs.append(debit(payment.merchant.payable_account, amount + union_back))
    row = Refund(public_id=new_public_id("ref"), payment_id=payment.id, amount=amount, union_back=union_back,
                 reason=reason, legs=legs_out, created_by_id=actor.user_id, idempotency_key=idempotency_key,
                 request_hash=fingerprint, created_at=now, transaction_id="")
    txn = ledger.post(session, kind="card_refund", idempotency_key=f"refund:{row.public_id}", entries=legs,
                      reference=payment.public_id,
                      metadata={"description": payment.merchant.name, "payment_id": payment.public_id,
                                "refund_id": row.public_id})
    row.transaction_id = txn.public_id
    # Member limits and offer budgets: back in proportion too; the use itself once all is refunded.
    for po in payment.offers:
        benefits.give_back(session, payment.member_id, po.lineage, (po.usage_keys or [None])[0],
                           count=1 if after >= payment.charged else 0,
                           discount=_share(po.discount, after, payment.charged)
                           - _share(po.discount, before, payment.charged),
                           budget=po.offer.budget_amount is not None)
    payment.refunded = after
    payment.union_refunded += union_back
    payment.status = PaymentStatus.REFUNDED if after >= payment.charged else PaymentStatus.PARTIALLY_REFUNDED
    session.add(row)
    audit.record(session, actor, "payment.refunded", "payment", payment.public_id,
                 before={"refunded": before}, after={"refunded": after, "refund_id": row.public_id,
                                                     "amount": amount, "union_back": union_back})
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        earlier = _replayed(session, Refund, actor, idempotency_key, fingerprint)
        if earlier is None:
            raise
        return earlier, True
    return row, False


# --- for the pages: a price preview, payment lists, labels ----------------------------------------

PAGE_LIMIT = 100


@dataclass(frozen=True)
class PricePreview:
    """What paying `amount` at a store would cost the member, as `pay` would price it now."""

    store: Store
    card: Card
    offers: list[Offer]  # the published offers that may apply at the store
    quote: Quote  # the price of the amount (0 when none was given: then only who the offers are for)
    spendable: int  # what the card's purses can pay at this store now

    @property
    def titles(self) -> dict[str, str]:
        """The offers' titles by the public id of their version."""
        return {offer.public_id: offer.title for offer in self.offers}


def preview(session: Session, actor: Actor, store_id: str, amount: int | None, *,
            now: dt.datetime | None = None) -> PricePreview:
    """Price an amount at a store for the acting member's card, counting and charging nothing."""
    if actor.role != Role.MEMBER:
        raise Forbidden("Only the card's owner pays with its PIN.")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 0):
        raise ValidationFailed({"amount": ["A whole number of fen, not negative."]})
    store = _accepting(_store(session, store_id))
    card = cards.live_card_of(session, actor.member_id) if actor.member_id else None
    if card is None:
        raise NotFound("No such card.")
    cards.usable_card(card)
    now = now or utcnow()
    offers, terms = benefits.live_terms(session, store)
    quote = price(terms, _shopper(session, card, store, amount or 0, terms, now))
    order = cards.spending_order(card, store.effective_category.value, now)
    spendable = sum(b.available for b in ledger.balances(session, [p.account_code for p in order]).values())
    return PricePreview(store, card, list(offers.values()), quote, spendable)


def member_payments(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page:
    """The acting member's payments, newest first, a page at a time."""
    if actor.role != Role.MEMBER or actor.member_id is None:
        raise Forbidden("Only a member has payments of their own.")
    query = select(Payment).where(Payment.member_id == actor.member_id)
    return paginate(session, query, Payment.id, limit=min(limit, PAGE_LIMIT), cursor=cursor, descending=True)


def merchant_payments(session: Session, actor: Actor, *, since: dt.datetime, until: dt.datetime, limit: int,
                      cursor: str | None) -> Page:
    """The acting merchant staff's payments in [since, until), newest first."""
    if actor.role not in MERCHANT_ROLES:
        raise Forbidden("Only a merchant's staff see its payments.")
    query = select(Payment).where(Payment.merchant_id == actor.merchant_id, Payment.created_at >= since,
                                  Payment.created_at < until)
    return paginate(session, query, Payment.id, limit=min(limit, PAGE_LIMIT), cursor=cursor, descending=True)


def purse_labels(session: Session, payments: list[Payment]) -> dict[str, str]:
    """The names the member knows each purse by (the aid program's label), by ledger account."""
    codes = {row.account_code for p in payments for row in p.purses}
    if not codes:
        return {}
    return dict(session.execute(select(Purse.account_code, Purse.label).where(Purse.account_code.in_(codes))).all())


def program_names(session: Session, program_ids: set[str]) -> dict[str, str]:
    """The names of aid programs, by public id."""
    ids = {i for i in program_ids if i}
    if not ids:
        return {}
    return dict(session.execute(select(Program.public_id, Program.name).where(Program.public_id.in_(ids))).all())


# --- usage figures --------------------------------------------------------------------------------

USAGE_MAX_MONTHS = 36
USAGE_CHUNK = 1000


@dataclass
class UsageRow:
    """One line of the usage figures: a window's payments and refunds, net of the refunds."""

    key: str  # the offer's lineage, the merchant's or union's public id, or the month "YYYY-MM"
    label: str
    payments: int = 0  # payments made
    redemptions: int = 0  # offers applied, less those a full refund undid
    amount: int = 0  # list price of the payments
    discount: int = 0  # discount given, less what refunds took back
    union_subsidy: int = 0  # paid from program budgets, less what refunds returned to them
    charged: int = 0  # what cards paid
    refunded: int = 0  # what refunds gave back

    @property
    def empty(self) -> bool:
        """Tell whether nothing happened: no payment, no offer used, no refund."""
        return not (self.payments or self.redemptions or self.refunded)

    @property
    def merchant_borne(self) -> int:
        return self.discount - self.union_subsidy

    @property
    def net_charged(self) -> int:
        return self.charged - self.refunded


@dataclass(frozen=True)
class UsageFigures:
    since: dt.datetime
    until: dt.datetime
    offers: list[UsageRow]
    merchants: list[UsageRow]
    unions: list[UsageRow]
    months: list[UsageRow]
    total: UsageRow


def usage_months(since: dt.datetime, until: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """The local (Asia/Shanghai) months the window touches: ("YYYY-MM", start, end), clipped to it."""
    local = since.astimezone(LOCAL)
    start = dt.datetime(local.year, local.month, 1, tzinfo=LOCAL)
    out = []
    while start < until:
        end = dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=LOCAL)
        out.append((f"{start:%Y-%m}", max(start, since), min(end, until)))
        start = end
    return out


def _month_of(moment: dt.datetime) -> str:
    return f"{moment.astimezone(LOCAL):%Y-%m}"


def usage_figures(session: Session, *, since: dt.datetime, until: dt.datetime,
                  union_path: str | None = None) -> UsageFigures:
    """Offer usage in [since, until): per offer, merchant, member's union and local month.

    Payments count when they are made and refunds when they are made, so a closed period's figures never
    change and the union's subsidy matches the program budgets' movements. `union_path` keeps to the
    members of one union's subtree."""
    if since.tzinfo is None or until.tzinfo is None or until <= since:
        raise ValidationFailed({"until": ["The end of the period comes after its start."]})
    months = usage_months(since, until)
    if len(months) > USAGE_MAX_MONTHS:
        raise ValidationFailed({"until": [f"A period of at most {USAGE_MAX_MONTHS} months."]})
    P = Payment
    scope = [Union.path.startswith(union_path)] if union_path else []
    month = case(*[(P.created_at < end, literal(key)) for key, _start, end in months], else_=literal(months[-1][0]))
    paid = (select(P.id, P.merchant_id, Member.union_id, month.label("month"), P.amount, P.discount,
                   P.union_share, P.charged)
            .join(Member, Member.id == P.member_id).join(Union, Union.id == Member.union_id)
            .where(P.created_at >= since, P.created_at < until, *scope).subquery())

    groups: dict[str, dict] = {"merchant": {}, "union": {}, "month": {key: UsageRow(key, key) for key, _s, _e in months}}
    offers: dict[str, UsageRow] = {}

    def row(kind: str, key) -> UsageRow:
        table = groups[kind]
        if key not in table:
            table[key] = UsageRow(str(key), "")
        return table[key]

    for kind, column in (("merchant", paid.c.merchant_id), ("union", paid.c.union_id), ("month", paid.c.month)):
        for key, count, amount, discount, union_share, charged in session.execute(
                select(column, func.count(), func.sum(paid.c.amount), func.sum(paid.c.discount),
                       func.sum(paid.c.union_share), func.sum(paid.c.charged)).group_by(column)):
            r = row(kind, key)
            r.payments += count
            r.amount += int(amount or 0)
            r.discount += int(discount or 0)
            r.union_subsidy += int(union_share or 0)
            r.charged += int(charged or 0)
        for key, count in session.execute(select(column, func.count(PaymentOffer.id))
                                          .join(PaymentOffer, PaymentOffer.payment_id == paid.c.id).group_by(column)):
            row(kind, key).redemptions += count
    for lineage, count, discount, union_share in session.execute(
            select(PaymentOffer.lineage, func.count(PaymentOffer.id), func.sum(PaymentOffer.discount),
                   func.sum(PaymentOffer.union_share))
            .join(paid, paid.c.id == PaymentOffer.payment_id).group_by(PaymentOffer.lineage)):
        offers[lineage] = UsageRow(lineage, "", payments=count, redemptions=count, discount=int(discount or 0),
                                   union_subsidy=int(union_share or 0))

    _take_back_refunds(session, since, until, scope, groups, offers, row)
    return _label_usage(session, since, until, months, groups, offers)


def _take_back_refunds(session: Session, since: dt.datetime, until: dt.datetime, scope: list, groups: dict,
                       offers: dict[str, UsageRow], row) -> None:
    """Take the window's refunds off the figures: what each gave back, and the offers a full refund undid."""
    last = 0
    while True:
        refunds = session.execute(
            select(Refund.id, Refund.payment_id, Refund.amount, Refund.union_back, Refund.created_at,
                   Payment.merchant_id, Member.union_id, Payment.charged)
            .join(Payment, Payment.id == Refund.payment_id).join(Member, Member.id == Payment.member_id)
            .join(Union, Union.id == Member.union_id)
            .where(Refund.created_at >= since, Refund.created_at < until, Refund.id > last, *scope)
            .order_by(Refund.id).limit(USAGE_CHUNK)).all()
        if not refunds:
            return
        last = refunds[-1].id
        payment_ids = {r.payment_id for r in refunds}
        earlier: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for payment_id, refund_id, amount in session.execute(
                select(Refund.payment_id, Refund.id, Refund.amount).where(Refund.payment_id.in_(payment_ids))
                .order_by(Refund.id)):
            earlier[payment_id].append((refund_id, amount))
        applied: dict[int, list] = defaultdict(list)
        for po in session.execute(select(PaymentOffer.payment_id, PaymentOffer.lineage, PaymentOffer.discount,
                                         PaymentOffer.union_share)
                                  .where(PaymentOffer.payment_id.in_(payment_ids)).order_by(PaymentOffer.id)):
            applied[po.payment_id].append(po)
        for r in refunds:
            before = sum(amount for refund_id, amount in earlier[r.payment_id] if refund_id < r.id)
            after = before + r.amount
            undone = 1 if after >= r.charged else 0
            discount_back = [_share(po.discount, after, r.charged) - _share(po.discount, before, r.charged)
                             for po in applied[r.payment_id]]
            union_back = [_share(po.union_share, after, r.charged) - _share(po.union_share, before, r.charged)
                          for po in applied[r.payment_id]]
            if union_back and sum(union_back) != r.union_back:
                # Refunds return the subsidy per program; the offers of one program share its rounding.
                biggest = max(range(len(union_back)), key=lambda i: applied[r.payment_id][i].union_share)
                union_back[biggest] += r.union_back - sum(union_back)
            for po, d_back, u_back in zip(applied[r.payment_id], discount_back, union_back):
                o = offers.setdefault(po.lineage, UsageRow(po.lineage, ""))
                o.redemptions -= undone
                o.discount -= d_back
                o.union_subsidy -= u_back
            for kind, key in (("merchant", r.merchant_id), ("union", r.union_id), ("month", _month_of(r.created_at))):
                g = row(kind, key)
                g.refunded += r.amount
                g.union_subsidy -= r.union_back
                g.discount -= sum(discount_back)
                g.redemptions -= undone * len(applied[r.payment_id])


def _label_usage(session: Session, since: dt.datetime, until: dt.datetime, months: list, groups: dict,
                 offers: dict[str, UsageRow]) -> UsageFigures:
    """Name each row (offers by their latest version's title) and order the tables."""
    if offers:
        for lineage, title in session.execute(select(Offer.lineage, Offer.title)
                                              .where(Offer.lineage.in_(list(offers))).order_by(Offer.id)):
            offers[lineage].label = title
    merchant_rows = groups["merchant"]
    if merchant_rows:
        for mid, public_id, name in session.execute(select(Merchant.id, Merchant.public_id, Merchant.name)
                                                    .where(Merchant.id.in_(list(merchant_rows)))):
            merchant_rows[mid].key, merchant_rows[mid].label = public_id, name
    union_rows = groups["union"]
    if union_rows:
        for uid, public_id, name in session.execute(select(Union.id, Union.public_id, Union.name)
                                                    .where(Union.id.in_(list(union_rows)))):
            union_rows[uid].key, union_rows[uid].label = public_id, name
    month_rows = [groups["month"][key] for key, _s, _e in months]
    total = UsageRow("total", "")
    for r in month_rows:
        for name in ("payments", "redemptions", "amount", "discount", "union_subsidy", "charged", "refunded"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
    return UsageFigures(
        since=since, until=until,
        offers=sorted(offers.values(), key=lambda r: (-r.discount, -r.redemptions, r.label, r.key)),
        merchants=sorted(merchant_rows.values(), key=lambda r: (-r.charged, -r.amount, r.label, r.key)),
        unions=sorted(union_rows.values(), key=lambda r: (-r.amount, -r.payments, r.label, r.key)),
        months=month_rows, total=total)
