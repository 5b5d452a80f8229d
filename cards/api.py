"""JSON endpoints of cards: issuance, the lifecycle, the PIN, balances, statements and payment codes."""

from __future__ import annotations

import hashlib

from flask import current_app, url_for

from cards import schemas as s
from cards import service
from cards.models import IssuanceStatus
from core import qr
from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.errors import Conflict, NotFound
from core.jobs import jobs
from core.models import FINANCE_ROLES, Role
from core.web import current_actor, field_cipher

blp = Blueprint("cards_api", __name__, url_prefix="/api/v1",
                description="Member cards: issuance, lifecycle, PIN, purses, statements and payment codes")
ADMIN = Role.UNION_ADMIN
MEMBER = Role.MEMBER
READERS = (MEMBER, ADMIN, *FINANCE_ROLES, Role.AUDITOR)


def card_prefix() -> str:
    return current_app.config["CARD_PREFIX"]


def pin_guard() -> service.PinGuard:
    """Return the PIN throttle configured for this app."""
    cfg = current_app.config
    return service.PinGuard(current_app.extensions["kv"], max_failures=cfg["PIN_MAX_FAILURES"],
                            lockout=cfg["PIN_LOCKOUT_SECONDS"])


def payment_codes() -> service.PaymentCodes:
    """Return the payment-code issuer and verifier configured for this app."""
    cfg = current_app.config
    key = hashlib.sha256(b"payment-codes:" + str(cfg["SECRET_KEY"]).encode()).digest()
    return service.PaymentCodes(current_app.extensions["kv"], key, ttl=cfg["PAYMENT_CODE_TTL_SECONDS"],
                                per_minute=cfg["PAYMENT_CODES_PER_MINUTE"])


@blp.route("/cards", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.CardCreateSchema)
@blp.response(201, s.CardSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such member, or outside your unions")
def issue_card(body):
    """Issue a card to an active member of your unions who has no live card."""
    return service.issue_card(db.session, field_cipher(), current_actor(), body["member_id"], prefix=card_prefix())


@blp.route("/cards", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.CardQuery, location="query")
@blp.response(200, s.CardPage)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such member or union, or outside your scope")
def list_cards(args):
    """List cards: a member's own; an admin's subtree, filtered by member, union or status."""
    page = service.list_cards(db.session, current_actor(), **args)
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/cards/<card_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.CardSchema)
def get_card(card_id):
    """Return one card (its number masked)."""
    return service.get_card(db.session, current_actor(), card_id)


@blp.route("/cards/<card_id>/number", methods=["GET"])
@blp.auth(MEMBER)
@blp.response(200, s.CardNumberSchema)
def card_number(card_id):
    """Return the whole card number, to the card's owner only."""
    return {"id": card_id, "number": service.reveal_number(db.session, field_cipher(), current_actor(), card_id)}


def _lifecycle(action: str, roles: tuple, doc: str):
    def view(card_id):
        return service.change_state(db.session, current_actor(), card_id, action)

    view.__name__ = f"card_{action}"
    view.__doc__ = doc
    path = action.replace("_", "-")
    blp.route(f"/cards/<card_id>/{path}", methods=["POST"])(
        blp.auth(*roles)(blp.response(200, s.CardSchema)(view)))


_lifecycle("activate", (MEMBER, ADMIN), "Activate an issued card (its owner or the union).")
_lifecycle("freeze", (MEMBER, ADMIN), "Freeze an active card; a card frozen by the union only the union unfreezes.")
_lifecycle("unfreeze", (MEMBER, ADMIN), "Unfreeze a frozen card.")
_lifecycle("report_lost", (MEMBER, ADMIN), "Report a card lost: it stops working at once; replace it next.")
_lifecycle("cancel", (ADMIN,), "Cancel a card for good (the union; the card must hold no money).")


@blp.route("/cards/<card_id>/replace", methods=["POST"])
@blp.auth(MEMBER, ADMIN)
@blp.response(201, s.CardSchema)
def replace_card(card_id):
    """Replace a card: a new card (same PIN) takes every purse balance in one ledger transaction;
    the old card and its codes stop working."""
    new = service.replace_card(db.session, field_cipher(), current_actor(), card_id, prefix=card_prefix())
    return new, 201, {"Location": url_for("cards_api.get_card", card_id=new.public_id)}


@blp.route("/cards/<card_id>/pin", methods=["PUT"])
@blp.auth(MEMBER)
@blp.arguments(s.PinSchema)
@blp.response(204)
@blp.alt_response(429, schema=ApiErrorSchema, description="PIN use is locked after too many wrong PINs")
def set_pin(body, card_id):
    """Set the card's six-digit PIN, or change it with the current one (weak PINs are refused)."""
    service.set_pin(db.session, field_cipher(), pin_guard(), current_actor(), card_id, pin=body["pin"],
                    current_pin=body.get("current_pin"))


