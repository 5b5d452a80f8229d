"""Card payment pages: the store's pay page its QR code opens, the member's receipts, the cashier's till
with refunds, and the offer usage figures for the union's staff."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from cards import service as cards
from cards.api import payment_codes, pin_guard
from core.auth import Actor
from core.db import db, utcnow
from core.errors import DomainError, NotFound, TooManyAttempts
from core.i18n import BUSINESS_TZ, N_, say
from core.idempotency import KEY_RE
from core.models import Role
from core.money import format_amount, parse_yuan
from core.web import client_ip, current_actor, page_roles
from members import service as members
from merchants import service as merchants
from merchants.models import Merchant
from payments.checkout import service
from payments.checkout.models import Payment

bp = Blueprint("checkout_pages", __name__, template_folder="templates")

MEMBER = Role.MEMBER
TILL = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER)
REFUNDERS = service.REFUNDERS
USAGE_READERS = (Role.UNION_ADMIN, Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR)
PAYMENTS_PAGE = 20
TILL_PAGE = 50
OFFERS_IN_CHART = 12
USAGE_ROWS_ON_PAGE = 100
USAGE_DEFAULT_MONTHS = 6
PIN_RE = re.compile(r"^\d{6}$", re.ASCII)
CODE_RE = re.compile(r"^\d{18}$", re.ASCII)
AMOUNT_FIELD = 20

STATUS_LABELS = {
    "completed": N_("Completed"),
    "partially_refunded": N_("Partly refunded"),
    "refunded": N_("Refunded"),
}
PURSE_LABELS = {"general": N_("General balance"), "restricted": N_("Aid")}
REFUND_TARGETS = {"card": N_("Back to the card"), "program": N_("Back to the aid program (expired aid)"),
                  "subsidy": N_("Union subsidy back to the program")}
# Why an offer does not apply, as pricing says it (benefits.pricing.refusal and price).
OFFER_REASONS = {
    "not_started": N_("Not started yet"),
    "ended": N_("Ended"),
    "not_today": N_("Not on today's weekday"),
    "outside_hours": N_("Outside its hours"),
    "other_merchant": N_("Not at this store"),
    "other_category": N_("Not at this store"),
    "hardship_only": N_("For members on the hardship register"),
    "other_union": N_("For members of other unions"),
    "below_min_spend": N_("Below its minimum spend"),
    "limit_reached": N_("You have used it as often as it allows for now"),
    "budget_used_up": N_("Its budget is used up"),
    "not_best": N_("A better offer applies"),
    "no_discount": N_("No discount on this amount"),
}
# Offers that are not for this store today at all: left off the list.
HIDDEN_REASONS = {"other_merchant", "other_category", "not_started", "ended"}
# Reasons that say who or when an offer is for, worth showing before any amount is entered.
STANDING_REASONS = {"not_today", "outside_hours", "hardship_only", "other_union", "limit_reached", "budget_used_up"}
# The service's refusals people meet on these pages, so they read in the page's language.
SERVICE_MESSAGES = (
    N_("The card has not been activated yet."),
    N_("The card is frozen."),
    N_("The card is reported lost."),
    N_("The card has been replaced; use the new card."),
    N_("The card is cancelled."),
    N_("Set a PIN for the card first."),
    N_("PIN checks are unavailable for a moment; try again."),
    N_("Payment codes cannot be checked for a moment; try again."),
    N_("This store does not accept member cards at the moment."),
    N_("The union's subsidy for this offer has run out; try the payment again."),
    N_("Everything this payment charged has been refunded."),
    N_("The member's card is cancelled; this payment cannot go back to a card."),
    N_("No such card."),
    N_("No such store."),
)
# Refusals whose text names changing details, or that a page says in its own words: a sentence per word.
CODE_MESSAGES = {
    "idempotency_key_reused": N_("This form was already used for a payment with other details. "
                                 "The form is renewed: check the details and try again."),
    "invalid_payment_code": N_("That is not a valid member payment code; scan it again."),
    "payment_code_expired": N_("This payment code has expired; ask the member to show a new one."),
    "payment_code_used": N_("This payment code has already been used; ask the member to show a new one."),
    "payment_code_mismatch": N_("This payment code belongs to another card."),
}
# Refusals with figures in them: the pattern, the sentence to say instead, and the names of its figures.
NUMBERED_MESSAGES = (
    (re.compile(r"^The card can pay (¥[\d,.]+) here, less than the (¥[\d,.]+) due\.$"),
     N_("Not enough money on the card: it can pay %(held)s here, less than the %(due)s due."), ("held", "due")),
    (re.compile(r"^Wrong PIN; (\d+) tr"), N_("Wrong PIN. Tries left before PIN use is locked: %(left)s."),
     ("left",)),
    (re.compile(r"^At most (¥[\d,.]+) of this payment is left to refund\.$"),
     N_("At most %(left)s of this payment is left to refund."), ("left",)),
)


def _say(message: str) -> str:
    """Translate one of the service's sentences when it is a known one."""
    return say(message, SERVICE_MESSAGES, NUMBERED_MESSAGES)


