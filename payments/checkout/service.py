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

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from benefits import service as benefits
from benefits.models import FAMILY_OF_MERCHANT_CATEGORY, Offer
from benefits.pricing import Quote, Shopper, Terms, price, round_half_up
from cards import service as cards
from cards.models import Card, CardStatus, Purse, PurseKind
from core import audit
from core.auth import Actor
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from core.models import MERCHANT_ROLES, Role
from members.models import Member
from merchants import service as merchants
from merchants.models import Store
from payments import ledger
from payments.checkout.models import (
    Payment,
    PaymentMethod,
    PaymentOffer,
    PaymentPurse,
    PaymentStatus,
    Refund,
)
from payments.ledger import credit, debit

CURRENCY = "CNY"
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


def _store_for(session: Session, actor: Actor, req: PayRequest) -> Store:
    """The store paid at: a till's own merchant's store; any store taking cards for a member."""
    if req.method == PaymentMethod.PAYMENT_CODE:
        if actor.role not in MERCHANT_ROLES:
            raise Forbidden("Only a merchant's till takes payment codes.")
        store = merchants.get_store_any(session, req.store_id)
        if store.merchant_id != actor.merchant_id:
            raise NotFound("No such store.")
    else:
        if actor.role != Role.MEMBER:
            raise Forbidden("Only the card's owner pays with its PIN.")
        store = merchants.get_store_any(session, req.store_id)
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
    hardship = member.hardship is not None and member.hardship.is_current(now.date())
    unions = benefits.member_unions(session, member) if any(t.union_ids for t in terms) else frozenset()
    trade = store.effective_category
    return Shopper(merchant_id=store.merchant.public_id, merchant_category=trade.value,
                   family=FAMILY_OF_MERCHANT_CATEGORY[trade].value, amount=amount, now=now,
                   on_hardship_register=hardship, unions=unions,
                   used=benefits.used_by(session, member.id, terms, now))


def _draw(session: Session, card: Card, category: str, charged: int, now: dt.datetime) -> list[tuple[Purse, int]]:
    """Split what the card pays over its purses in spending order; refuse if they cannot cover it."""
    drawn, left = [], charged
    for purse in cards.spending_order(card, category, now):
        if left == 0:
            break
        available = ledger.balance(session, purse.account_code).available
        take = min(available, left)
        if take > 0:
            drawn.append((purse, take))
            left -= take
    if left:
        held = charged - left
        raise RuleViolation(f"The card can pay ¥{held / 100:,.2f} here, less than the ¥{charged / 100:,.2f} due.",
                            code="insufficient_funds")
    return drawn


def _count_usage(session: Session, member_id: int, quote: Quote, offers: dict[str, Offer], now: dt.datetime,
                 ) -> dict[str, benefits.Taken]:
    """Count the applied offers against member limits and budgets, in a savepoint; UsageRace if one ran out."""
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
                          .with_for_update(key_share=True).execution_options(populate_existing=True))
    cards.usable_card(card)
    now = now or utcnow()
    quote, offers, taken = _priced(session, card, store, req.amount, now)
    category = store.effective_category.value
    drawn = _draw(session, card, category, quote.charged, now)
    payment = Payment(public_id=new_public_id("pay"), store_id=store.id, merchant_id=store.merchant_id,
                      card_id=card.id, member_id=card.member_id, method=req.method, currency=CURRENCY,
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
            session.add(PaymentPurse(payment_id=payment.id, position=position, account_code=purse.account_code,
                                     purse_kind=purse.kind.value, program_id=purse.program_id, amount=amount))
        for applied in quote.applied:
            t = taken.get(applied.offer_id)
            session.add(PaymentOffer(payment_id=payment.id, offer_id=offers[applied.offer_id].id,
                                     lineage=applied.lineage, discount=applied.discount,
                                     union_share=applied.union_share, program_id=applied.program_id,
                                     usage_keys=[t.usage_key] if t is not None and t.usage_key else None))
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
        raise RuleViolation(f"At most ¥{left / 100:,.2f} of this payment is left to refund.",
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
                      metadata={"description": "refund", "payment_id": payment.public_id, "refund_id": row.public_id})
    row.transaction_id = txn.public_id
    # Member limits and offer budgets: back in proportion too; the use itself once all is refunded.
    for po in payment.offers:
        offer_budget = session.get(Offer, po.offer_id).budget_amount is not None
        benefits.give_back(session, payment.member_id, po.lineage, (po.usage_keys or [None])[0],
                           count=1 if after >= payment.charged else 0,
                           discount=_share(po.discount, after, payment.charged)
                           - _share(po.discount, before, payment.charged),
                           budget=offer_budget)
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
