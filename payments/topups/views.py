"""The member's top-up page: choose an amount, pay it in Stripe's checkout, watch the status."""

from __future__ import annotations


from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from cards import service as cards
from core.db import db
from core.errors import DomainError
from core.i18n import N_
from core.models import Role
from core.money import format_amount, parse_yuan
from core.stripe_client import stripe_configured
from core.web import current_actor, page_roles
from payments.topups import service
from payments.topups.api import limits
from payments.topups.models import TopUp, TopUpStatus
from payments.topups.provider import payment_intents

bp = Blueprint("topups_pages", __name__, template_folder="templates")

RECENT_ON_PAGE = 5
# The status line asks every few seconds for about ten minutes, then offers a button to ask again.
POLL_SECONDS = 3
POLL_LIMIT = 200

STATUS_LABELS = {
    "pending": N_("Waiting for payment"),
    "succeeded": N_("Added to your card"),
    "failed": N_("Payment failed"),
    "canceled": N_("Payment cancelled"),
}
# The service's refusals people meet on this page, so they read in the page's language.
SERVICE_MESSAGES = (
    N_("The card has not been activated yet."),
    N_("The card is frozen."),
    N_("The card is reported lost."),
    N_("The card has been replaced; use the new card."),
    N_("The card is cancelled."),
    N_("Top-ups are not available: card payments through Stripe are not configured on this platform."),
    N_("The payment service is unavailable right now; try again later."),
)


def _explain(exc: DomainError, bounds: service.Limits) -> str:
    """Say why the service refused, in the page's language where the refusal is a known one."""
    if exc.code == "amount_out_of_range":
        return _("A top-up is from %(minimum)s to %(maximum)s.", minimum=format_amount(bounds.minimum),
                 maximum=format_amount(bounds.maximum))
    if exc.message in SERVICE_MESSAGES:
        return _(exc.message)
    if exc.code == "stripe_error":
        return _("The payment service refused this top-up; try another amount or try again later.")
    return exc.message


def describe(top_up: TopUp) -> str:
    """Say in a sentence where a top-up stands."""
    amount = format_amount(top_up.amount, top_up.currency)
    if top_up.status == TopUpStatus.SUCCEEDED:
        return _("%(amount)s has been added to your card's general balance.", amount=amount)
    if top_up.refund_due:
        return _("Stripe took the payment of %(amount)s but it could not be added to your card. "
                 "The union's finance team will refund it.", amount=amount)
    if top_up.status == TopUpStatus.FAILED:
        return _("The payment did not go through and nothing was charged. You can start a new top-up.")
    if top_up.status == TopUpStatus.CANCELED:
        return _("The payment was cancelled; nothing was charged.")
    return _("Waiting for Stripe to confirm the payment of %(amount)s. Your balance changes only once it does.",
             amount=amount)


def status_label(top_up: TopUp) -> str:
    """Name a top-up's status in the page's language."""
    return _(STATUS_LABELS[top_up.status.value])


def _no_store(response):
    """Keep a page that shows a payment's secret or status out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/card/top-up", methods=["GET", "POST"])
@page_roles(Role.MEMBER)
def top_up():
    """Top up the card's general balance: the form, then the checkout step with a live status line."""
    actor = current_actor()
    card = cards.live_card_of(db.session, actor.member_id) if actor.member_id else None
    if card is None:
        return redirect(url_for("cards_pages.my_card"))
    bounds = limits()
    enabled = stripe_configured(current_app.config)
    problem, status, entered = None, 200, ""
    if request.method == "POST":
        entered = request.form.get("amount", "")[:20]
        amount = parse_yuan(entered)
        if amount is None:
            problem, status = _("Enter an amount in yuan, such as 50 or 50.50."), 422
        else:
            try:
                new = service.create_top_up(db.session, actor, card.public_id, amount,
                                            provider=payment_intents(current_app.config), limits=bounds)
            except DomainError as exc:
                db.session.rollback()
                problem, status = _explain(exc, bounds), exc.status
            else:
                html = render_template("topups/checkout.html", top_up=new.top_up, client_secret=new.client_secret,
                                       describe=describe, status_label=status_label, poll_seconds=POLL_SECONDS,
                                       poll_limit=POLL_LIMIT)
                return _no_store(current_app.make_response(html))
    unusable = None
    try:
        cards.usable_card(card)
    except DomainError as exc:
        unusable = _explain(exc, bounds)
    recent = service.recent_top_ups(db.session, actor, limit=RECENT_ON_PAGE)
    html = render_template("topups/top_up.html", card=card, bounds=bounds, enabled=enabled, problem=problem,
                           unusable=unusable, entered=entered, recent=recent, describe=describe,
                           status_label=status_label)
    return _no_store(current_app.make_response((html, status)))


@bp.route("/card/top-up/<top_up_id>/status")
@page_roles(Role.MEMBER)
def top_up_status(top_up_id):
    """Where one of the member's top-ups stands, as JSON for the checkout page's status line."""
    top_up = service.get_top_up(db.session, current_actor(), top_up_id)
    done = top_up.status in (TopUpStatus.SUCCEEDED, TopUpStatus.CANCELED) or top_up.refund_due
    return _no_store(jsonify(id=top_up.public_id, status=top_up.status.value, amount=top_up.amount,
                             currency=top_up.currency, label=status_label(top_up), message=describe(top_up),
                             done=done))
