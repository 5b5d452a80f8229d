"""Top-up use cases: a member starts one (a Stripe PaymentIntent), Stripe's webhooks settle it.

The purse is credited only on `payment_intent.succeeded`, in the webhook's database transaction:
the TopUp row is locked, the ledger transaction carries the key `<top-up>:credit`, and the row
moves to `succeeded` with the transaction's id, so however often and by however many events Stripe
reports the payment, the member is credited once. Money Stripe took that cannot be credited (the
card was cancelled, or Stripe reports another amount) is never dropped: the top-up is marked
`failed` with `refund_due` for finance to refund, logged and audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cards import service as cards
from cards.models import LIVE_STATUSES, Card, CardStatus
from core import audit
from core.auth import Actor
from core.errors import NotFound, ValidationFailed
from core.ids import new_public_id
from core.models import FINANCE_ROLES, Role
from core.money import format_amount
from payments import ledger
from payments.ledger import credit, debit
from payments.topups.models import TopUp, TopUpStatus
from payments.topups.provider import PaymentIntents

log = logging.getLogger(__name__)

CURRENCY = "CNY"
# Money Stripe holds for the platform: an asset, so debit-normal; it goes negative when the
# platform refunds or pays out more than this account has recorded coming in.
CLEARING_ACCOUNT = "stripe:clearing"
STRIPE = Actor(None, "stripe", None)
READ_ROLES = (*FINANCE_ROLES, Role.AUDITOR)
RECENT_LIMIT = 20
# Following replacements: a card replaced more often than this between a payment and its webhook is not credible.
MAX_REPLACEMENTS = 20
MESSAGE_LENGTH = 500


@dataclass(frozen=True)
class Limits:
    """The smallest and largest top-up, in minor units."""

    minimum: int
    maximum: int


@dataclass(frozen=True)
class NewTopUp:
    """A started top-up and the secret the member's checkout needs to pay it (never stored)."""

    top_up: TopUp
    client_secret: str


def snapshot(top_up: TopUp) -> dict:
    """Return the fields the audit log keeps for a top-up."""
    return {"status": top_up.status.value, "amount": top_up.amount, "currency": top_up.currency,
            "card_id": top_up.card.public_id if top_up.card else None,
            "credited_card_id": top_up.credited_card.public_id if top_up.credited_card else None,
            "payment_intent_id": top_up.payment_intent_id, "transaction_id": top_up.transaction_id,
            "refund_due": top_up.refund_due, "failure_code": top_up.failure_code}


# --- the member starts a top-up --------------------------------------------------------------

def check_amount(amount: int, limits: Limits) -> int:
    """Return the amount if it is a whole number of fen within the limits, else refuse it (422)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed({"amount": ["The amount is a whole number of fen."]})
    if not limits.minimum <= amount <= limits.maximum:
        raise ValidationFailed({"amount": [
            f"A top-up is from {format_amount(limits.minimum)} to {format_amount(limits.maximum)}."]},
            code="amount_out_of_range")
    return amount


def create_top_up(session: Session, actor: Actor, card_id: str, amount: int, *, provider: PaymentIntents,
                  limits: Limits) -> NewTopUp:
    """Start a top-up of the member's own usable card: a PaymentIntent at Stripe and a pending TopUp."""
    card = cards.owned_card(session, actor, card_id)
    cards.usable_card(card)
    check_amount(amount, limits)
    card_pk, card_public, member_pk = card.id, card.public_id, card.member_id
    # End the read transaction before calling Stripe: holding it (on SQLite, the database's write
    # lock) across a network call of up to a minute would stall every other writer.
    session.rollback()
    public_id = new_public_id("top")
    intent = provider.create(amount=amount, currency=CURRENCY,
                             metadata={"top_up_id": public_id, "card_id": card_public},
                             description=f"Union member card top-up {public_id}",
                             idempotency_key=f"{public_id}:payment_intent")
    # Until this commits no one knows the intent's secret, so no payment (and no webhook) can precede it.
    top_up = TopUp(public_id=public_id, member_id=member_pk, card_id=card_pk, amount=amount, currency=CURRENCY,
                   status=TopUpStatus.PENDING, payment_intent_id=intent.id)
    session.add(top_up)
    session.flush()
    audit.record(session, actor, "top_up.created", "top_up", public_id, after=snapshot(top_up))
    session.commit()
    return NewTopUp(top_up, intent.client_secret)


