"""Offer pages: the catalog members browse on their phones, the union's console (drafts, review of
merchant proposals, publication, withdrawal) and the merchant's own offers and proposals."""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from benefits import service
from benefits.models import (FAMILY_OF_MERCHANT_CATEGORY, LimitPeriod, Offer, OfferCategory, OfferFunding,
                             OfferKind, OfferStatus)
from core.db import db, utcnow
from core.errors import DomainError, NotFound
from core.i18n import BUSINESS_TZ, N_
from core.models import Role
from core.money import format_amount, parse_yuan
from core.web import current_actor, page_roles
from members import service as members
from members.models import Member, Union
from merchants.models import Merchant, MerchantCategory

bp = Blueprint("benefits_pages", __name__, template_folder="templates")

ADMIN = Role.UNION_ADMIN
CONSOLE_READERS = (Role.UNION_ADMIN, Role.AUDITOR)
OWNER = Role.MERCHANT_OWNER
MERCHANT_STAFF = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)
CATALOG_PAGE = 30
CONSOLE_PAGE = 50
UNIONS_TO_CHOOSE = 200
PERCENT_RE = re.compile(r"^(\d{1,3})(?:\.(\d{1,2}))?$", re.ASCII)
WHOLE_RE = re.compile(r"^-?\d{1,6}$", re.ASCII)

FAMILY_LABELS = {
    "culture": N_("Culture and sport"),
    "legal": N_("Legal help"),
    "health": N_("Health"),
    "safety": N_("Safety at work"),
    "entertainment": N_("Leisure and travel"),
    "everyday": N_("Everyday shopping"),
}
KIND_LABELS = {
    "percent_off": N_("Percentage off"),
    "amount_off": N_("Amount off"),
    "fixed_price": N_("Fixed price"),
    "entitlement": N_("Service to members (counted)"),
}
FUNDING_LABELS = {
    "merchant": N_("The merchant bears the discount"),
    "union": N_("The union pays the discount"),
    "split": N_("The union and the merchant share the discount"),
}
STATUS_LABELS = {
    "draft": N_("Draft"),
    "proposed": N_("Proposed"),
    "published": N_("Published"),
    "withdrawn": N_("Withdrawn"),
    "rejected": N_("Rejected"),
    "superseded": N_("Superseded"),
}
PERIOD_LABELS = {"day": N_("a day"), "month": N_("a month"), "year": N_("a year"), "ever": N_("in all")}
WEEKDAY_LABELS = {1: N_("Mon"), 2: N_("Tue"), 3: N_("Wed"), 4: N_("Thu"), 5: N_("Fri"), 6: N_("Sat"),
                  7: N_("Sun")}
LABELS = {"family": FAMILY_LABELS, "kind": KIND_LABELS, "funding": FUNDING_LABELS, "status": STATUS_LABELS,
          "period": PERIOD_LABELS}
# Where a refusal of a field of the service's input shows on the form.
FORM_FIELDS = {
    "union_share_bp": "union_share", "starts_at": "starts_on", "ends_at": "ends_on", "budget_amount": "budget",
    "per_member_limit": "limit", "per_member_limit.count": "limit", "per_member_limit.amount": "limit",
    "per_member_limit.period": "limit", "eligibility.union_ids": "union_ids",
    "eligibility.hardship_only": "hardship_only",
}


class FormRefused(DomainError):
    """The form could not be read; its errors are in the page's language already, keyed by form field."""

    status = 422

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(code="validation_error", errors=errors)


# The service speaks of fen and basis points; the forms take yuan and percentages.
FORM_WORDING = {
    "Give an amount in fen, a whole number of at least 0.": N_("Enter an amount in yuan, such as 10 or 9.90."),
    "Give an amount in fen, a whole number of at least 1.": N_("Enter an amount in yuan, such as 10 or 9.90."),
    "A percentage off is 1 to 10000 basis points (100 = 1%).": N_("A percentage off is between 0.01 and 100."),
    "A split gives the union a share of 1 to 9999 basis points.":
        N_("The union's share of a shared discount is between 0.01 and 99.99 percent."),
}


def _explain(exc: DomainError) -> str:
    """Say why the service refused, in the page's language (its sentences are all marked for translation)."""
    if exc.errors:
        return " ".join(_(t) for texts in exc.errors.values() for t in texts)
    return _(exc.message)