def explain(exc: DomainError) -> str:
    """Say why the service refused, in the page's language where the refusal is a known one."""
    if isinstance(exc, TooManyAttempts) and exc.code == "pin_locked":
        return _("Too many wrong PINs: PIN use is locked for %(minutes)s minutes.",
                 minutes=-(-int(exc.retry_after) // 60))
    if exc.code in CODE_MESSAGES:
        return _(CODE_MESSAGES[exc.code])
    if exc.errors:
        return " ".join(_say(t) for texts in exc.errors.values() for t in texts)
    return _say(exc.message)


def _new_key() -> str:
    """An Idempotency-Key for one rendering of a form: submitting it twice pays once."""
    return "page-" + secrets.token_urlsafe(18)


def _no_store(response):
    """Keep pages with payments and PIN forms out of every cache."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _amount(text: str | None) -> tuple[int | None, str | None]:
    """Read an amount typed in yuan: (fen, None), or (None, what is wrong with it)."""
    amount = parse_yuan(text)
    if amount is None or amount <= 0:
        return None, _("Enter an amount in yuan, such as 25 or 25.50.")
    maximum = current_app.config["PAYMENT_MAX_AMOUNT"]
    if amount > maximum:
        return None, _("At most %(amount)s in one payment.", amount=format_amount(maximum))
    return amount, None


@bp.app_context_processor
def _helpers():
    def payment_status(payment: Payment) -> str:
        return _(STATUS_LABELS.get(payment.status.value, payment.status.value))

    def purse_name(row, labels: dict) -> str:
        if row.purse_kind == "restricted" and labels.get(row.account_code):
            return labels[row.account_code]
        return _(PURSE_LABELS.get(row.purse_kind, row.purse_kind))

    def offer_reason(reason: str, terms=None) -> str:
        if reason == "below_min_spend" and terms is not None:
            return _("Spend at least %(amount)s", amount=format_amount(terms.min_spend))
        return _(OFFER_REASONS[reason]) if reason in OFFER_REASONS else reason

    def refund_target(word: str) -> str:
        return _(REFUND_TARGETS[word]) if word in REFUND_TARGETS else word

    def yuan(fen: int) -> str:
        return f"{fen // 100}.{fen % 100:02d}"

    return {"payment_status": payment_status, "purse_name": purse_name, "offer_reason": offer_reason,
            "refund_target": refund_target, "offer_terms": offer_terms, "yuan": yuan}


def offer_terms(offer) -> str:
    """Say in a few words what an offer gives."""
    kind = offer.kind.value
    if kind == "percent_off":
        value = offer.value / 100
        text = _("%(percent)s%% off", percent=f"{value:g}")
        if offer.max_discount is not None:
            text += " · " + _("at most %(amount)s off", amount=format_amount(offer.max_discount))
    elif kind == "amount_off":
        text = _("%(amount)s off", amount=format_amount(offer.value))
    elif kind == "fixed_price" or offer.value:
        text = _("Pay %(amount)s", amount=format_amount(offer.value))
    else:
        text = _("Free service")
    if offer.min_spend:
        text += " · " + _("from %(amount)s", amount=format_amount(offer.min_spend))
    return text


# --- the store's pay page ----------------------------------------------------------------------

def _signed_in_member() -> bool:
    """Tell whether a member is signed in, and if so act as them (the page is open to anyone)."""
    if not current_user.is_authenticated or current_user.role != MEMBER:
        return False
    g.actor = Actor.of(current_user, g.request_id, client_ip())
    return True


def _pay_page(store, *, entered: str = "", errors: dict | None = None, hint: str | None = None, status: int = 200):
    """Render the pay page for the signed-in member: their card, the offers, the form and any refusal."""
    amount, amount_error = _amount(entered) if entered.strip() else (None, None)
    errors = dict(errors or {})
    if amount_error:
        errors.setdefault("amount", [amount_error])
    card_problem, quote = None, None
    try:
        quote = service.preview(db.session, current_actor(), store.public_id, amount)
    except DomainError as exc:
        db.session.rollback()
        if exc.code == "store_not_accepting":
            return _closed_store(store)
        card_problem = _("You have no card yet. Your union issues member cards; ask them for one.") \
            if isinstance(exc, NotFound) else explain(exc)
    offers = [o for o in quote.offers if quote.quote.not_applied.get(o.public_id) not in HIDDEN_REASONS] \
        if quote else []
    applied = {a.offer_id for a in quote.quote.applied} if quote and amount else set()
    html = render_template("checkout/pay.html", store=store, member=True, quote=quote, amount=amount,
                           entered=entered, problem=None, errors=errors, hint=hint, card_problem=card_problem,
                           offers=offers, applied=applied, key=_new_key(), standing=STANDING_REASONS)
    return _no_store(current_app.make_response((html, status)))


def _closed_store(store):
    html = render_template("checkout/pay.html", store=store, member=False,
                           problem=_("This store does not accept member cards at the moment."))
    return _no_store(current_app.make_response((html, 409)))


@bp.route("/pay/<store_id>")
def pay_page(store_id):
    """The page a store's QR code opens: a signed-in member enters the amount, sees the discount and pays."""
    store = merchants.get_store_any(db.session, store_id)
    if not store.accepts_cards():
        return _closed_store(store)
    if not _signed_in_member():
        return render_template("checkout/pay.html", store=store, member=False, problem=None)
    return _pay_page(store, entered=request.args.get("amount", "")[:AMOUNT_FIELD])


@bp.route("/pay/<store_id>/preview")
@page_roles(MEMBER)
def pay_preview(store_id):
    """The price of an amount at the store for the member's card, as a panel for the pay page."""
    store = merchants.get_store_any(db.session, store_id)
    amount, error = _amount(request.args.get("amount", "")[:AMOUNT_FIELD])
    if error:
        return _no_store(jsonify(error="invalid_amount", message=error,
                                 html=render_template("checkout/_preview.html", quote=None, error=error))), 422
    try:
        quote = service.preview(db.session, current_actor(), store.public_id, amount)
    except DomainError as exc:
        db.session.rollback()
        message = explain(exc)
        return _no_store(jsonify(error=exc.code, message=message,
                                 html=render_template("checkout/_preview.html", quote=None, error=message))), \
            exc.status
    q = quote.quote
    return _no_store(jsonify(amount=q.amount, discount=q.discount, charged=q.charged, offer_id=q.offer_id,
                             html=render_template("checkout/_preview.html", quote=quote, error=None)))


@bp.route("/pay/<store_id>", methods=["POST"])
@page_roles(MEMBER)
def pay(store_id):
    """Check the price, or pay it with the card's PIN (the form's key makes a second submit a replay)."""
    store = merchants.get_store_any(db.session, store_id)
    if not store.accepts_cards():
        return _closed_store(store)
    form = request.form
    entered = form.get("amount", "")[:AMOUNT_FIELD]
    if form.get("action") == "check":
        return _pay_page(store, entered=entered)
    amount, amount_error = _amount(entered)
    pin, key = form.get("pin", ""), form.get("key", "")
    if not pin and not amount_error:
        return _pay_page(store, entered=entered, hint=_("Enter the card's PIN to pay this price."))
    errors: dict[str, list[str]] = {}
    if amount_error:
        errors["amount"] = [amount_error]
    if not PIN_RE.match(pin):
        errors["pin"] = [_("Enter the card's six-digit PIN.")]
    if not KEY_RE.match(key):
        errors["_"] = [_("This form has expired; check the amount and pay again.")]
    if errors:
        return _pay_page(store, entered=entered, errors=errors, status=400 if "_" in errors else 422)
    actor = current_actor()
    card = cards.live_card_of(db.session, actor.member_id) if actor.member_id else None
    if card is None:
        return _pay_page(store, entered=entered, status=404)
    req = service.PayRequest(store_id=store.public_id, amount=amount, card_id=card.public_id, pin=pin,
                             idempotency_key=key)
    try:
        payment, _replayed = service.pay(db.session, actor, req, codes=payment_codes(), pins=pin_guard(),
                                         max_amount=current_app.config["PAYMENT_MAX_AMOUNT"])
    except DomainError as exc:
        db.session.rollback()
        field = "pin" if exc.code in ("wrong_pin", "pin_locked", "pin_not_set") else "_"
        return _pay_page(store, entered=entered, errors={field: [explain(exc)]}, status=exc.status)
    flash(_("Paid %(amount)s at %(merchant)s.", amount=format_amount(payment.charged),
            merchant=payment.merchant.name), "info")
    return redirect(url_for("checkout_pages.receipt", payment_id=payment.public_id))


# --- the member's payments ---------------------------------------------------------------------

@bp.route("/card/payments/")
@page_roles(MEMBER)
def my_payments():
    """The member's payments at merchants, newest first, with what each saved."""
    page = service.member_payments(db.session, current_actor(), limit=PAYMENTS_PAGE,
                                   cursor=request.args.get("cursor") or None)
    return _no_store(current_app.make_response(render_template("checkout/payments.html", page=page)))


@bp.route("/card/payments/<payment_id>")
@page_roles(MEMBER)
def receipt(payment_id):
    """One payment's receipt: where, when, the list price, the discount, the purses it drew on, refunds."""
    payment = service.get_payment(db.session, current_actor(), payment_id)
    html = render_template("checkout/receipt.html", payment=payment,
                           labels=service.purse_labels(db.session, [payment]),
                           programs=service.program_names(db.session, {o.program_id for o in payment.offers}))
    return _no_store(current_app.make_response(html))


# --- the till ----------------------------------------------------------------------------------

def _local_day(text: str | None) -> dt.date:
    today = utcnow().astimezone(BUSINESS_TZ).date()
    try:
        day = dt.date.fromisoformat(text) if text else today
    except ValueError:
        return today
    return min(day, today)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), BUSINESS_TZ).astimezone(dt.UTC)


