"""Merchant pages: the public directory, the application portal, the reviewer queue, and the merchant's
own dashboard (a store's pay page and the till are the checkout's)."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user

from core import qr
from core.db import db
from core.errors import DomainError, NotFound, ValidationFailed
from core.i18n import N_, say
from core.models import Role
from core.web import current_actor, field_cipher, page_roles
from merchants import service
from merchants.models import ApplicationStatus, Merchant, MerchantCategory, MerchantStatus

bp = Blueprint("merchants_pages", __name__, template_folder="templates")
# The service's sentences people meet on these pages, so they read in the page's language.
SERVICE_MESSAGES = (
    N_("Some fields are invalid."),
    N_("Use 3-64 characters: letters, digits, and _ . @ -"),
    N_("Use at most 256 characters."),
    N_("Use more different characters."),
    N_("That username is taken."),
    N_("A mainland mobile number has 11 digits and starts with 13-19."),
    N_("Give the business name."),
    N_("A unified social credit code has 18 characters."),
    N_("The first character is not a registration authority code."),
    N_("Characters 3-8 must be the 6-digit region code."),
    N_("The check character is wrong (mistyped?)."),
    N_("A region is a 6-digit administrative division code, e.g. 640100."),
    N_("The region code does not start with a valid province code."),
    N_("A bank account number has 8-32 digits."),
    N_("Required before the application can be submitted."),
    N_("Name at least one store."),
    N_("Give the bank name, account name and account number."),
    N_("Upload the business licence."),
    N_("The application is not complete yet."),
    N_("Upload the licence as a PDF, PNG or JPEG file."),
    N_("A partner merchant with this credit code already exists."),
    N_("You already have an application with the reviewers; one account applies for one merchant."),
    N_("The application is decided; the conversation is closed."),
    N_("Write something."),
    N_("Tell the applicant why."),
    N_("The applicant's account already runs a merchant."),
    N_("Say why."),
    N_("The merchant is terminated."),
)
# Sentences with figures in them: the pattern, the sentence to say instead, and the names of its figures.
NUMBERED_MESSAGES = (
    (re.compile(r"^Use at least (\d+) characters\.$"), N_("Use at least %(count)s characters."), ("count",)),
    (re.compile(r"^At most (\d+) stores per application\.$"), N_("At most %(count)s stores per application."),
     ("count",)),
    (re.compile(r"^At most (\d+) proposed offers\.$"), N_("At most %(count)s proposed offers."), ("count",)),
    (re.compile(r"^A licence file may be at most (\d+) MiB\.$"), N_("A licence file may be at most %(size)s MiB."),
     ("size",)),
    (re.compile(r"^The code may not contain (.+) \(I, O, S, V and Z are never used\)\.$"),
     N_("The code may not contain %(chars)s (I, O, S, V and Z are never used)."), ("chars",)),
)
CITIES = [("640100", "银川市"), ("640200", "石嘴山市"), ("640300", "吴忠市"), ("640400", "固原市"), ("640500", "中卫市")]


@bp.app_context_processor
def _city_names():
    def city_name(region: str | None) -> str:
        """Name the city a region code lies in, or show the code."""
        if not region:
            return "—"
        return next((name for code, name in CITIES if region.startswith(code[:4])), region)

    return {"city_name": city_name}


@bp.route("/merchants/")
def directory():
    """List active partner merchants with filters."""
    args = request.args
    try:
        category = MerchantCategory(args["category"]) if args.get("category") else None
        page = service.list_directory(db.session, category=category, region=args.get("region") or None,
                                      q=args.get("q") or None, limit=30, cursor=args.get("cursor") or None)
    except (ValueError, DomainError):
        page = service.Page([], None)
    return render_template("merchants/directory.html", page=page, args=args, categories=list(MerchantCategory),
                           cities=CITIES)


@bp.route("/merchants/<merchant_id>")
def merchant_page(merchant_id):
    """Show one active merchant and its stores."""
    return render_template("merchants/merchant.html", merchant=service.get_public_merchant(db.session, merchant_id))


def _say(message: str) -> str:
    """Translate one of the service's sentences when it is a known one."""
    return say(message, SERVICE_MESSAGES, NUMBERED_MESSAGES)