def _field_errors(exc: DomainError) -> dict[str, list[str]]:
    """Put a refusal next to the form fields it is about (`_` for the form as a whole)."""
    if not exc.errors:
        return {"_": [_explain(exc)]}
    out: dict[str, list[str]] = {}
    for name, texts in exc.errors.items():
        out.setdefault(FORM_FIELDS.get(name, name), []).extend(_(FORM_WORDING.get(t, t)) for t in texts)
    return out


# --- how an offer reads ----------------------------------------------------------------------------

def percent_text(basis_points: int) -> str:
    """Write basis points as a percentage: 1200 -> '12%', 1250 -> '12.5%'."""
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if not part else f"{whole}.{part:02d}".rstrip("0") + "%"


def _local_day(moment: dt.datetime) -> str:
    return moment.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d")


def offer_lines(offer: Offer, union_names: dict[str, str] | None = None) -> list[str]:
    """Describe an offer's terms in a few short sentences in the page's language."""
    lines = []
    kind = offer.kind.value
    if kind == "percent_off":
        text = _("%(percent)s off", percent=percent_text(offer.value))
        if offer.max_discount:
            text += _(", up to %(amount)s", amount=format_amount(offer.max_discount))
        lines.append(text)
    elif kind == "amount_off":
        lines.append(_("%(amount)s off", amount=format_amount(offer.value)))
    elif kind == "entitlement" and offer.value == 0:
        lines.append(_("Free of charge"))
    else:
        lines.append(_("Pay %(amount)s", amount=format_amount(offer.value)))
    if offer.min_spend:
        lines.append(_("On a spend of %(amount)s or more", amount=format_amount(offer.min_spend)))
    period = _(PERIOD_LABELS[offer.limit_period.value]) if offer.limit_period else ""
    if offer.limit_count:
        lines.append(_("%(count)s times %(period)s per member", count=offer.limit_count, period=period))
    if offer.limit_amount:
        lines.append(_("Up to %(amount)s of discount %(period)s per member",
                       amount=format_amount(offer.limit_amount), period=period))
    if offer.weekdays:
        lines.append(_("On %(days)s", days=_(", ").join(_(WEEKDAY_LABELS[d]) for d in offer.weekdays)))
    if offer.hours_from and offer.hours_to:
        lines.append(_("From %(start)s to %(end)s", start=offer.hours_from, end=offer.hours_to))
    now = utcnow()
    if offer.starts_at and offer.starts_at > now:
        lines.append(_("Starts on %(date)s", date=_local_day(offer.starts_at)))
    if offer.ends_at:
        lines.append(_("Until %(date)s", date=_local_day(offer.ends_at - dt.timedelta(microseconds=1))))
    if offer.hardship_only:
        lines.append(_("For members on the hardship register"))
    if offer.union_ids:
        names = union_names or {}
        lines.append(_("For members of %(unions)s", unions=_(", ").join(names.get(u, u) for u in offer.union_ids)))
    if offer.stackable:
        lines.append(_("Combines with other offers"))
    return lines


def _union_names_of(ids) -> dict[str, str]:
    ids = list(ids)
    if not ids:
        return {}
    return dict(db.session.execute(select(Union.public_id, Union.name).where(Union.public_id.in_(ids))).all())


def _union_names(offers) -> dict[str, str]:
    """Name the unions the offers are for, to say so on the page."""
    return _union_names_of({u for o in offers for u in (o.union_ids or [])})


@bp.context_processor
def _helpers():
    def offer_label(kind: str, value) -> str:
        """Name a family, kind, funding, status or period in the page's language."""
        value = getattr(value, "value", value)
        text = LABELS[kind].get(value)
        return _(text) if text else str(value or "")

    return {"offer_label": offer_label, "offer_lines": offer_lines, "percent_text": percent_text}


# --- the catalog members browse --------------------------------------------------------------------

def _shopper():
    """Return the signed-in member's unions and hardship standing, or None for anyone else."""
    if not current_user.is_authenticated or current_user.role != Role.MEMBER:
        return None
    member = db.session.get(Member, current_user.member_id)
    today = utcnow().astimezone(BUSINESS_TZ).date()
    on_register = member.hardship is not None and member.hardship.valid_until >= today
    return service.member_unions(db.session, member), on_register