def _till_page(*, store_id: str | None = None, entered: str = "", errors: dict | None = None,
               problem: str | None = None, refused: dict | None = None, status: int = 200):
    """Render the till: the charge form, the last payment's result, and the day's payments with refunds
    (`refused` keeps what was typed into a refund form the service turned down)."""
    actor = current_actor()
    merchant = db.session.get(Merchant, actor.merchant_id)
    stores = [s for s in merchant.stores if s.accepts_cards()]
    chosen = store_id or request.values.get("store") or (stores[0].public_id if stores else None)
    result = None
    if request.method == "GET" and request.args.get("payment"):
        result = service.get_payment(db.session, actor, request.args["payment"])
    day = _local_day(request.values.get("day"))
    since = _day_start(day)
    page = service.merchant_payments(db.session, actor, since=since, until=_day_start(day + dt.timedelta(days=1)),
                                     limit=TILL_PAGE, cursor=request.args.get("cursor") or None)
    shown = ([result] if result else []) + page.items
    html = render_template("checkout/till.html", merchant=merchant, stores=stores, chosen=chosen, result=result,
                           entered=entered, errors=errors or {}, problem=problem, key=_new_key(),
                           payments=page.items, next_cursor=page.next_cursor, day=day,
                           is_today=day == utcnow().astimezone(BUSINESS_TZ).date(),
                           labels=service.purse_labels(db.session, shown),
                           programs=service.program_names(db.session, {o.program_id for p in shown
                                                                       for o in p.offers}),
                           refund_keys={p.public_id: _new_key() for p in page.items},
                           may_refund=actor.role in REFUNDERS, refused=refused or {})
    return _no_store(current_app.make_response((html, status)))