def _field_errors(exc: DomainError, field: str) -> dict[str, list[str]]:
    """The refusal's messages by form field, in the page's language (the whole message under `field`)."""
    return {name: [_say(t) for t in texts] for name, texts in exc.errors.items()} if exc.errors \
        else {field: [_say(exc.message)]}


def _explain(exc: DomainError) -> str:
    """Say what was wrong: the field messages when there are any, else the error's message."""
    return "; ".join(t for texts in _field_errors(exc, "_").values() for t in texts)


# --- the applicant portal --------------------------------------------------------------------

def _form_input(form) -> service.ApplicationInput:
    """Read the application form into service input (empty fields are left unset)."""
    def text(name):
        value = form.get(name, "").strip()
        return value or None

    stores = []
    for name, address, hours in zip(form.getlist("store_name"), form.getlist("store_address"),
                                    form.getlist("store_hours")):
        if name.strip():
            stores.append({"name": name.strip()[:100], "address": address.strip()[:200] or None,
                           "opening_hours": hours.strip()[:100] or None})
    offers = [{"title": t.strip()[:100]} for t in form.getlist("offer_title") if t.strip()][:service.MAX_OFFERS]
    settlement = None
    method = form.get("settlement_method")
    if method == "stripe":
        settlement = {"method": "stripe"}
    elif method == "bank":
        settlement = {"method": "bank", "bank_name": form.get("bank_name", ""),
                      "account_name": form.get("bank_account_name", ""),
                      "account_number": form.get("bank_account_number", "")}
        if not any(value.strip() for key, value in settlement.items() if key != "method"):
            settlement = {"method": "bank"} if form.get("settlement_method") else None
    category = form.get("category") or None
    if category and category not in {c.value for c in MerchantCategory}:
        raise ValidationFailed({"category": [_("Choose a category from the list.")]})
    return service.ApplicationInput(
        name=text("name"), uscc=text("uscc"), legal_representative=text("legal_representative"),
        contact_phone=text("contact_phone"), category=MerchantCategory(category) if category else None,
        region=text("region"), address=text("address"), stores=stores or None, proposed_offers=offers or None,
        settlement=settlement)


def _shown_rows(form, app) -> tuple[list[dict], list[dict]]:
    """The store and offer rows the form shows, each list with an empty row to add one more: as just typed
    when a save was refused, else as saved."""
    if "store_name" in form or "offer_title" in form:
        typed = zip(form.getlist("store_name"), form.getlist("store_address"), form.getlist("store_hours"))
        stores = [{"name": name, "address": address, "opening_hours": hours} for name, address, hours in typed
                  if (name + address + hours).strip()]
        offers = [{"title": title} for title in form.getlist("offer_title") if title.strip()]
    else:
        stores = list(app.stores or []) if app else []
        offers = list(app.proposed_offers or []) if app else []
    return stores + [{}], offers + [{}]


@bp.route("/apply/", methods=["GET", "POST"])
def signup():
    """Sign a business up for an applicant account, then go to the application form."""
    if current_user.is_authenticated and current_user.role == Role.APPLICANT:
        return redirect(url_for("merchants_pages.portal"))
    errors = {}
    if request.method == "POST":
        try:
            user = service.register_applicant(db.session, field_cipher(), username=request.form.get("username", ""),
                                              password=request.form.get("password", ""),
                                              phone=request.form.get("phone", ""),
                                              display_name=request.form.get("display_name", ""))
        except DomainError as exc:
            db.session.rollback()
            errors = _field_errors(exc, "username")
        else:
            login_user(user)
            return redirect(url_for("merchants_pages.portal"))
    return render_template("merchants/signup.html", errors=errors, form=request.form), 422 if errors else 200


@bp.route("/portal/")
@page_roles(Role.APPLICANT, Role.MERCHANT_OWNER)
def portal():
    """The applicant's own applications."""
    page = service.list_applications(db.session, current_actor(), limit=50, cursor=None)
    return render_template("merchants/portal.html", applications=page.items)