@bp.route("/offers/")
def catalog():
    """The published offers, by family, as a member sees them on a phone."""
    args = request.args
    family = args.get("category") if args.get("category") in {c.value for c in OfferCategory} else None
    q = (args.get("q") or "").strip()[:100] or None
    try:
        page = service.list_offers(db.session, None, category=OfferCategory(family) if family else None, q=q,
                                   limit=CATALOG_PAGE, cursor=args.get("cursor") or None, newest_first=True)
    except DomainError:
        page = service.Page([], None)
    shopper = _shopper()
    unusable = set()
    if shopper is not None:
        unions, on_register = shopper
        unusable = {o.public_id for o in page.items
                    if (o.hardship_only and not on_register) or (o.union_ids and not unions.intersection(o.union_ids))}
    return render_template("benefits/catalog.html", page=page, family=family, q=q or "", unusable=unusable,
                           families=list(OfferCategory), union_names=_union_names(page.items))


# --- the offer form --------------------------------------------------------------------------------

def _percent_bp(text: str) -> int | None:
    match = PERCENT_RE.match(text.strip().rstrip("%").strip())
    if match is None:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))


def _day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def _form_input(form, *, merchant: bool) -> dict:
    """Read the offer form into the service's input; what cannot be read is refused next to its field."""
    errors: dict[str, list[str]] = {}
    kind = form.get("kind") or None
    data = {"title": form.get("title", ""), "description": form.get("description", ""),
            "category": form.get("category") or None, "kind": kind,
            "hours_from": form.get("hours_from") or None, "hours_to": form.get("hours_to") or None,
            "eligibility": {"hardship_only": form.get("hardship_only") == "on"},
            "stackable": form.get("stackable") == "on"}
    raw_value = form.get("value", "").strip()
    if kind == OfferKind.PERCENT_OFF.value:
        data["value"] = _percent_bp(raw_value) if raw_value else None
        if raw_value and data["value"] is None:
            errors["value"] = [_("Enter a percentage, such as 12 or 12.5.")]
    else:
        data["value"] = parse_yuan(raw_value) if raw_value else (0 if kind == OfferKind.ENTITLEMENT.value else None)
        if raw_value and data["value"] is None:
            errors["value"] = [_("Enter an amount in yuan, such as 10 or 9.90.")]
    for name, key in (("min_spend", "min_spend"), ("max_discount", "max_discount"), ("budget", "budget_amount")):
        raw = form.get(name, "").strip()
        data[key] = parse_yuan(raw) if raw else (0 if name == "min_spend" else None)
        if raw and data[key] is None:
            errors[name] = [_("Enter an amount in yuan, such as 10 or 9.90.")]
    starts, ends = form.get("starts_on", "").strip(), form.get("ends_on", "").strip()
    data["starts_at"] = data["ends_at"] = None
    if starts:
        day = _day(starts)
        if day is None:
            errors["starts_on"] = [_("Enter a date.")]
        else:
            data["starts_at"] = dt.datetime.combine(day, dt.time(0), BUSINESS_TZ)
    if ends:
        day = _day(ends)
        if day is None:
            errors["ends_on"] = [_("Enter a date.")]
        else:
            # The offer runs through that whole day, in the union's time zone.
            data["ends_at"] = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), BUSINESS_TZ)
    days = [int(d) for d in form.getlist("weekdays") if d in {"1", "2", "3", "4", "5", "6", "7"}]
    data["weekdays"] = sorted(set(days)) or None
    count, amount, period = (form.get("limit_count", "").strip(), form.get("limit_amount", "").strip(),
                             form.get("limit_period") or None)
    data["per_member_limit"] = None
    if count or amount:
        limit = {"count": int(count) if count.isdigit() and len(count) < 7 else None,
                 "amount": parse_yuan(amount) if amount else None, "period": period}
        if (count and limit["count"] is None) or (amount and limit["amount"] is None):
            errors["limit"] = [_("Enter a number of times and an amount in yuan.")]
        data["per_member_limit"] = limit
    if not merchant:
        priority = form.get("priority", "").strip()
        data["priority"] = int(priority) if WHOLE_RE.match(priority) else 0
        if priority and not WHOLE_RE.match(priority):
            errors["priority"] = [_("Enter a whole number.")]
        data["merchant_id"] = form.get("merchant_id", "").strip() or None
        data["merchant_category"] = form.get("merchant_category") or None
        data["funding"] = form.get("funding") or None
        data["program_id"] = form.get("program_id") or None
        data["union_share_bp"] = None
        if data["funding"] == OfferFunding.SPLIT.value:
            data["union_share_bp"] = _percent_bp(form.get("union_share", ""))
            if data["union_share_bp"] is None:
                errors["union_share"] = [_("Enter a percentage, such as 12 or 12.5.")]
        data["eligibility"]["union_ids"] = [u for u in form.getlist("union_ids") if u]
    if errors:
        raise FormRefused(errors)
    return data