@bp.route("/merchant/till")
@page_roles(*TILL)
def till():
    """The cashier's till: choose the store, enter the amount, scan the member's payment code."""
    return _till_page()


@bp.route("/merchant/till", methods=["POST"])
@page_roles(*TILL)
def charge():
    """Charge a member's card with the payment code they show; the form's key makes a resubmit a replay."""
    form = request.form
    store_id = form.get("store", "")[:40]
    entered = form.get("amount", "")[:AMOUNT_FIELD]
    code = re.sub(r"\s+", "", form.get("code", ""))[:40]
    key = form.get("key", "")
    amount, amount_error = _amount(entered)
    errors: dict[str, list[str]] = {}
    if not store_id:
        errors["store"] = [_("Choose the store.")]
    if amount_error:
        errors["amount"] = [amount_error]
    if not CODE_RE.match(code):
        errors["code"] = [_("Scan or type the 18 digits of the member's payment code.")]
    if not KEY_RE.match(key):
        errors["_"] = [_("This form has expired; enter the payment again.")]
    if errors:
        return _till_page(store_id=store_id, entered=entered, errors=errors, status=400 if "_" in errors else 422)
    req = service.PayRequest(store_id=store_id, amount=amount, payment_code=code, idempotency_key=key)
    try:
        payment, _replayed = service.pay(db.session, current_actor(), req, codes=payment_codes(), pins=pin_guard(),
                                         max_amount=current_app.config["PAYMENT_MAX_AMOUNT"])
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return _till_page(store_id=store_id, entered=entered, problem=explain(exc), status=exc.status)
    return redirect(url_for("checkout_pages.till", store=store_id, payment=payment.public_id))


