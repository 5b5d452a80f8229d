"""The Stripe events that settle top-ups: PaymentIntents succeeded, failed or cancelled.

Importing this module registers the handlers with `payments.webhooks`; the app factory does so.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.errors import BadRequest
from payments.topups import service
from payments.webhooks import register


def _intent(event: dict) -> dict:
    intent = event["data"]["object"]
    if not (isinstance(intent.get("id"), str) and 0 < len(intent["id"]) <= 255):
        raise BadRequest(f"The {event['type']} event lacks the PaymentIntent's id.", code="malformed_event")
    return intent


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


@register("payment_intent.succeeded")
def payment_intent_succeeded(session: Session, event: dict) -> None:
    """Credit the top-up this PaymentIntent paid for."""
    intent = _intent(event)
    service.payment_succeeded(session, service.STRIPE, intent["id"], amount=intent.get("amount"),
                              amount_received=intent.get("amount_received"), currency=intent.get("currency"))


@register("payment_intent.payment_failed")
def payment_intent_payment_failed(session: Session, event: dict) -> None:
    """Record a failed attempt to pay a top-up."""
    intent = _intent(event)
    error = intent.get("last_payment_error")
    error = error if isinstance(error, dict) else {}
    service.payment_failed(session, service.STRIPE, intent["id"], code=_text(error.get("code")),
                           message=_text(error.get("message")))


@register("payment_intent.canceled")
def payment_intent_canceled(session: Session, event: dict) -> None:
    """Record that a top-up's PaymentIntent was cancelled."""
    intent = _intent(event)
    service.payment_canceled(session, service.STRIPE, intent["id"], reason=_text(intent.get("cancellation_reason")))
