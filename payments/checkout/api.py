"""JSON endpoints of card payments at merchants and their refunds."""

from __future__ import annotations

from flask import current_app, request

from cards.api import payment_codes, pin_guard
from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.errors import BadRequest
from core.idempotency import KEY_RE, REPLAY_HEADER
from core.models import FINANCE_ROLES, MERCHANT_ROLES, Role
from core.web import current_actor
from payments.checkout import schemas as s
from payments.checkout import service

blp = Blueprint("checkout_api", __name__, url_prefix="/api/v1", description="Card payments at merchants, refunds")
PAYERS = (*MERCHANT_ROLES, Role.MEMBER)
READERS = (*MERCHANT_ROLES, Role.MEMBER, *FINANCE_ROLES, Role.AUDITOR)


def _key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY_RE.match(key):
        raise BadRequest("Idempotency-Key must be 1-255 visible ASCII characters.", code="invalid_idempotency_key")
    return key


@blp.route("/payments", methods=["POST"])
@blp.auth(*PAYERS, keyed_in_view=True)
@blp.arguments(s.PaymentCreateSchema)
@blp.response(201, s.PaymentSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such store or card (or not the member's card)")
@blp.alt_response(429, schema=ApiErrorSchema, description="PIN use is locked after too many wrong PINs")
def create_payment(body):
    """Take a card payment at a store, with the best offer applied.

    A cashier sends the member's `payment_code`; a member who scanned the store's QR code sends
    `card_id` and `pin`. The Idempotency-Key is kept with the payment, in its transaction: a retry
    gets the first answer and the card is charged once."""
    req = service.PayRequest(idempotency_key=_key(), **body)
    payment, replayed = service.pay(db.session, current_actor(), req, codes=payment_codes(), pins=pin_guard(),
                                    max_amount=current_app.config["PAYMENT_MAX_AMOUNT"])
    return payment, 201, ({REPLAY_HEADER: "true"} if replayed else {})


@blp.route("/payments/<payment_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.PaymentSchema)
def get_payment(payment_id):
    """Return a payment: to its merchant's staff, its member, finance and auditors."""
    return service.get_payment(db.session, current_actor(), payment_id)


@blp.route("/payments/<payment_id>/refunds", methods=["POST"])
@blp.auth(*PAYERS, keyed_in_view=True)
@blp.arguments(s.RefundCreateSchema)
@blp.response(201, s.RefundSchema)
def create_refund(body, payment_id):
    """Refund part or all of a payment (the merchant's owner or a manager); never more than it charged."""
    refund, replayed = service.refund(db.session, current_actor(), payment_id, amount=body["amount"],
                                      reason=body["reason"], idempotency_key=_key())
    return refund, 201, ({REPLAY_HEADER: "true"} if replayed else {})