@bp.route("/merchant/payments/<payment_id>/refund", methods=["POST"])
@page_roles(*REFUNDERS)
def refund(payment_id):
    """Give back part or all of a payment to the purses it came from (the owner or a manager)."""
    form = request.form
    entered, reason = form.get("amount", "")[:AMOUNT_FIELD], form.get("reason", "")[:200]

    def refused(message: str, status: int):
        """Show the till again with the refusal and the refund form as it was filled in."""
        flash(message, "error")
        return _till_page(store_id=form.get("store") or None, status=status,
                          refused={"payment": payment_id, "amount": entered, "reason": reason})

    amount = parse_yuan(entered)
    if amount is None or amount <= 0:
        service.get_payment(db.session, current_actor(), payment_id)
        return refused(_("Enter the amount to refund in yuan, such as 25 or 25.50."), 422)
    if not KEY_RE.match(form.get("key", "")):
        return refused(_("This form has expired; enter the refund again."), 400)
    try:
        row, _replayed = service.refund(db.session, current_actor(), payment_id, amount=amount, reason=reason,
                                       idempotency_key=form["key"])
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return refused(explain(exc), exc.status)
    flash(_("Refunded %(amount)s of payment %(payment)s to the member.", amount=format_amount(row.amount),
            payment=payment_id), "info")
    return redirect(url_for("checkout_pages.till", store=form.get("store") or None, day=form.get("day") or None,
                            _anchor="payments"))


