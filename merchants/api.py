"""JSON endpoints for applicants, reviewers, merchants and the public directory."""

from __future__ import annotations

from urllib.parse import quote

from flask import current_app, request, send_file
from marshmallow import Schema, fields, validate

from core import emvco, qr
from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.errors import TooManyAttempts
from core.models import Role
from core.web import client_ip, current_actor, field_cipher, public
from merchants import schemas as s
from merchants import service

blp = Blueprint("merchants_api", __name__, url_prefix="/api/v1",
                description="Merchant applications and review, merchants, stores, staff, directory")
REVIEWER = Role.MERCHANT_REVIEWER
ADMINS = (Role.MERCHANT_REVIEWER, Role.UNION_ADMIN)
OWNER = Role.MERCHANT_OWNER
STAFF = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER)
SIGNUPS_PER_HOUR = 20


def connect():
    """Return the configured Stripe Connect provider."""
    from merchants.connect import connect_provider

    return connect_provider(current_app.config)


def _input(body: dict) -> service.ApplicationInput:
    return service.ApplicationInput(**body)


@blp.route("/applicants", methods=["POST"])
@public
@blp.arguments(s.ApplicantSignupSchema)
@blp.response(201, s.ApplicantSchema)
@blp.alt_response(409, schema=ApiErrorSchema, description="The username is taken")
@blp.alt_response(429, schema=ApiErrorSchema, description="Too many sign-ups from this address")
def sign_up(body):
    """Sign up a merchant applicant account (then sign in at POST /auth/tokens and apply)."""
    store = current_app.extensions["kv"]
    if store.incr(f"signup:{client_ip()}", 3600) > SIGNUPS_PER_HOUR:
        raise TooManyAttempts(store.ttl(f"signup:{client_ip()}"), "Too many sign-ups from this address.")
    return service.register_applicant(db.session, field_cipher(), **body)


@blp.route("/merchant-applications", methods=["POST"])
@blp.auth(Role.APPLICANT)
@blp.arguments(s.ApplicationInputSchema)
@blp.response(201, s.ApplicationSchema)
def create_application(body):
    """Start an application (a draft: save partial work, then submit)."""
    return service.create_application(db.session, field_cipher(), current_actor(), _input(body))


@blp.route("/merchant-applications", methods=["GET"])
@blp.auth(Role.APPLICANT, Role.MERCHANT_OWNER, REVIEWER)
@blp.arguments(s.ApplicationQuery, location="query")
@blp.response(200, s.ApplicationPage)
def list_applications(args):
    """List your applications, or (reviewers) the review queue with filters."""
    page = service.list_applications(db.session, current_actor(), **args)
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/merchant-applications/<application_id>", methods=["GET"])
@blp.auth(Role.APPLICANT, Role.MERCHANT_OWNER, REVIEWER)
@blp.response(200, s.ApplicationSchema)
def get_application(application_id):
    """Return one application (its applicant or a reviewer)."""
    return service.get_application(db.session, current_actor(), application_id)


@blp.route("/merchant-applications/<application_id>", methods=["PATCH"])
@blp.auth(Role.APPLICANT)
@blp.arguments(s.ApplicationUpdateSchema)
@blp.response(200, s.ApplicationSchema)
def update_application(body, application_id):
    """Change a draft, or an application sent back for changes."""
    return service.update_application(db.session, field_cipher(), current_actor(), application_id, _input(body))


@blp.route("/merchant-applications/<application_id>/documents", methods=["POST"])
@blp.auth(Role.APPLICANT)
@blp.arguments(s.UploadSchema, location="files")
@blp.response(201, s.DocumentSchema)
def upload_document(files, application_id):
    """Upload the business licence: PDF, PNG or JPEG (checked by content), at most 10 MiB."""
    upload = files["file"]
    return service.add_document(db.session, current_actor(), application_id, upload.stream, upload.filename,
                                current_app.config["UPLOAD_FOLDER"], max_bytes=current_app.config["MAX_LICENCE_BYTES"])


@blp.route("/merchant-applications/<application_id>/documents/<document_id>", methods=["GET"])
@blp.auth(Role.APPLICANT, Role.MERCHANT_OWNER, REVIEWER)
@blp.response(200, description="The file")
def download_document(application_id, document_id):
    """Download a licence (its applicant and reviewers only)."""
    doc, path = service.document_path(db.session, current_actor(), application_id, document_id,
                                      current_app.config["UPLOAD_FOLDER"])
    return send_file(path, mimetype=doc.content_type, as_attachment=True, download_name=doc.filename)