def get_top_up(session: Session, actor: Actor, public_id: str) -> TopUp:
    """Return a top-up to the member who made it, or to finance and auditors; else NotFound."""
    top_up = session.scalar(select(TopUp).where(TopUp.public_id == public_id))
    if top_up is None or not (actor.role in READ_ROLES
                              or (actor.role == Role.MEMBER and top_up.member_id == actor.member_id)):
        raise NotFound("No such top-up.")
    return top_up


def recent_top_ups(session: Session, actor: Actor, *, limit: int = RECENT_LIMIT) -> list[TopUp]:
    """Return the acting member's latest top-ups, newest first."""
    if actor.role != Role.MEMBER or actor.member_id is None:
        return []
    return list(session.scalars(select(TopUp).where(TopUp.member_id == actor.member_id)
                                .order_by(TopUp.id.desc()).limit(max(1, min(limit, RECENT_LIMIT)))))


# --- Stripe settles it -------------------------------------------------------------------------
# These run inside the webhook's transaction, which also records the event: the caller commits.

def _locked_by_intent(session: Session, payment_intent_id: str) -> TopUp | None:
    return session.scalar(select(TopUp).where(TopUp.payment_intent_id == payment_intent_id)
                          .with_for_update(of=TopUp).execution_options(populate_existing=True))


def _lock_card(session: Session, card_pk: int) -> Card:
    return session.scalar(select(Card).where(Card.id == card_pk).with_for_update(of=Card)
                          .execution_options(populate_existing=True))


def _card_to_credit(session: Session, top_up: TopUp) -> Card:
    """Lock and return the card that carries the topped-up card's money now (its successor if replaced)."""
    # Card rows are the locks replacement takes: once locked, a live card cannot move its balance
    # elsewhere before this transaction commits; one replaced meanwhile is followed to its successor.
    card = _lock_card(session, top_up.card_id)
    for _ in range(MAX_REPLACEMENTS):
        if card.status != CardStatus.REPLACED:
            return card
        following = cards.successor(session, card)
        if following.id == card.id:
            return card
        card = _lock_card(session, following.id)
    raise RuntimeError(f"the replacements of card {top_up.card_id} do not end")


def _settled(top_up: TopUp) -> bool:
    """Tell whether Stripe's money for this top-up has been dealt with (credited, or set aside to refund)."""
    return top_up.status == TopUpStatus.SUCCEEDED or top_up.refund_due


def _refund_due(session: Session, actor: Actor, top_up: TopUp, code: str, message: str, received: dict) -> None:
    before = snapshot(top_up)
    top_up.status = TopUpStatus.FAILED
    top_up.refund_due = True
    top_up.failure_code = code
    top_up.failure_message = message[:MESSAGE_LENGTH]
    session.flush()
    log.error("Top-up %s (PaymentIntent %s) paid but not credited, to be refunded: %s",
              top_up.public_id, top_up.payment_intent_id, message)
    audit.record(session, actor, "top_up.refund_due", "top_up", top_up.public_id, before=before,
                 after={**snapshot(top_up), "reason": message, "received": received})


