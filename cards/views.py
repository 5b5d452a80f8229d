"""Card pages: the member's own card, payment code, statement and PIN on a phone; the union's card
console on the member page, and bulk issuance with progress."""

from __future__ import annotations

import datetime as dt
import logging

from flask import Blueprint, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cards import service
from cards.api import payment_codes, pin_guard
from cards.models import Card
from cards.numbers import group_digits
from core import qr
from core.db import db, utcnow
from core.errors import DomainError, TooManyAttempts
from core.i18n import N_
from core.jobs import jobs
from core.models import Role
from core.web import current_actor, field_cipher, page_roles
from members import service as members
from members.models import MemberStatus

log = logging.getLogger(__name__)
bp = Blueprint("cards_pages", __name__, template_folder="templates")

MEMBER = Role.MEMBER
ADMIN = Role.UNION_ADMIN
CONSOLE_READERS = (Role.UNION_ADMIN, Role.AUDITOR)
STATEMENT_PAGE = 20
CARDS_PER_MEMBER = 50
EXPIRY_WARNING = dt.timedelta(days=30)
# Refresh a payment code this many seconds before it expires, so the cashier never scans a dead one.
CODE_REFRESH_LEAD = 10
# A code screen left open stops refreshing after this many codes (about twenty minutes at 60 s each).
CODE_REFRESH_LIMIT = 20
CONSOLE_ACTIONS = {"freeze": "freeze", "unfreeze": "unfreeze", "report-lost": "report_lost", "cancel": "cancel"}

STATUS_LABELS = {
    "issued": N_("Not activated"),
    "active": N_("In use"),
    "frozen": N_("Frozen"),
    "lost": N_("Reported lost"),
    "replaced": N_("Replaced"),
    "cancelled": N_("Cancelled"),
}
# The ledger's kinds of transaction that touch a card's purses.
KIND_LABELS = {
    "card_replacement": N_("Card replacement"),
    "disbursement": N_("Aid received"),
    "disbursement_clawback": N_("Aid taken back"),
    "card_payment": N_("Payment"),
    "card_refund": N_("Refund"),
    "top_up": N_("Top-up"),
    "purse_expiry": N_("Expired aid returned"),
}
DONE = {
    "activate": N_("Your card is active: you can pay with it now."),
    "freeze": N_("The card is frozen: nobody can pay with it until it is unfrozen."),
    "unfreeze": N_("The card is unfrozen and works again."),
    "report_lost": N_("The card is reported lost and has stopped working. A replacement card keeps the balance."),
    "cancel": N_("The card is cancelled."),
}
# The service's refusals people meet on these pages, so they read in the page's language.
SERVICE_MESSAGES = (
    N_("The card has not been activated yet."),
    N_("The card is frozen."),
    N_("The card is reported lost."),
    N_("The card has been replaced; use the new card."),
    N_("The card is cancelled."),
    N_("The card is cancelled; a cancelled card never comes back."),
    N_("The card is reported lost; replace it."),
    N_("The union froze this card; ask the union to unfreeze it."),
    N_("Only the union can do that to a card."),
    N_("The card still holds money; replace it to keep the balance, or let it be spent or returned before "
       "cancelling."),
    N_("A payment on this card is still being processed; try again in a few minutes."),
    N_("Only an active member can be issued a card."),
    N_("The member already has a card."),
    N_("Too many payment codes in a minute; wait a moment."),
    N_("Payment codes are unavailable for a moment; try again."),
    N_("Could not issue a payment code; try again."),
    N_("Set a PIN for the card first."),
    N_("Enter the current PIN to change it."),
    N_("PIN checks are unavailable for a moment; try again."),
    N_("A PIN is exactly six digits."),
    N_("That PIN is too easy to guess; avoid repeated digits and runs like 123456."),
    N_("That PIN is too easy to guess; avoid repeated patterns like 121212 or 123123."),
    N_("Do not use your birth date as your PIN."),
    N_("Do not use the end of your ID number as your PIN."),
    N_("Do not use the end of your phone number as your PIN."),
    N_("The run is not stalled."),
)
# Refusals whose text names changing details: a fixed sentence per machine word.
CODE_MESSAGES = {
    "invalid_card_state": N_("The card's status does not allow that now."),
    "member_has_card": N_("The member already has a card."),
    "issuance_running": N_("Cards are already being issued for this union; wait for that run to finish."),
}