@blp.route("/cards/<card_id>/balances", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.BalancesSchema)
def balances(card_id):
    """The card's purses: general, and one restricted purse per aid program, with expiry and where
    each may be spent."""
    card = service.get_card(db.session, current_actor(), card_id)
    purses = service.purse_balances(db.session, card)
    return {"card_id": card.public_id, "currency": "CNY", "total": sum(p.amount for p in purses),
            "data": purses, "next_cursor": None}


@blp.route("/cards/<card_id>/transactions", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.CardTransactionPage)
def transactions(args, card_id):
    """The card's statement across its purses, newest first, with the balance after each line."""
    card = service.get_card(db.session, current_actor(), card_id)
    page = service.card_statement(db.session, card, limit=args["limit"], cursor=args["cursor"])
    return {"data": page.lines, "next_cursor": page.next_cursor}


@blp.route("/cards/<card_id>/payment-codes", methods=["POST"])
@blp.auth(MEMBER)
@blp.response(201, s.PaymentCodeSchema)
@blp.alt_response(429, schema=ApiErrorSchema, description="Too many payment codes in a minute")
def new_payment_code(card_id):
    """A payment code for the cashier to scan: 18 digits, good once, for 60 seconds."""
    issued = payment_codes().issue(db.session, current_actor(), card_id)
    return {"code": issued.code, "card_id": issued.card_id, "expires_at": issued.expires_at,
            "expires_in": issued.expires_in,
            "svg_url": url_for("cards_api.payment_code_image", card_id=card_id, code=issued.code, fmt="svg"),
            "png_url": url_for("cards_api.payment_code_image", card_id=card_id, code=issued.code, fmt="png")}


@blp.route("/cards/<card_id>/payment-codes/<code>.<any(svg, png):fmt>", methods=["GET"])
@blp.auth(MEMBER)
@blp.response(200, description="The payment code as a QR image")
def payment_code_image(card_id, code, fmt):
    """Draw a live payment code of your card as a QR code (SVG or PNG)."""
    card = service.owned_card(db.session, current_actor(), card_id)
    if not payment_codes().peek(card, code):
        raise NotFound("No such live payment code for this card.")
    data, mimetype = (qr.svg(code), "image/svg+xml") if fmt == "svg" else (qr.png(code), "image/png")
    return current_app.response_class(data, mimetype=mimetype, headers={"Cache-Control": "no-store"})


@blp.route("/card-issuances", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.IssuanceCreateSchema)
@blp.response(201, s.IssuanceSchema)
@blp.alt_response(202, schema=s.IssuanceSchema, description="Queued: poll the run for progress")
@blp.alt_response(404, schema=ApiErrorSchema, description="No such union, or outside your scope")
def start_issuance(body):
    """Issue cards to every active member without one in a union's subtree; small runs finish at once."""
    run = service.start_bulk_issuance(db.session, current_actor(), body["union_id"])
    location = {"Location": url_for("cards_api.get_issuance", run_id=run.public_id)}
    if run.total <= current_app.config["CARD_ISSUANCE_INLINE"]:
        try:
            run = service.run_bulk_issuance(db.session, field_cipher(), run.public_id, prefix=card_prefix())
        except Exception:
            # The run is recorded as failed and keeps its place: answer with it, to be resumed.
            current_app.logger.exception("card issuance %s stopped", run.public_id)
            db.session.rollback()
            return service.get_issuance(db.session, current_actor(), run.public_id), 202, location
        return run, 201, location
    jobs.enqueue("cards.jobs:run_issuance_job", run.public_id, job_id=run.public_id)
    db.session.refresh(run)
    return run, 202, location


@blp.route("/card-issuances/<run_id>", methods=["GET"])
@blp.auth(ADMIN)
@blp.response(200, s.IssuanceSchema)
def get_issuance(run_id):
    """A bulk issuance run and its progress."""
    return service.get_issuance(db.session, current_actor(), run_id)


@blp.route("/card-issuances/<run_id>/resume", methods=["POST"])
@blp.auth(ADMIN)
@blp.response(202, s.IssuanceSchema)
def resume_issuance(run_id):
    """Go on with a run that failed or stalled, from where it stopped."""
    run = service.get_issuance(db.session, current_actor(), run_id)
    if run.status == IssuanceStatus.COMPLETED or not service.stalled(run):
        raise Conflict("The run is not stalled.", code="issuance_not_stalled")
    jobs.enqueue("cards.jobs:run_issuance_job", run.public_id, job_id=f"{run.public_id}-{run.processed}")
    return run
