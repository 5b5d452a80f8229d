"""JSON endpoints of top-ups: a member starts one for their card; the top-up's state afterwards."""

from __future__ import annotations

from flask import current_app, url_for

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.models import FINANCE_ROLES, Role
from core.web import current_actor
from payments.topups import schemas as s
from payments.topups import service
from payments.topups.provider import payment_intents

blp = Blueprint("topups_api", __name__, url_prefix="/api/v1",
                description="Member top-ups: money paid in through Stripe onto a card's general purse")


def limits() -> service.Limits:
    """Return the top-up limits configured for this app."""
    cfg = current_app.config
    return service.Limits(int(cfg["TOPUP_MIN_AMOUNT"]), int(cfg["TOPUP_MAX_AMOUNT"]))


@blp.route("/cards/<card_id>/top-ups", methods=["POST"])
@blp.auth(Role.MEMBER)
@blp.arguments(s.TopUpCreateSchema)
@blp.response(201, s.TopUpCreatedSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such card of yours")
@blp.alt_response(409, schema=ApiErrorSchema, description="The card is not usable (not activated, frozen, lost...)")
@blp.alt_response(422, schema=ApiErrorSchema, description="The amount is out of range, or Stripe refused it")
@blp.alt_response(503, schema=ApiErrorSchema, description="Stripe is not configured or unavailable")
def create_top_up(body, card_id):
    """Start a top-up of your card: pay the returned PaymentIntent in Stripe's checkout with its
    `client_secret`; the general purse is credited when Stripe confirms the payment."""
    new = service.create_top_up(db.session, current_actor(), card_id, body["amount"],
                                provider=payment_intents(current_app.config), limits=limits())
    top_up = new.top_up
    answer = {"id": top_up.public_id, "status": top_up.status.value, "amount": top_up.amount,
              "currency": top_up.currency, "card_id": card_id, "payment_intent_id": top_up.payment_intent_id,
              "client_secret": new.client_secret}
    return answer, 201, {"Location": url_for("topups_api.get_top_up", top_up_id=top_up.public_id)}


@blp.route("/top-ups/<top_up_id>", methods=["GET"])
@blp.auth(Role.MEMBER, *FINANCE_ROLES, Role.AUDITOR)
@blp.response(200, s.TopUpSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such top-up of yours")
def get_top_up(top_up_id):
    """A top-up and what became of it: the member who made it, finance and auditors."""
    return service.get_top_up(db.session, current_actor(), top_up_id)