def _say(message: str) -> str:
    """Translate one of the service's sentences when it is a known one."""
    return _(message) if message in SERVICE_MESSAGES else message


def _explain(exc: DomainError) -> str:
    """Say why the service refused, in the page's language where the refusal is a known one."""
    if exc.errors:
        return " ".join(_say(t) for texts in exc.errors.values() for t in texts)
    if isinstance(exc, TooManyAttempts) and exc.code == "pin_locked":
        return _("Too many wrong PINs: PIN use is locked for %(minutes)s minutes.",
                 minutes=-(-int(exc.retry_after) // 60))
    if exc.message in SERVICE_MESSAGES:
        return _(exc.message)
    if exc.code in CODE_MESSAGES:
        return _(CODE_MESSAGES[exc.code])
    return exc.message


def _no_store(response):
    """Keep a page that shows a card number or a payment code out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the member's own card -----------------------------------------------------------------------

def _live_card() -> Card | None:
    actor = current_actor()
    return service.live_card_of(db.session, actor.member_id) if actor.member_id else None


def _owned(card_id: str) -> Card:
    return service.owned_card(db.session, current_actor(), card_id)


def _may(card: Card, action: str, *, by_member: bool) -> bool:
    """Tell whether the card's status allows an action (the rule table is the service's)."""
    rule = service.TRANSITIONS[action]
    return card.status in rule.allowed_from and (rule.by_member or not by_member)


def _purses(card: Card) -> list[dict]:
    """The card's open purses as the pages show them: amounts, expiry (and whether it is near), categories."""
    now = utcnow()
    rows = []
    for p in service.purse_balances(db.session, card):
        rows.append({"balance": p, "restricted": p.purse == "restricted",
                     "expiring": p.expires_at is not None and p.expires_at - now <= EXPIRY_WARNING,
                     "expired": p.expires_at is not None and p.expires_at <= now})
    return rows


def _my_card_page(revealed: tuple[str, str] | None = None):
    """Render the member's card page; `revealed` is (card id, whole number) after an explicit request."""
    actor = current_actor()
    cards = service.list_cards(db.session, actor, limit=CARDS_PER_MEMBER, cursor=None).items if actor.member_id \
        else []
    card = next((c for c in cards if c.is_live), None)
    purses = _purses(card) if card else []
    # Aid that goes back to its program soon unless it is spent: said at the top of the page.
    expiring = [row["balance"] for row in purses
                if row["restricted"] and row["expiring"] and not row["expired"] and row["balance"].amount > 0]
    old = [c for c in reversed(cards) if not c.is_live]
    number = revealed[1] if revealed and card and revealed[0] == card.public_id else None
    html = render_template("cards/my_card.html", card=card, purses=purses, expiring=expiring, old_cards=old,
                           total=sum(p["balance"].amount for p in purses), number=number, may=_may,
                           grouped=group_digits)
    return _no_store(current_app.make_response(html))


@bp.route("/card/")
@page_roles(MEMBER)
def my_card():
    """The member's card: masked number, status, purses and what they can do with it."""
    return _my_card_page()


@bp.route("/card/<card_id>/number", methods=["POST"])
@page_roles(MEMBER)
def reveal_number(card_id):
    """Show the whole card number to its owner, on an explicit request (each showing is audited)."""
    number = group_digits(service.reveal_number(db.session, field_cipher(), current_actor(), card_id))
    if _wants_json():
        return _no_store(jsonify(number=number))
    return _my_card_page(revealed=(card_id, number))


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


@bp.route("/card/<card_id>/<any(activate, freeze, unfreeze):action>", methods=["POST"])
@page_roles(MEMBER)
def member_action(card_id, action):
    """Activate, freeze or unfreeze one's own card."""
    _owned(card_id)
    try:
        service.change_state(db.session, current_actor(), card_id, action)
        flash(_(DONE[action]), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return redirect(url_for("cards_pages.my_card"))


@bp.route("/card/<card_id>/report-lost", methods=["GET", "POST"])
@page_roles(MEMBER)
def report_lost(card_id):
    """Ask for confirmation, then report one's own card lost: it stops working at once."""
    card = _owned(card_id)
    if request.method == "GET":
        return render_template("cards/report_lost.html", card=card, grouped=group_digits)
    action = "report_lost"
    try:
        service.change_state(db.session, current_actor(), card_id, action)
        flash(_(DONE[action]), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return redirect(url_for("cards_pages.my_card"))


@bp.route("/card/<card_id>/replace", methods=["POST"])
@page_roles(MEMBER)
def member_replace(card_id):
    """Replace one's own lost card: a new card takes over the balance and the PIN."""
    _owned(card_id)
    try:
        new = service.replace_card(db.session, field_cipher(), current_actor(), card_id,
                                   prefix=current_app.config["CARD_PREFIX"])
        flash(_("Your new card %(number)s has the balance of the old one. Activate it to pay.",
                number=group_digits(new.number_masked)), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return redirect(url_for("cards_pages.my_card"))


# --- the payment code ----------------------------------------------------------------------------

def _new_code(card: Card) -> dict:
    issued = payment_codes().issue(db.session, current_actor(), card.public_id)
    svg = qr.svg(issued.code).decode()
    return {"code": issued.code, "grouped": group_digits(issued.code), "svg": svg, "expires_in": issued.expires_in,
            "refresh_in": max(1, issued.expires_in - CODE_REFRESH_LEAD)}


@bp.route("/card/code", methods=["GET", "POST"])
@page_roles(MEMBER)
def payment_code():
    """Show a fresh single-use payment code (QR and 18 digits); a POST returns the next one as JSON."""
    card = _live_card()
    if request.method == "POST":
        if card is None:
            return _no_store(jsonify(error="no_card", message=_("You have no card yet."))), 404
        try:
            return _no_store(jsonify(_new_code(card)))
        except DomainError as exc:
            return _no_store(jsonify(error=exc.code, message=_explain(exc))), exc.status
    code, problem, status = None, None, 200
    if card is None:
        problem, status = _("You have no card yet. Your union issues member cards; ask them for one."), 404
    else:
        try:
            code = _new_code(card)
        except DomainError as exc:
            db.session.rollback()
            problem, status = _explain(exc), exc.status
    html = render_template("cards/code.html", card=card, code=code, problem=problem,
                           refresh_limit=CODE_REFRESH_LIMIT, refresh_lead=CODE_REFRESH_LEAD)
    return _no_store(current_app.make_response((html, status)))


# --- the statement -------------------------------------------------------------------------------

@bp.route("/card/transactions")
@page_roles(MEMBER)
def transactions():
    """The card's statement, newest first, a page at a time (an old card's with ?card=)."""
    card_id = request.args.get("card")
    card = _owned(card_id) if card_id else _live_card()
    if card is None:
        return redirect(url_for("cards_pages.my_card"))
    page = service.card_statement(db.session, card, limit=STATEMENT_PAGE, cursor=request.args.get("cursor") or None)
    return render_template("cards/transactions.html", card=card, page=page, kinds=KIND_LABELS,
                           live=card.is_live, grouped=group_digits)


# --- the PIN -------------------------------------------------------------------------------------

@bp.route("/card/pin", methods=["GET", "POST"])
@page_roles(MEMBER)
def pin():
    """Set the card's six-digit PIN, or change it with the current one."""
    card = _live_card()
    if card is None:
        return redirect(url_for("cards_pages.my_card"))
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        form = request.form
        new_pin, again = form.get("pin", ""), form.get("pin_again", "")
        if new_pin != again:
            errors, status = {"pin_again": [_("The two new PINs differ; type the same six digits twice.")]}, 422
        else:
            guard = pin_guard()
            try:
                service.set_pin(db.session, field_cipher(), guard, current_actor(), card.public_id, pin=new_pin,
                                current_pin=form.get("current_pin") or None)
            except DomainError as exc:
                db.session.rollback()
                errors, status = _pin_errors(exc, guard, card), exc.status
            else:
                flash(_("Your PIN is set."), "info")
                return redirect(url_for("cards_pages.my_card"))
    return render_template("cards/pin.html", card=card, errors=errors), status


def _pin_errors(exc: DomainError, guard: service.PinGuard, card: Card) -> dict[str, list[str]]:
    """Put the refusal next to the field it is about."""
    if exc.errors:
        return {field: [_say(t) for t in texts] for field, texts in exc.errors.items()}
    if exc.code == "wrong_pin":
        left = max(0, guard.max_failures - guard.failures(card))
        return {"current_pin": [_("Wrong PIN. Tries left before PIN use is locked: %(left)s.", left=left)]}
    if exc.code == "pin_locked":
        return {"current_pin": [_explain(exc)]}
    return {"_": [_explain(exc)]}


# --- the console: cards on the member page -------------------------------------------------------

def card_status(card: Card) -> str:
    """Name a card's status in the page's language."""
    return _(STATUS_LABELS.get(card.status.value, card.status.value))


@bp.app_context_processor
def _card_helpers():
    return {"member_cards": _member_cards, "card_status": card_status}


def _member_cards(member) -> dict | None:
    """The cards of a member for the console's member page (None for a role that may not see them)."""
    actor = g.get("actor")
    if actor is None or actor.role not in CONSOLE_READERS:
        return None
    cards = service.list_cards(db.session, actor, member_id=member.public_id, limit=CARDS_PER_MEMBER,
                               cursor=None).items
    live = next((c for c in cards if c.is_live), None)
    admin = actor.role == ADMIN
    actions = {}
    if admin:
        for c in cards:
            actions[c.public_id] = [(path, word) for path, word in CONSOLE_ACTIONS.items()
                                    if _may(c, word, by_member=False)]
            if _may(c, "replace", by_member=False):
                actions[c.public_id].append(("replace", "replace"))
    return {"cards": list(reversed(cards)), "live": live,
            "total": sum(p.amount for p in service.purse_balances(db.session, live)) if live else None,
            "can_issue": admin and live is None and member.status == MemberStatus.ACTIVE,
            "actions": actions, "grouped": group_digits}


def _back_to_member(card: Card):
    return redirect(url_for("members_pages.detail", member_id=card.member.public_id))


@bp.route("/console/cards/issue", methods=["POST"])
@page_roles(ADMIN)
def console_issue():
    """Issue a card to a member of the admin's unions."""
    actor = current_actor()
    member = members.get_member(db.session, actor, request.form.get("member_id", ""))
    try:
        card = service.issue_card(db.session, field_cipher(), actor, member.public_id,
                                  prefix=current_app.config["CARD_PREFIX"])
        flash(_("Card %(number)s issued. The member activates it on their phone.",
                number=group_digits(card.number_masked)), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return redirect(url_for("members_pages.detail", member_id=member.public_id))


@bp.route("/console/cards/<card_id>/<any(freeze, unfreeze, 'report-lost', cancel):action>", methods=["POST"])
@page_roles(ADMIN)
def console_action(card_id, action):
    """Freeze, unfreeze, report lost or cancel a card of the admin's unions."""
    card = service.get_card(db.session, current_actor(), card_id)
    word = CONSOLE_ACTIONS[action]
    try:
        service.change_state(db.session, current_actor(), card_id, word)
        flash(_(DONE[word]), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return _back_to_member(card)


@bp.route("/console/cards/<card_id>/replace", methods=["POST"])
@page_roles(ADMIN)
def console_replace(card_id):
    """Replace a card of the admin's unions: the new card takes the balance and the PIN."""
    card = service.get_card(db.session, current_actor(), card_id)
    try:
        new = service.replace_card(db.session, field_cipher(), current_actor(), card_id,
                                   prefix=current_app.config["CARD_PREFIX"])
        flash(_("Card replaced: the new card %(number)s has the balance of the old one.",
                number=group_digits(new.number_masked)), "info")
    except DomainError as exc:
        db.session.rollback()
        flash(_explain(exc), "error")
    return _back_to_member(card)


# --- the console: bulk issuance ------------------------------------------------------------------

def _eligible_count(union) -> int:
    """Count the members a run for the union would give a card (the service's rule for who is eligible)."""
    return service.count_eligible(db.session, current_actor(), union.public_id)


@bp.route("/console/cards/issuance")
@page_roles(*CONSOLE_READERS)
def issuance():
    """Pick a union and see how many of its members have no card yet."""
    actor = current_actor()
    unions = members.list_unions(db.session, actor, parent_id=None, limit=200, cursor=None).items
    union = count = None
    if request.args.get("union_id"):
        union = members.get_union(db.session, actor, request.args["union_id"])
        count = _eligible_count(union)
    return render_template("cards/issuance.html", unions=unions, union=union, count=count)


@bp.route("/console/cards/issuance", methods=["POST"])
@page_roles(ADMIN)
def start_issuance():
    """Issue cards to every active member of a union's subtree who has none."""
    union_id = request.form.get("union_id", "")
    try:
        run = service.start_bulk_issuance(db.session, current_actor(), union_id)
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        flash(_explain(exc), "error")
        return redirect(url_for("cards_pages.issuance", union_id=union_id))
    _run_or_queue(run)
    return redirect(url_for("cards_pages.issuance_run", run_id=run.public_id))


def _run_or_queue(run) -> None:
    """Issue a small run now; hand a large one to the background worker."""
    if run.total <= current_app.config["CARD_ISSUANCE_INLINE"]:
        try:
            service.run_bulk_issuance(db.session, field_cipher(), run.public_id,
                                      prefix=current_app.config["CARD_PREFIX"])
        except Exception:
            # The run is recorded as failed and can be resumed from its page.
            log.exception("card issuance %s failed inline", run.public_id)
            db.session.rollback()
            flash(_("The run stopped; resume it to go on."), "error")
    else:
        jobs.enqueue("cards.jobs:run_issuance_job", run.public_id, job_id=run.public_id)


def _progress(run) -> dict:
    return {"status": run.status.value, "total": run.total, "processed": run.processed, "issued": run.issued,
            "skipped": run.skipped, "stalled": service.stalled(run)}


@bp.route("/console/cards/issuance/<run_id>")
@page_roles(*CONSOLE_READERS)
def issuance_run(run_id):
    """A bulk issuance run: a progress bar, the counts, and resume when it stalled."""
    run = service.get_issuance(db.session, current_actor(), run_id)
    return render_template("cards/issuance_run.html", run=run, progress=_progress(run))


@bp.route("/console/cards/issuance/<run_id>/progress")
@page_roles(*CONSOLE_READERS)
def issuance_progress(run_id):
    """A run's counts for the progress bar."""
    return jsonify(_progress(service.get_issuance(db.session, current_actor(), run_id)))


@bp.route("/console/cards/issuance/<run_id>/resume", methods=["POST"])
@page_roles(ADMIN)
def issuance_resume(run_id):
    """Go on with a run that failed or stalled, from where it stopped."""
    run = service.get_issuance(db.session, current_actor(), run_id)
    if not service.stalled(run):
        flash(_("The run is not stalled."), "error")
    else:
        jobs.enqueue("cards.jobs:run_issuance_job", run.public_id, job_id=f"{run.public_id}-{run.processed}")
        flash(_("The run goes on from where it stopped."), "info")
    return redirect(url_for("cards_pages.issuance_run", run_id=run_id))

