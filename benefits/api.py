"""JSON endpoints of the offer catalog: drafts and merchant proposals, their versions, publication."""

from __future__ import annotations

from benefits import schemas as s
from benefits import service
from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.models import Role
from core.web import current_actor, optional_actor, public

blp = Blueprint("benefits_api", __name__, url_prefix="/api/v1",
                description="The 普惠 offer catalog: drafts, merchant proposals, versions, publication")
ADMIN = Role.UNION_ADMIN
OWNER = Role.MERCHANT_OWNER
# Public endpoints that say more to a caller who sends a token.
OPTIONAL_BEARER = [{}, {"bearerAuth": []}]


@blp.route("/offers", methods=["POST"])
@blp.auth(ADMIN, OWNER)
@blp.arguments(s.OfferInputSchema)
@blp.response(201, s.OfferSchema)
def create_offer(body):
    """Create an offer as a draft (a merchant owner's is for their own merchant, funded by it, to propose)."""
    return service.create_offer(db.session, current_actor(), body)


@blp.route("/offers", methods=["GET"])
@public
@blp.doc(security=OPTIONAL_BEARER)
@blp.arguments(s.OfferQuery, location="query")
@blp.response(200, s.OfferPage)
def list_offers(args):
    """List offers: the live published ones for anyone; union admins see every one in their scope, merchant
    staff their own merchant's too. Filters: `status`, `merchant_id`, `category`, `q` (text)."""
    page = service.list_offers(db.session, optional_actor(), **args)
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/offers/<offer_id>", methods=["GET"])
@public
@blp.doc(security=OPTIONAL_BEARER)
@blp.response(200, s.OfferSchema)
def get_offer(offer_id):
    """One offer version: a published one for anyone, others for who may manage them."""
    return service.get_offer(db.session, optional_actor(), offer_id)


@blp.route("/offers/<offer_id>", methods=["PATCH"])
@blp.auth(ADMIN, OWNER)
@blp.arguments(s.OfferUpdateSchema)
@blp.response(200, s.OfferSchema)
def update_offer(body, offer_id):
    """Change an offer: a draft, proposal or rejected one in place; a published one gets a new draft version
    (the answer), and the published one applies unchanged until that is published."""
    return service.update_offer(db.session, current_actor(), offer_id, body)


@blp.route("/offers/<offer_id>/propose", methods=["POST"])
@blp.auth(OWNER)
@blp.response(200, s.OfferSchema)
def propose(offer_id):
    """Send the merchant's draft, or its rejected proposal, to the union."""
    return service.propose(db.session, current_actor(), offer_id)


@blp.route("/offers/<offer_id>/publish", methods=["POST"])
@blp.auth(ADMIN)
@blp.response(200, s.OfferSchema)
@blp.alt_response(422, schema=ApiErrorSchema,
                  description="The offer's terms do not hold, or it reaches beyond your unions")
def publish(offer_id):
    """Publish a draft or a proposal: it applies at checkout now, in place of the version it revises."""
    return service.publish(db.session, current_actor(), offer_id)


@blp.route("/offers/<offer_id>/reject", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.OfferRejectionSchema)
@blp.response(200, s.OfferSchema)
def reject(body, offer_id):
    """Turn a merchant's proposal down; `comment` says why."""
    return service.reject(db.session, current_actor(), offer_id, body["comment"])


@blp.route("/offers/<offer_id>/withdraw", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.OfferWithdrawalSchema)
@blp.response(200, s.OfferSchema)
def withdraw(body, offer_id):
    """Take a published offer off for good (with its versions still waiting); it never applies again."""
    return service.withdraw(db.session, current_actor(), offer_id, body.get("comment"))