def _form_of(offer: Offer) -> MultiDict:
    """Fill the form with an offer's terms."""
    def yuan(fen):
        return "" if fen is None else f"{fen // 100}.{fen % 100:02d}"

    value = percent_text(offer.value).rstrip("%") if offer.kind == OfferKind.PERCENT_OFF else yuan(offer.value)
    share = percent_text(offer.union_share_bp).rstrip("%")
    pairs = [("title", offer.title), ("description", offer.description or ""),
             ("merchant_id", offer.merchant.public_id if offer.merchant else ""),
             ("category", offer.category.value if offer.category else ""),
             ("merchant_category", offer.merchant_category.value if offer.merchant_category else ""),
             ("kind", offer.kind.value), ("value", value),
             ("min_spend", yuan(offer.min_spend) if offer.min_spend else ""),
             ("max_discount", yuan(offer.max_discount)), ("funding", offer.funding.value),
             ("union_share", share if offer.funding == OfferFunding.SPLIT else ""),
             ("program_id", offer.program_id or ""), ("starts_on", _local_day(offer.starts_at)),
             ("ends_on", _local_day(offer.ends_at - dt.timedelta(microseconds=1)) if offer.ends_at else ""),
             ("hours_from", offer.hours_from or ""), ("hours_to", offer.hours_to or ""),
             ("limit_count", str(offer.limit_count or "")), ("limit_amount", yuan(offer.limit_amount)),
             ("limit_period", offer.limit_period.value if offer.limit_period else ""),
             ("budget", yuan(offer.budget_amount)), ("priority", str(offer.priority))]
    pairs += [("weekdays", str(d)) for d in offer.weekdays or []]
    pairs += [("union_ids", u) for u in offer.union_ids or []]
    if offer.hardship_only:
        pairs.append(("hardship_only", "on"))
    if offer.stackable:
        pairs.append(("stackable", "on"))
    return MultiDict(pairs)


def _union_choices(chosen: list[str]) -> list[tuple[str, str]]:
    """The unions an admin may choose: their own subtree (first ones), and those the offer names already."""
    unions = members.list_unions(db.session, current_actor(), parent_id=None, limit=UNIONS_TO_CHOOSE,
                                 cursor=None).items
    choices = [(u.public_id, u.name) for u in unions]
    missing = [u for u in chosen if u not in {c[0] for c in choices}]
    if missing:
        names = _union_names_of(missing)
        choices += [(u, names.get(u, u)) for u in missing]
    return choices


def _form_refusal(exc: DomainError) -> tuple[dict[str, list[str]], int]:
    """Roll back what the form's refused request began; return the errors to show and the status."""
    db.session.rollback()
    return (exc.errors if isinstance(exc, FormRefused) else _field_errors(exc)), exc.status


def _create_from_form(*, merchant: bool, endpoint: str, note: str):
    """Create an offer from the posted form: (a redirect to its page, {}, 200), or (None, errors, status)."""
    try:
        offer = service.create_offer(db.session, current_actor(), _form_input(request.form, merchant=merchant))
    except DomainError as exc:
        return (None, *_form_refusal(exc))
    flash(note, "info")
    return redirect(url_for(endpoint, offer_id=offer.public_id)), {}, 200


