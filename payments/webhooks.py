"""Stripe webhooks: verify the signature, process each event at most once, dispatch by event type."""

from __future__ import annotations

import datetime as dt

import logging
from collections.abc import Callable

import stripe
from flask import current_app, request
from marshmallow import Schema, fields
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.api import ApiErrorSchema, Blueprint
from core.db import db, utcnow
from core.errors import BadRequest, ServiceUnavailable
from core.web import public
from payments.models import StripeEvent

log = logging.getLogger(__name__)

# Stripe's own default: a delivery signed longer ago than this is refused as a possible replay.
SIGNATURE_TOLERANCE_SECONDS = 300

Handler = Callable[[Session, dict], None]
HANDLERS: dict[str, Handler] = {}


def register(event_type: str) -> Callable[[Handler], Handler]:
    """Make the decorated function the handler of `event_type` (one handler per type)."""

    def decorate(fn: Handler) -> Handler:
        if event_type in HANDLERS:
            raise ValueError(f"a handler for {event_type} is already registered")
        HANDLERS[event_type] = fn
        return fn

    return decorate


def verified_event(payload: bytes, signature: str | None, secret: str) -> dict:
    """Return the event Stripe signed, or refuse the delivery (400) when it is not one."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
        # Stripe signs UTF-8 text only, so a body that is not UTF-8 cannot carry its signature.
        raise BadRequest("The Stripe-Signature header does not verify this body.", code="invalid_signature") from exc
    except (ValueError, RecursionError) as exc:
        raise BadRequest("The event is not valid JSON.", code="malformed_json") from exc
    except (AttributeError, TypeError) as exc:
        # The SDK reads the parsed body as an object; JSON arrays, strings or numbers fail there.
        raise BadRequest("The event is not a JSON object.", code="malformed_event") from exc
    body = event.to_dict()
    event_id, event_type, data = body.get("id"), body.get("type"), body.get("data")
    if not (body.get("object") == "event" and isinstance(event_id, str) and 0 < len(event_id) <= 255
            and isinstance(event_type, str) and 0 < len(event_type) <= 100
            and isinstance(data, dict) and isinstance(data.get("object"), dict)):
        raise BadRequest("The event lacks an id, a type or a data object.", code="malformed_event")
    return body


def handle_event(session: Session, event: dict) -> bool:
    """Record a verified event and run its handler, once; tell whether a handler ran now."""
    if session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event["id"])) is not None:
        return False
    received = StripeEvent(event_id=event["id"], type=event["type"], received_at=utcnow())
    session.add(received)
    try:
        session.flush()
    except IntegrityError:
        # Another delivery of the same event got there first; processing it is that delivery's job.
        session.rollback()
        return False
    handler = HANDLERS.get(event["type"])
    if handler is not None:
        # In the same transaction as the record: if the handler fails, neither stays and Stripe retries.
        handler(session, event)
        received.processed_at = utcnow()
    session.commit()
    log.info("Stripe event %s (%s) %s", event["id"], event["type"], "processed" if handler else "ignored")
    return handler is not None


@register("account.updated")
def account_updated(session: Session, event: dict) -> None:
    """Mirror a connected account's onboarding state onto its merchant."""
    account = event["data"]["object"]
    flags = {name: account.get(name) for name in ("charges_enabled", "payouts_enabled", "details_submitted")}
    if not isinstance(account.get("id"), str) or not all(isinstance(value, bool) for value in flags.values()):
        raise BadRequest("The account.updated event lacks the account's id or state.", code="malformed_event")
    # Imported on use: the merchants domain may import payments, so a module-level import could cycle.
    from merchants.service import apply_stripe_account_update

    created = event.get("created")
    as_of = dt.datetime.fromtimestamp(created, dt.timezone.utc) if isinstance(created, int) else None
    apply_stripe_account_update(session, account["id"], as_of=as_of, **flags)


blp = Blueprint("stripe_webhooks", __name__, url_prefix="/api/v1",
                description="Events from Stripe, authenticated by their signature")


class WebhookReceipt(Schema):
    received = fields.Bool(required=True)
    handled = fields.Bool(required=True, metadata={
        "description": "False for an event type nothing handles and for an event already processed"})


@blp.route("/webhooks/stripe", methods=["POST"])
@public
@blp.doc(parameters=[{"in": "header", "name": "Stripe-Signature", "required": True, "schema": {"type": "string"},
                      "description": "`t=<unix time>,v1=<HMAC-SHA256 of t.body>` with the endpoint's secret"}],
         requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}})
@blp.response(200, WebhookReceipt)
@blp.alt_response(400, schema=ApiErrorSchema, description="Bad or missing signature, or not a Stripe event")
@blp.alt_response(503, schema=ApiErrorSchema, description="No webhook secret configured")
def receive_stripe_event():
    """Receive a Stripe event: verify its signature and process it at most once."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise ServiceUnavailable("Stripe webhooks are not configured on this platform.",
                                 code="stripe_not_configured")
    event = verified_event(request.get_data(cache=True), request.headers.get("Stripe-Signature"), secret)
    return {"received": True, "handled": handle_event(db.session, event)}