def _action(name: str, roles: tuple, schema, doc: str, call):
    """Register POST /merchant-applications/{id}/<name>."""

    def view(body, application_id):
        return call(current_actor(), application_id, body)

    view.__name__ = f"application_{name.replace('-', '_')}"
    view.__doc__ = doc
    blp.route(f"/merchant-applications/<application_id>/{name}", methods=["POST"])(
        blp.auth(*roles)(blp.arguments(schema)(blp.response(200, s.ApplicationSchema)(view))))


class EmptySchema(s.StrictSchema):
    pass


_action("submit", (Role.APPLICANT,), EmptySchema, "Send the application to the reviewers (draft or changed).",
        lambda actor, app_id, body: service.submit_application(db.session, actor, app_id))
_action("review", (REVIEWER,), s.DecisionSchema, "Take a submitted application into review.",
        lambda actor, app_id, body: service.start_review(db.session, actor, app_id))
_action("reject", (REVIEWER,), s.DecisionSchema, "Turn the application down; `comment` says why.",
        lambda actor, app_id, body: service.reject_application(db.session, actor, app_id, body.get("comment") or ""))
_action("request-changes", (REVIEWER,), s.DecisionSchema, "Send the application back; `comment` says what to change.",
        lambda actor, app_id, body: service.request_changes(db.session, actor, app_id, body.get("comment") or ""))


@blp.route("/merchant-applications/<application_id>/approve", methods=["POST"])
@blp.auth(REVIEWER)
@blp.arguments(s.DecisionSchema)
@blp.response(200, s.ApplicationSchema)
def approve(body, application_id):
    """Approve: creates the merchant (`merchant_id` in the answer); the applicant becomes its owner."""
    service.approve_application(db.session, current_actor(), application_id, comment=body.get("comment"),
                                connect=connect())
    return service.get_application(db.session, current_actor(), application_id)


@blp.route("/merchant-applications/<application_id>/comments", methods=["POST"])
@blp.auth(Role.APPLICANT, REVIEWER)
@blp.arguments(s.CommentInputSchema)
@blp.response(201, s.CommentSchema)
def add_comment(body, application_id):
    """Write to the other side of the review."""
    return service.comment_on_application(db.session, current_actor(), application_id, body["comment"])


@blp.route("/merchants", methods=["GET"])
@public
@blp.arguments(s.DirectoryQuery, location="query")
@blp.response(200, s.DirectoryPage)
def directory(args):
    """The public directory of active partner merchants: `category`, `region`, `q` (text)."""
    page = service.list_directory(db.session, **args)
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/merchants/<merchant_id>", methods=["GET"])
@public
@blp.response(200, s.MerchantPublicSchema)
def public_merchant(merchant_id):
    """One active merchant as the directory shows it."""
    return service.get_public_merchant(db.session, merchant_id)


@blp.route("/merchants/<merchant_id>/account", methods=["GET"])
@blp.auth(*STAFF, *ADMINS, Role.AUDITOR)
@blp.response(200, s.MerchantSchema)
def merchant_account(merchant_id):
    """The merchant's full record, for its own staff and union staff."""
    return service.get_merchant(db.session, current_actor(), merchant_id)


for _name in ("suspend", "terminate", "reinstate"):
    def _status_view(body, merchant_id, _action_name=_name):
        return service.change_merchant_status(db.session, current_actor(), merchant_id, _action_name, body["reason"])

    _status_view.__name__ = f"merchant_{_name}"
    _status_view.__doc__ = {"suspend": "Suspend: QR codes and offers stop at once; what is owed is still settled.",
                            "terminate": "End the partnership for good (what is owed is still settled).",
                            "reinstate": "Lift a suspension."}[_name]
    blp.route(f"/merchants/<merchant_id>/{_name}", methods=["POST"])(
        blp.auth(*ADMINS)(blp.arguments(s.StatusChangeSchema)(blp.response(200, s.MerchantSchema)(_status_view))))


@blp.route("/merchants/<merchant_id>/stores", methods=["POST"])
@blp.auth(OWNER)
@blp.arguments(s.StoreInputSchema)
@blp.response(201, s.StoreSchema)
def add_store(body, merchant_id):
    """Open a store (the owner)."""
    return service.add_store(db.session, current_actor(), merchant_id, body)


@blp.route("/merchants/<merchant_id>/stores", methods=["GET"])
@blp.auth(*STAFF, *ADMINS, Role.AUDITOR)
@blp.response(200, s.StoreSchema(many=True))
def list_stores(merchant_id):
    """The merchant's stores."""
    return service.get_merchant(db.session, current_actor(), merchant_id).stores


@blp.route("/stores/<store_id>", methods=["PATCH"])
@blp.auth(OWNER, Role.MERCHANT_MANAGER)
@blp.arguments(s.StoreUpdateSchema)
@blp.response(200, s.StoreSchema)
def update_store(body, store_id):
    """Change a store, or close/open it."""
    return service.update_store(db.session, current_actor(), store_id, body)