@bp.route("/portal/applications/new", methods=["GET", "POST"])
@page_roles(Role.APPLICANT)
def new_application():
    """Start an application; a partial form is saved as a draft."""
    errors = {}
    if request.method == "POST":
        try:
            app = service.create_application(db.session, field_cipher(), current_actor(), _form_input(request.form))
        except DomainError as exc:
            db.session.rollback()
            errors = _field_errors(exc, "name")
        else:
            flash(_("Draft saved. Upload the licence and submit when complete."), "info")
            return redirect(url_for("merchants_pages.application", application_id=app.public_id))
    return render_template("merchants/application_form.html", app=None, errors=errors, form=request.form,
                           rows=_shown_rows(request.form, None), categories=list(MerchantCategory),
                           cities=CITIES), 422 if errors else 200


@bp.route("/portal/applications/<application_id>", methods=["GET", "POST"])
@page_roles(Role.APPLICANT, Role.MERCHANT_OWNER)
def application(application_id):
    """Show an application; while it is a draft (or sent back) edit it, upload the licence, submit."""
    actor = current_actor()
    app = service.get_application(db.session, actor, application_id)
    if app.applicant_id != actor.user_id:
        raise NotFound("No such application.")
    errors = {}
    if request.method == "POST":
        action = request.form.get("action", "save")
        try:
            if action == "comment":
                service.comment_on_application(db.session, actor, application_id, request.form.get("comment", ""))
            elif action == "upload":
                upload = request.files.get("file")
                if upload is None or not upload.filename:
                    raise ValidationFailed({"file": [_("Choose the licence file.")]})
                service.add_document(db.session, actor, application_id, upload.stream, upload.filename,
                                     current_app.config["UPLOAD_FOLDER"],
                                     max_bytes=current_app.config["MAX_LICENCE_BYTES"])
                flash(_("Licence uploaded."), "info")
            else:
                service.update_application(db.session, field_cipher(), actor, application_id,
                                           _form_input(request.form))
                if action == "submit":
                    service.submit_application(db.session, actor, application_id)
                    flash(_("Submitted. The union will review your application."), "info")
                else:
                    flash(_("Draft saved."), "info")
            return redirect(url_for("merchants_pages.application", application_id=application_id))
        except DomainError as exc:
            db.session.rollback()
            errors = _field_errors(exc, "_")
            flash(_say(exc.message), "error")
            app = service.get_application(db.session, actor, application_id)
    return render_template("merchants/application_form.html", app=app, errors=errors, form=request.form,
                           rows=_shown_rows(request.form, app), categories=list(MerchantCategory),
                           cities=CITIES), 422 if errors else 200


@bp.route("/applications/<application_id>/documents/<document_id>")
@page_roles(Role.APPLICANT, Role.MERCHANT_OWNER, Role.MERCHANT_REVIEWER)
def document(application_id, document_id):
    """Download a licence (its applicant and reviewers only)."""
    doc, path = service.document_path(db.session, current_actor(), application_id, document_id,
                                      current_app.config["UPLOAD_FOLDER"])
    return send_file(path, mimetype=doc.content_type, as_attachment=True, download_name=doc.filename)


# --- the reviewer's queue --------------------------------------------------------------------

@bp.route("/review/")
@page_roles(Role.MERCHANT_REVIEWER)
def review_queue():
    """The reviewer's queue: waiting applications first, with filters."""
    args = request.args
    try:
        status = ApplicationStatus(args["status"]) if args.get("status") else None
        category = MerchantCategory(args["category"]) if args.get("category") else None
        page = service.list_applications(db.session, current_actor(), status=status, category=category,
                                         region=args.get("region") or None, q=args.get("q") or None,
                                         limit=50, cursor=args.get("cursor") or None)
    except (ValueError, DomainError):
        page = service.Page([], None)
    return render_template("merchants/review_queue.html", page=page, args=args, statuses=list(ApplicationStatus),
                           categories=list(MerchantCategory), cities=CITIES)