def _render_form(template_args: dict, errors: dict, status: int):
    args = {"errors": errors, "families": list(OfferCategory), "kinds": list(OfferKind),
            "fundings": list(OfferFunding), "periods": list(LimitPeriod), "trades": list(MerchantCategory),
            "weekdays": WEEKDAY_LABELS} | template_args
    if not args.get("merchant_form"):
        form = args["form"]
        args |= {"merchants": service.merchant_choices(db.session),
                 "programs": service.program_choices(db.session, current_actor()),
                 "unions": _union_choices(form.getlist("union_ids"))}
    return render_template("benefits/offer_form.html", **args), status


# --- the union's console ---------------------------------------------------------------------------

@bp.route("/console/offers/")
@page_roles(*CONSOLE_READERS)
def console():
    """The union's offers: every status, proposals to review first in their own tab, with search."""
    args = request.args
    status = args.get("status") if args.get("status") in {s.value for s in OfferStatus} else None
    q = (args.get("q") or "").strip()[:100] or None
    try:
        page = service.list_offers(db.session, current_actor(), status=OfferStatus(status) if status else None,
                                   q=q, limit=CONSOLE_PAGE, cursor=args.get("cursor") or None, newest_first=True)
    except DomainError:
        page = service.Page([], None)
    return render_template("benefits/console.html", page=page, status=status, q=q or "",
                           statuses=list(OfferStatus))


@bp.route("/console/offers/new", methods=["GET", "POST"])
@page_roles(ADMIN)
def new_offer():
    """Write a new offer: it is saved as a draft, to publish from its page."""
    errors, status = {}, 200
    if request.method == "POST":
        saved, errors, status = _create_from_form(merchant=False, endpoint="benefits_pages.console_offer",
                                                  note=_("Draft saved. Publish it when it is ready."))
        if saved is not None:
            return saved
    form = request.form if request.method == "POST" else MultiDict()
    return _render_form({"form": form, "offer": None, "merchant_form": False,
                         "action": url_for("benefits_pages.new_offer")}, errors, status)


def _console_offer(offer_id: str) -> Offer:
    return service.get_offer(db.session, current_actor(), offer_id)


@bp.route("/console/offers/<offer_id>")
@page_roles(*CONSOLE_READERS)
def console_offer(offer_id):
    """One offer version: its terms, its versions, and what may be done with it."""
    actor = current_actor()
    offer = _console_offer(offer_id)
    versions = service.lineage_versions(db.session, actor, offer)
    pending = next((v for v in versions if v.status in service.EDITABLE and v.id != offer.id
                    and offer.status == OfferStatus.PUBLISHED), None)
    root = members.scope_root(db.session, actor)
    return render_template("benefits/console_offer.html", offer=offer, versions=versions, pending=pending,
                           scoped=root is not None, union_names=_union_names(versions),
                           merchant=offer.merchant)


@bp.route("/console/offers/<offer_id>/edit", methods=["GET", "POST"])
@page_roles(ADMIN)
def edit_offer(offer_id):
    """Change an offer; a published one gets a new draft version that replaces it once published."""
    actor = current_actor()
    offer = service.get_managed_offer(db.session, actor, offer_id)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            edited = service.update_offer(db.session, actor, offer_id, _form_input(request.form, merchant=False))
        except DomainError as exc:
            if exc.status == 404:
                raise
            errors, status = _form_refusal(exc)
            offer = service.get_offer(db.session, actor, offer_id)
        else:
            flash(_("A new version is saved as a draft: the published one applies until you publish it.")
                  if edited.id != offer.id else _("Saved."), "info")
            return redirect(url_for("benefits_pages.console_offer", offer_id=edited.public_id))
    form = request.form if request.method == "POST" else _form_of(offer)
    return _render_form({"form": form, "offer": offer, "merchant_form": False,
                         "action": url_for("benefits_pages.edit_offer", offer_id=offer_id)}, errors, status)