def store_pay_url(store_public_id: str) -> str:
    """Return the pay-page URL a store's QR code encodes."""
    base = current_app.config.get("PUBLIC_BASE_URL") or request.url_root
    # A fixed path, not a view's URL: it is printed on posters, and the pay page is the checkout's.
    return base.rstrip("/") + "/pay/" + quote(store_public_id, safe="")


def store_emvco_payload(store) -> str:
    """Return the EMVCo merchant-presented payload of a store, for bank apps that read those codes."""
    return emvco.merchant_presented_payload(store_public_id=store.public_id, merchant_name=store.merchant.name,
                                            category=store.effective_category, region=store.merchant.region,
                                            pay_url=store_pay_url(store.public_id))


class StoreQrQuery(Schema):
    variant = fields.Str(load_default="url", validate=validate.OneOf(("url", "emvco")),
                         metadata={"description": "`url`: the pay-page URL (default); "
                                                  "`emvco`: an EMVCo merchant-presented payload for bank apps"})


class StoreEmvcoSchema(Schema):
    store_id = fields.Str()
    payload = fields.Str()
    crc = fields.Str()


def _usable_store(store_id: str):
    """Return a store the caller may manage and whose QR code works now (404 if not theirs, 409 if off)."""
    service.get_store(db.session, current_actor(), store_id)
    return service.usable_store(db.session, store_id)


@blp.route("/stores/<store_id>/qr.<any(svg, png):fmt>", methods=["GET"])
@blp.auth(*STAFF, *ADMINS)
@blp.arguments(StoreQrQuery, location="query")
@blp.response(200, description="The store's QR code image")
def store_qr(args, store_id, fmt):
    """The store's static QR code (its pay page, or `variant=emvco`); refused while it takes no cards."""
    store = _usable_store(store_id)
    payload = store_emvco_payload(store) if args["variant"] == "emvco" else store_pay_url(store.public_id)
    data, mimetype = (qr.svg(payload), "image/svg+xml") if fmt == "svg" else (qr.png(payload), "image/png")
    return current_app.response_class(data, mimetype=mimetype, headers={"Cache-Control": "no-store"})


@blp.route("/stores/<store_id>/emvco", methods=["GET"])
@blp.auth(*STAFF, *ADMINS)
@blp.response(200, StoreEmvcoSchema)
def store_emvco(store_id):
    """The store's EMVCo merchant-presented payload and its CRC; refused while it takes no cards."""
    store = _usable_store(store_id)
    payload = store_emvco_payload(store)
    return {"store_id": store.public_id, "payload": payload, "crc": payload[-4:]}


@blp.route("/merchants/<merchant_id>/staff", methods=["POST"])
@blp.auth(OWNER)
@blp.arguments(s.StaffInputSchema)
@blp.response(201, s.StaffSchema)
def add_staff(body, merchant_id):
    """Give a manager or a cashier an account (the owner)."""
    return service.add_staff(db.session, current_actor(), merchant_id, **body)


@blp.route("/merchants/<merchant_id>/staff", methods=["GET"])
@blp.auth(OWNER, Role.MERCHANT_MANAGER, *ADMINS, Role.AUDITOR)
@blp.response(200, s.StaffSchema(many=True))
def list_staff(merchant_id):
    """The merchant's staff accounts."""
    return service.list_staff(db.session, current_actor(), merchant_id)


@blp.route("/merchants/<merchant_id>/staff/<user_id>", methods=["DELETE"])
@blp.auth(OWNER)
@blp.response(204)
def remove_staff(merchant_id, user_id):
    """Switch a staff account off (the owner)."""
    service.deactivate_staff(db.session, current_actor(), merchant_id, user_id)


@blp.route("/merchants/<merchant_id>/stripe/onboarding-link", methods=["POST"])
@blp.auth(OWNER)
@blp.response(201, s.LinkSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="The merchant is settled by bank transfer, not Stripe")
def stripe_onboarding(merchant_id):
    """A Stripe link where the owner finishes the Connect account for payouts."""
    here = request.url_root.rstrip("/")
    url = service.onboarding_link(db.session, current_actor(), merchant_id, connect(),
                                  refresh_url=f"{here}/merchant/", return_url=f"{here}/merchant/")
    return {"url": url}


@blp.route("/agreements/renewals", methods=["GET"])
@blp.auth(*ADMINS, Role.AUDITOR)
@blp.arguments(s.RenewalQuery, location="query")
@blp.response(200, s.RenewalSchema(many=True))
def renewals(args):
    """Agreements of live merchants whose term ends within `within_days` (default 60)."""
    return service.agreements_due(db.session, current_actor(), within_days=args["within_days"])