@bp.route("/review/<application_id>", methods=["GET", "POST"])
@page_roles(Role.MERCHANT_REVIEWER)
def review(application_id):
    """Review one application: read it, open the licence, comment, decide."""
    actor = current_actor()
    app = service.get_application(db.session, actor, application_id)
    if request.method == "POST":
        action, comment = request.form.get("action"), request.form.get("comment", "")
        try:
            if action == "approve":
                from merchants.api import connect

                service.approve_application(db.session, actor, application_id, comment=comment, connect=connect())
            elif action == "reject":
                service.reject_application(db.session, actor, application_id, comment)
            elif action == "request_changes":
                service.request_changes(db.session, actor, application_id, comment)
            elif action == "start_review":
                service.start_review(db.session, actor, application_id)
            else:
                service.comment_on_application(db.session, actor, application_id, comment)
            flash(_("Done."), "info")
            return redirect(url_for("merchants_pages.review", application_id=application_id))
        except DomainError as exc:
            db.session.rollback()
            flash(_explain(exc), "error")
            app = service.get_application(db.session, actor, application_id)
    return render_template("merchants/review.html", app=app, twins=service.same_code_applications(db.session, app))


# --- the merchant's own pages ----------------------------------------------------------------

@bp.route("/merchant/stores/<store_id>/poster")
@page_roles(Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER)
def poster(store_id):
    """A printable poster with the store's QR code, and a smaller EMVCo one for bank apps."""
    store = service.get_store(db.session, current_actor(), store_id)
    from merchants.api import store_emvco_payload, store_pay_url

    svg = emvco_svg = None
    if store.accepts_cards():
        svg = qr.svg(store_pay_url(store.public_id)).decode()
        emvco_svg = qr.svg(store_emvco_payload(store)).decode()
    return render_template("merchants/poster.html", store=store, qr_svg=svg, emvco_svg=emvco_svg)


@bp.route("/review/merchants/", methods=["GET", "POST"])
@page_roles(Role.MERCHANT_REVIEWER, Role.UNION_ADMIN)
def merchant_admin():
    """Union staff's list of partner merchants: suspend, terminate, reinstate; agreements due for renewal."""
    actor = current_actor()
    if request.method == "POST":
        try:
            service.change_merchant_status(db.session, actor, request.form.get("merchant_id", ""),
                                           request.form.get("action", ""), request.form.get("reason", ""))
            flash(_("Done."), "info")
        except DomainError as exc:
            db.session.rollback()
            flash(_explain(exc), "error")
        except KeyError:
            flash(_("Choose an action."), "error")
        return redirect(url_for("merchants_pages.merchant_admin", status=request.args.get("status", "")))
    status = request.args.get("status") or None
    wanted = MerchantStatus(status) if status in {s.value for s in MerchantStatus} else None
    try:
        page = service.list_merchants(db.session, actor, status=wanted, limit=100,
                                      cursor=request.args.get("cursor") or None)
    except DomainError:
        page = service.Page([], None)
    return render_template("merchants/merchant_admin.html", page=page, status=status,
                           statuses=list(MerchantStatus), renewals=service.agreements_due(db.session, actor))


@bp.route("/merchant/staff/new", methods=["GET", "POST"])
@page_roles(Role.MERCHANT_OWNER)
def new_staff():
    """Give a cashier or a manager an account at the owner's merchant."""
    actor = current_actor()
    merchant = db.session.get(Merchant, actor.merchant_id)
    errors: dict[str, list[str]] = {}
    form = request.form
    if request.method == "POST":
        role = form.get("role", "")
        if role not in service.STAFF_ROLES:
            errors["role"] = [_("Choose cashier or manager.")]
        else:
            try:
                user = service.add_staff(db.session, actor, merchant.public_id, username=form.get("username", ""),
                                         password=form.get("password", ""), role=role,
                                         display_name=form.get("display_name", "").strip()[:100])
            except DomainError as exc:
                db.session.rollback()
                errors = _field_errors(exc, "username" if exc.code == "username_taken" else "_")
            else:
                flash(_("%(name)s can now sign in as %(username)s.", name=user.display_name,
                        username=user.username), "info")
                return redirect(url_for("settlement_pages.merchant_dashboard", _anchor="staff"))
    return render_template("merchants/staff_form.html", merchant=merchant, errors=errors, form=form,
                           roles=list(service.STAFF_ROLES)), 422 if errors else 200