# --- offer usage -------------------------------------------------------------------------------

def _default_window() -> tuple[dt.date, dt.date]:
    """The last few months, this one included (local dates)."""
    today = utcnow().astimezone(BUSINESS_TZ).date()
    month = today.replace(day=1)
    for _step in range(USAGE_DEFAULT_MONTHS - 1):
        month = (month - dt.timedelta(days=1)).replace(day=1)
    return month, today


def _usage_window() -> tuple[dt.date, dt.date, dict]:
    """The period asked for (local dates, both included), or the default one; and what was wrong."""
    first, last = _default_window()
    errors: dict[str, list[str]] = {}
    try:
        asked = (dt.date.fromisoformat(request.args["from"]) if request.args.get("from") else first,
                 dt.date.fromisoformat(request.args["to"]) if request.args.get("to") else last)
    except ValueError:
        errors["_"] = [_("Enter the dates as YYYY-MM-DD.")]
        return first, last, errors
    if asked[1] < asked[0]:
        errors["_"] = [_("The end of the period comes before its start.")]
        return first, last, errors
    months = len(service.usage_months(_day_start(asked[0]), _day_start(asked[1] + dt.timedelta(days=1))))
    if months > service.USAGE_MAX_MONTHS:
        errors["_"] = [_("Choose a period of at most %(months)s months.", months=service.USAGE_MAX_MONTHS)]
        return first, last, errors
    return asked[0], asked[1], errors


def _usage():
    """The figures of the period asked for, within the union subtree a scoped admin administers."""
    first, last, errors = _usage_window()
    root = members.scope_root(db.session, current_actor())
    figures = service.usage_figures(db.session, since=_day_start(first),
                                    until=_day_start(last + dt.timedelta(days=1)),
                                    union_path=root.path if root is not None else None)
    return first, last, errors, figures, root


@bp.route("/console/offer-usage")
@page_roles(*USAGE_READERS)
def usage():
    """How members use the offers: per offer, merchant, union and month, as charts and tables."""
    first, last, errors, figures, root = _usage()
    chart = [(r.label or r.key, [r.discount, r.union_subsidy]) for r in figures.offers[:OFFERS_IN_CHART]]
    html = render_template("checkout/usage.html", figures=figures, first=first, last=last, errors=errors,
                           root=root, chart=chart, limit=USAGE_ROWS_ON_PAGE)
    return html


USAGE_COLUMNS = {
    "offers": ("offer", "title", "redemptions", "discount", "union_subsidy", "merchant_borne"),
    "merchants": ("merchant", "name", "payments", "redemptions", "amount", "discount", "union_subsidy", "charged",
                  "refunded"),
    "unions": ("union", "name", "payments", "redemptions", "amount", "discount", "union_subsidy", "charged",
               "refunded"),
    "months": ("month", "payments", "redemptions", "amount", "discount", "union_subsidy", "charged", "refunded"),
}


def _csv_value(row, column: str):
    if column in ("offer", "merchant", "union", "month"):
        return row.key
    if column in ("title", "name"):
        return row.label
    return getattr(row, column)


@bp.route("/console/offer-usage/<any(offers, merchants, unions, months):table>.csv")
@page_roles(*USAGE_READERS)
def usage_csv(table):
    """One table of the usage figures as CSV (amounts in fen, CNY)."""
    first, last, _errors, figures, _root = _usage()
    columns = USAGE_COLUMNS[table]
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([*columns, "currency"])
    for row in getattr(figures, table):
        writer.writerow([*(_csv_value(row, c) for c in columns), "CNY"])
    name = f"offer-usage-{table}-{first:%Y%m%d}-{last:%Y%m%d}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})