def payment_succeeded(session: Session, actor: Actor, payment_intent_id: str, *, amount, amount_received,
                      currency) -> TopUp | None:
    """Credit the top-up's card once Stripe has the money; ignore an intent that is not a top-up's."""
    top_up = _locked_by_intent(session, payment_intent_id)
    if top_up is None:
        log.info("PaymentIntent %s succeeded but is no top-up's; ignored", payment_intent_id)
        return None
    if _settled(top_up):
        log.info("Top-up %s already settled (%s); PaymentIntent %s reported again", top_up.public_id,
                 top_up.status.value, payment_intent_id)
        return top_up
    received = {"amount": amount, "amount_received": amount_received, "currency": currency}
    if not (type(amount) is int and type(amount_received) is int and amount == amount_received == top_up.amount
            and isinstance(currency, str) and currency.upper() == top_up.currency):
        _refund_due(session, actor, top_up, "amount_mismatch",
                    f"Stripe reports {amount_received!r} {currency!r} received for a top-up of "
                    f"{top_up.amount} {top_up.currency}; nothing was credited.", received)
        return top_up
    card = _card_to_credit(session, top_up)
    if card.status not in LIVE_STATUSES:
        _refund_due(session, actor, top_up, "card_closed",
                    f"The card was {card.status.value} before the payment arrived; nothing was credited.", received)
        return top_up
    before = snapshot(top_up)
    ledger.get_or_create_account(session, CLEARING_ACCOUNT, normal_side="debit", allow_negative=True)
    txn = ledger.post(session, kind="top_up", idempotency_key=f"{top_up.public_id}:credit",
                      reference=top_up.public_id,
                      entries=[debit(CLEARING_ACCOUNT, top_up.amount),
                               credit(cards.general_account(card.public_id), top_up.amount)],
                      metadata={"description": "Stripe", "top_up_id": top_up.public_id,
                                "payment_intent_id": payment_intent_id})
    top_up.status = TopUpStatus.SUCCEEDED
    top_up.transaction_id = txn.public_id
    top_up.credited_card_id = card.id
    top_up.credited_card = card
    top_up.failure_code = top_up.failure_message = None
    session.flush()
    audit.record(session, actor, "top_up.succeeded", "top_up", top_up.public_id, before=before,
                 after=snapshot(top_up))
    return top_up


def payment_failed(session: Session, actor: Actor, payment_intent_id: str, *, code: str | None,
                   message: str | None) -> TopUp | None:
    """Record a failed payment attempt (the member may try again on the same intent)."""
    return _unsuccessful(session, actor, payment_intent_id, TopUpStatus.FAILED, code or "payment_failed",
                         message or "The payment failed.")


def payment_canceled(session: Session, actor: Actor, payment_intent_id: str, *,
                     reason: str | None) -> TopUp | None:
    """Record that the PaymentIntent was cancelled: this top-up will never be paid."""
    return _unsuccessful(session, actor, payment_intent_id, TopUpStatus.CANCELED, reason or "canceled",
                         "The payment was cancelled.")


def _unsuccessful(session: Session, actor: Actor, payment_intent_id: str, status: TopUpStatus, code: str,
                  message: str) -> TopUp | None:
    top_up = _locked_by_intent(session, payment_intent_id)
    if top_up is None:
        log.info("PaymentIntent %s %s but is no top-up's; ignored", payment_intent_id, status.value)
        return None
    if _settled(top_up) or top_up.status == TopUpStatus.CANCELED:
        # Stripe does not promise to deliver events in order: a failed attempt may be reported after
        # the attempt that succeeded. What is settled stays settled.
        log.info("Top-up %s is %s; PaymentIntent %s reported %s, ignored", top_up.public_id,
                 top_up.status.value, payment_intent_id, status.value)
        return top_up
    before = snapshot(top_up)
    top_up.status = status
    top_up.failure_code = code[:64]
    top_up.failure_message = message[:MESSAGE_LENGTH]
    session.flush()
    audit.record(session, actor, f"top_up.{status.value}", "top_up", top_up.public_id, before=before,
                 after={**snapshot(top_up), "reason": top_up.failure_message})
    return top_up