@bp.route("/console/offers/<offer_id>/<any(publish, reject, withdraw):action>", methods=["POST"])
@page_roles(ADMIN)
def decide(offer_id, action):
    """Publish, reject (saying why) or withdraw an offer."""
    actor = current_actor()
    comment = request.form.get("comment", "")
    try:
        if action == "publish":
            service.publish(db.session, actor, offer_id)
            flash(_("Published: the offer applies at checkout from now on."), "info")
        elif action == "reject":
            service.reject(db.session, actor, offer_id, comment)
            flash(_("The proposal is rejected; the merchant sees why."), "info")
        else:
            service.withdraw(db.session, actor, offer_id, comment)
            flash(_("Withdrawn: the offer no longer applies."), "info")
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        flash(_explain(exc), "error")
    return redirect(url_for("benefits_pages.console_offer", offer_id=offer_id))


# --- the merchant's own offers ---------------------------------------------------------------------

def _own_offer(offer_id: str) -> Offer:
    """Return one of the signed-in merchant's own offers, or raise NotFound."""
    actor = current_actor()
    offer = service.get_offer(db.session, actor, offer_id)
    if offer.merchant_id != actor.merchant_id:
        raise NotFound(service.MSG_NOT_FOUND)
    return offer


@bp.route("/merchant/offers/")
@page_roles(*MERCHANT_STAFF)
def merchant_offers():
    """The merchant's offers and proposals, with the union's answer to each."""
    actor = current_actor()
    merchant = db.session.get(Merchant, actor.merchant_id)
    page = service.list_offers(db.session, actor, merchant_id=merchant.public_id, limit=CONSOLE_PAGE,
                               cursor=request.args.get("cursor") or None, newest_first=True)
    return render_template("benefits/merchant_offers.html", page=page, merchant=merchant)


@bp.route("/merchant/offers/new", methods=["GET", "POST"])
@page_roles(OWNER)
def merchant_new_offer():
    """Write an offer the merchant gives members; it is proposed to the union from its page."""
    errors, status = {}, 200
    if request.method == "POST":
        saved, errors, status = _create_from_form(merchant=True, endpoint="benefits_pages.merchant_offer",
                                                  note=_("Draft saved. Propose it to the union when it is ready."))
        if saved is not None:
            return saved
    merchant = db.session.get(Merchant, current_actor().merchant_id)
    form = request.form if request.method == "POST" else MultiDict(
        [("category", FAMILY_OF_MERCHANT_CATEGORY[merchant.category].value)])
    return _render_form({"form": form, "offer": None, "merchant_form": True,
                         "action": url_for("benefits_pages.merchant_new_offer")}, errors, status)


@bp.route("/merchant/offers/<offer_id>")
@page_roles(*MERCHANT_STAFF)
def merchant_offer(offer_id):
    """One of the merchant's offers: its terms, where it stands, and (the owner) edit or propose it."""
    offer = _own_offer(offer_id)
    versions = service.lineage_versions(db.session, current_actor(), offer)
    return render_template("benefits/merchant_offer.html", offer=offer, versions=versions,
                           union_names=_union_names([offer]))


@bp.route("/merchant/offers/<offer_id>/edit", methods=["GET", "POST"])
@page_roles(OWNER)
def merchant_edit_offer(offer_id):
    """Change the merchant's offer; a published one gets a new version to propose."""
    actor = current_actor()
    offer = _own_offer(offer_id)
    errors, status = {}, 200
    if request.method == "POST":
        try:
            edited = service.update_offer(db.session, actor, offer_id, _form_input(request.form, merchant=True))
        except DomainError as exc:
            if exc.status == 404:
                raise
            errors, status = _form_refusal(exc)
            offer = _own_offer(offer_id)
        else:
            flash(_("Saved. Propose it to the union when it is ready."), "info")
            return redirect(url_for("benefits_pages.merchant_offer", offer_id=edited.public_id))
    form = request.form if request.method == "POST" else _form_of(offer)
    return _render_form({"form": form, "offer": offer, "merchant_form": True,
                         "action": url_for("benefits_pages.merchant_edit_offer", offer_id=offer_id)}, errors, status)


@bp.route("/merchant/offers/<offer_id>/propose", methods=["POST"])
@page_roles(OWNER)
def merchant_propose(offer_id):
    """Send the offer to the union for review."""
    _own_offer(offer_id)
    try:
        service.propose(db.session, current_actor(), offer_id)
        flash(_("Proposed. The union reviews it and publishes it or tells you why not."), "info")
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        flash(_explain(exc), "error")
    return redirect(url_for("benefits_pages.merchant_offer", offer_id=offer_id))
