"""Merchant use cases: applicant sign-up, applications and their review, merchants, stores, staff."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit
from core.auth import SYSTEM, Actor, create_user
from core.crypto import FieldCipher, mask_account_number, mask_phone
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from core.models import MERCHANT_ROLES, Role, User
from core.pagination import Page, paginate
from members.validators import InvalidValue, region_prefix, validate_phone, validate_region
from merchants.models import (Agreement, ApplicationComment, ApplicationDocument, ApplicationStatus, Merchant,
                              MerchantApplication, MerchantCategory, MerchantStatus, SettlementMethod, Store,
                              StoreStatus)
from merchants.validators import InvalidUSCC, validate_uscc
from payments import ledger

PHONE_CONTEXT = "merchant.contact_phone"
APPLICANT_PHONE_CONTEXT = "user.phone"
BANK_CONTEXT = "merchant.bank_account"
MAX_STORES = 50
MAX_OFFERS = 20
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
AGREEMENT_VERSION = "2026-01"
AGREEMENT_YEARS = 2
RENEWAL_WINDOW_DAYS = 60
DOCUMENT_TYPES = ((b"%PDF-", "application/pdf", "pdf"), (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
                  (b"\xff\xd8\xff", "image/jpeg", "jpg"))
REVIEWERS = (Role.MERCHANT_REVIEWER,)
EDITABLE = (ApplicationStatus.DRAFT, ApplicationStatus.CHANGES_REQUESTED)
AWAITING_DECISION = (ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED, ApplicationStatus.UNDER_REVIEW)
IN_FLIGHT = AWAITING_DECISION + (ApplicationStatus.CHANGES_REQUESTED,)
# The review state machine: action -> (states it may start from, state it leads to).
TRANSITIONS: dict[str, tuple[tuple[ApplicationStatus, ...], ApplicationStatus]] = {
    "submit": ((ApplicationStatus.DRAFT,), ApplicationStatus.SUBMITTED),
    "resubmit": ((ApplicationStatus.CHANGES_REQUESTED,), ApplicationStatus.RESUBMITTED),
    "start_review": ((ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED), ApplicationStatus.UNDER_REVIEW),
    "approve": (AWAITING_DECISION, ApplicationStatus.APPROVED),
    "reject": (AWAITING_DECISION, ApplicationStatus.REJECTED),
    "request_changes": (AWAITING_DECISION, ApplicationStatus.CHANGES_REQUESTED),
}
TRANSITION_EVENTS = {"submit": "submitted", "resubmit": "resubmitted", "start_review": "review_started",
                     "approve": "approved", "reject": "rejected", "request_changes": "changes_requested"}


# --- applicants ------------------------------------------------------------------------------

def register_applicant(session: Session, cipher: FieldCipher, *, username: str, password: str, phone: str,
                       display_name: str = "") -> User:
    """Sign a business up for an applicant account (it can apply; it becomes owner when approved)."""
    try:
        phone = validate_phone(phone)
    except InvalidValue as exc:
        raise ValidationFailed({"phone": [str(exc)]}, code="invalid_phone") from None
    user = create_user(session, username=username, password=password, role=Role.APPLICANT,
                       display_name=display_name)
    user.phone_enc = cipher.encrypt(phone, APPLICANT_PHONE_CONTEXT)
    user.phone_masked = mask_phone(phone)
    audit.record(session, Actor.of(user), "user.applicant_registered", "user", user.public_id,
                 after={"username": user.username, "phone": user.phone_masked})
    session.commit()
    return user


# --- applications ----------------------------------------------------------------------------

@dataclass
class ApplicationInput:
    """What an applicant may fill in; None leaves a field as it is."""

    name: str | None = None
    uscc: str | None = None
    legal_representative: str | None = None
    contact_phone: str | None = None
    category: MerchantCategory | None = None
    region: str | None = None
    address: str | None = None
    stores: list[dict] | None = None
    proposed_offers: list[dict] | None = None
    settlement: dict | None = None
    extra: dict = field(default_factory=dict)


def application_snapshot(app: MerchantApplication) -> dict:
    """Return the masked fields the audit log keeps for an application."""
    return {"status": app.status.value, "name": app.name, "uscc": app.uscc,
            "category": app.category.value if app.category else None, "region": app.region,
            "contact_phone": app.contact_phone_masked,
            "settlement_method": app.settlement_method.value if app.settlement_method else None,
            "bank_account": app.bank_account_masked, "stores": len(app.stores or [])}


def _apply_fields(app: MerchantApplication, cipher: FieldCipher, data: ApplicationInput) -> None:
    """Validate and copy the given fields onto the application, or raise ValidationFailed."""
    errors: dict[str, list[str]] = {}
    if data.name is not None:
        if not data.name.strip():
            errors["name"] = ["Give the business name."]
        app.name = data.name.strip()
    if data.uscc is not None:
        try:
            app.uscc = validate_uscc(data.uscc)
        except InvalidUSCC as exc:
            errors["uscc"] = [str(exc)]
    if data.legal_representative is not None:
        app.legal_representative = data.legal_representative.strip() or None
    if data.contact_phone is not None:
        try:
            phone = validate_phone(data.contact_phone)
            app.contact_phone_enc = cipher.encrypt(phone, PHONE_CONTEXT)
            app.contact_phone_masked = mask_phone(phone)
        except InvalidValue as exc:
            errors["contact_phone"] = [str(exc)]
    if data.category is not None:
        app.category = data.category
    if data.region is not None:
        try:
            app.region = validate_region(data.region)
        except InvalidValue as exc:
            errors["region"] = [str(exc)]
    if data.address is not None:
        app.address = data.address.strip() or None
    if data.stores is not None:
        if len(data.stores) > MAX_STORES:
            errors["stores"] = [f"At most {MAX_STORES} stores per application."]
        # Coordinates arrive as Decimal; JSON keeps them as exact strings.
        app.stores = [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in s.items() if v is not None}
                      for s in data.stores]
    if data.proposed_offers is not None:
        if len(data.proposed_offers) > MAX_OFFERS:
            errors["proposed_offers"] = [f"At most {MAX_OFFERS} proposed offers."]
        app.proposed_offers = list(data.proposed_offers)
    if data.settlement is not None:
        method = SettlementMethod(data.settlement["method"])
        app.settlement_method = method
        if method == SettlementMethod.BANK:
            number = "".join(str(data.settlement.get("account_number") or "").split())
            if not number:
                pass  # left blank (the form shows only the masked number): keep what is on file, if anything
            elif not re.fullmatch(r"[0-9]{8,32}", number):
                errors["settlement"] = ["A bank account number has 8-32 digits."]
            else:
                app.bank_account_enc = cipher.encrypt(number, BANK_CONTEXT)
                app.bank_account_masked = mask_account_number(number)
            app.bank_name = (data.settlement.get("bank_name") or "").strip() or None
            app.bank_account_name = (data.settlement.get("account_name") or "").strip() or None
        else:
            app.bank_name = app.bank_account_name = app.bank_account_enc = app.bank_account_masked = None
    if errors:
        word = "invalid_uscc" if "uscc" in errors else "invalid_phone" if "contact_phone" in errors else None
        raise ValidationFailed(errors, code=word)


def create_application(session: Session, cipher: FieldCipher, actor: Actor, data: ApplicationInput) -> MerchantApplication:
    """Start an application as a draft (it may be partial; submitting checks it is complete)."""
    if actor.role != Role.APPLICANT:
        raise Forbidden("Only an applicant account applies; sign up at POST /api/v1/applicants.")
    app = MerchantApplication(public_id=new_public_id("app"), applicant_id=actor.user_id,
                              status=ApplicationStatus.DRAFT, name="", stores=[], proposed_offers=[])
    _apply_fields(app, cipher, data)
    if not app.name:
        raise ValidationFailed({"name": ["Give the business name."]})
    session.add(app)
    session.flush()
    audit.record(session, actor, "merchant_application.created", "merchant_application", app.public_id,
                 after=application_snapshot(app))
    session.commit()
    return app


def get_application(session: Session, actor: Actor, public_id: str, *, lock: bool = False) -> MerchantApplication:
    """Return an application its applicant or a reviewer may see (locked for a change), or raise NotFound."""
    query = select(MerchantApplication).where(MerchantApplication.public_id == public_id)
    if lock:
        # Two reviewers deciding at once take turns; the second sees the first one's outcome.
        query = query.with_for_update(of=MerchantApplication)
    app = session.scalar(query)
    if app is None or not (actor.role in REVIEWERS or app.applicant_id == actor.user_id):
        raise NotFound("No such application.")
    return app


def update_application(session: Session, cipher: FieldCipher, actor: Actor, public_id: str,
                       data: ApplicationInput) -> MerchantApplication:
    """Change a draft, or an application sent back for changes (its applicant only)."""
    app = get_application(session, actor, public_id)
    if app.applicant_id != actor.user_id:
        raise NotFound("No such application.")
    if app.status not in EDITABLE:
        raise Conflict(f"An application that is {app.status.value} cannot be edited.", code="invalid_state")
    before = application_snapshot(app)
    try:
        _apply_fields(app, cipher, data)
    except ValidationFailed:
        session.rollback()
        raise
    audit.record(session, actor, "merchant_application.updated", "merchant_application", app.public_id,
                 before=before, after=application_snapshot(app))
    session.commit()
    return app


def list_applications(session: Session, actor: Actor, *, status: ApplicationStatus | None = None,
                      category: MerchantCategory | None = None, region: str | None = None,
                      q: str | None = None, limit: int, cursor: str | None) -> Page:
    """List the reviewer queue (all applications) or an applicant's own."""
    query = select(MerchantApplication)
    if actor.role not in REVIEWERS:
        query = query.where(MerchantApplication.applicant_id == actor.user_id)
    elif status is None:
        # A draft is the applicant's own until it is submitted.
        query = query.where(MerchantApplication.status != ApplicationStatus.DRAFT)
    if status:
        query = query.where(MerchantApplication.status == status)
    if category:
        query = query.where(MerchantApplication.category == category)
    if region:
        query = query.where(MerchantApplication.region.startswith(region.rstrip("0") or region))
    if q:
        term = q.strip()
        query = query.where(MerchantApplication.name.contains(term, autoescape=True)
                            | (MerchantApplication.uscc == term.upper()))
    return paginate(session, query, MerchantApplication.id, limit=limit, cursor=cursor)


def detect_document_type(head: bytes) -> tuple[str, str] | None:
    """Return (content type, extension) from a file's first bytes, for PDF, PNG and JPEG only."""
    for magic, content_type, ext in DOCUMENT_TYPES:
        if head.startswith(magic):
            return content_type, ext
    return None


def add_document(session: Session, actor: Actor, public_id: str, stream: BinaryIO, filename: str,
                 upload_dir: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> ApplicationDocument:
    """Store a licence (PDF, PNG or JPEG by content, at most max_bytes) outside the web root."""
    app = get_application(session, actor, public_id)
    if app.applicant_id != actor.user_id:
        raise NotFound("No such application.")
    if app.status not in EDITABLE:
        raise Conflict(f"An application that is {app.status.value} takes no new documents.", code="invalid_state")
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValidationFailed({"file": [f"A licence file may be at most {max_bytes // (1024 * 1024)} MiB."]},
                               code="file_too_large")
    kind = detect_document_type(data[:16])
    if kind is None or not data:
        raise ValidationFailed({"file": ["Upload the licence as a PDF, PNG or JPEG file."]},
                               code="unsupported_file_type")
    content_type, ext = kind
    doc = ApplicationDocument(public_id=new_public_id("doc"), kind="licence",
                              filename=Path(filename or f"licence.{ext}").name[:255], content_type=content_type,
                              size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                              stored_name=f"{new_public_id('file')}.{ext}")
    folder = Path(upload_dir) / "licences"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / doc.stored_name).write_bytes(data)
    app.documents.append(doc)
    session.flush()
    audit.record(session, actor, "merchant_application.document_added", "merchant_application", app.public_id,
                 after={"document_id": doc.public_id, "content_type": content_type, "size": doc.size})
    session.commit()
    return doc


def document_path(session: Session, actor: Actor, public_id: str, document_id: str,
                  upload_dir: str) -> tuple[ApplicationDocument, Path]:
    """Return a document and its file for the applicant or a reviewer."""
    app = get_application(session, actor, public_id)
    doc = next((d for d in app.documents if d.public_id == document_id), None)
    if doc is None:
        raise NotFound("No such document.")
    return doc, Path(upload_dir) / "licences" / doc.stored_name


def _missing_for_submission(app: MerchantApplication) -> dict[str, list[str]]:
    required = {"uscc": app.uscc, "legal_representative": app.legal_representative,
                "contact_phone": app.contact_phone_masked, "category": app.category, "region": app.region,
                "address": app.address, "settlement": app.settlement_method}
    missing = {k: ["Required before the application can be submitted."] for k, v in required.items() if not v}
    if not app.stores:
        missing["stores"] = ["Name at least one store."]
    if app.settlement_method == SettlementMethod.BANK and not (app.bank_account_enc and app.bank_name
                                                              and app.bank_account_name):
        missing["settlement"] = ["Give the bank name, account name and account number."]
    if not app.documents:
        missing["documents"] = ["Upload the business licence."]
    return missing


def _live_merchant_with(session: Session, uscc: str) -> Merchant | None:
    return session.scalar(select(Merchant).where(Merchant.uscc == uscc, Merchant.status != MerchantStatus.TERMINATED))


def _transition(session: Session, actor: Actor, app: MerchantApplication, action: str,
                comment: str | None = None) -> None:
    allowed_from, target = TRANSITIONS[action]
    if app.status not in allowed_from:
        raise Conflict(f"Cannot {action.replace('_', ' ')} an application that is {app.status.value}.",
                       code="invalid_state")
    before = application_snapshot(app)
    if action in ("approve", "reject", "request_changes") and app.status != ApplicationStatus.UNDER_REVIEW:
        # Deciding straight from the queue passes through review: the log shows both steps.
        app.status = ApplicationStatus.UNDER_REVIEW
        app.reviewer_id = actor.user_id
        audit.record(session, actor, "merchant_application.review_started", "merchant_application",
                     app.public_id, before=before, after=application_snapshot(app))
        before = application_snapshot(app)
    app.status = target
    if action in ("submit", "resubmit"):
        app.submitted_at = utcnow()
    if action == "start_review":
        app.reviewer_id = actor.user_id
    if action in ("approve", "reject"):
        app.decided_at = utcnow()
    if comment:
        app.comments.append(ApplicationComment(author_id=actor.user_id, action=action, body=comment))
    audit.record(session, actor, f"merchant_application.{TRANSITION_EVENTS[action]}", "merchant_application",
                 app.public_id, before=before,
                 after=application_snapshot(app) | ({"comment": comment} if comment else {}))


def submit_application(session: Session, actor: Actor, public_id: str) -> MerchantApplication:
    """Send a complete draft (or a changed application) to the reviewers."""
    app = get_application(session, actor, public_id, lock=True)
    if app.applicant_id != actor.user_id:
        raise NotFound("No such application.")
    action = "resubmit" if app.status == ApplicationStatus.CHANGES_REQUESTED else "submit"
    if app.status not in EDITABLE:
        raise Conflict(f"Cannot submit an application that is {app.status.value}.", code="invalid_state")
    missing = _missing_for_submission(app)
    if missing:
        raise ValidationFailed(missing, "The application is not complete yet.", code="incomplete_application")
    if _live_merchant_with(session, app.uscc):
        raise Conflict("A partner merchant with this credit code already exists.", code="duplicate_uscc")
    # Another applicant's application for the same code is not refused here (credit codes are public,
    # so anyone could squat one): reviewers see both side by side, and approval admits one merchant.
    mine = session.scalar(select(MerchantApplication.public_id).where(
        MerchantApplication.applicant_id == app.applicant_id, MerchantApplication.id != app.id,
        MerchantApplication.status.in_(IN_FLIGHT)))
    if mine:
        raise Conflict("You already have an application with the reviewers; one account applies for one merchant.",
                       code="application_in_review")
    _transition(session, actor, app, action)
    session.commit()
    return app


def same_code_applications(session: Session, app: MerchantApplication) -> list[MerchantApplication]:
    """List the other open applications for the same credit code (for the reviewer to compare)."""
    if not app.uscc:
        return []
    return list(session.scalars(select(MerchantApplication).where(
        MerchantApplication.uscc == app.uscc, MerchantApplication.id != app.id,
        MerchantApplication.status.in_(IN_FLIGHT + (ApplicationStatus.APPROVED,)))))


def start_review(session: Session, actor: Actor, public_id: str) -> MerchantApplication:
    """Take a submitted application into review."""
    app = get_application(session, actor, public_id, lock=True)
    _transition(session, actor, app, "start_review")
    session.commit()
    return app


def comment_on_application(session: Session, actor: Actor, public_id: str, body: str) -> ApplicationComment:
    """Add a note to the conversation between the applicant and the reviewers."""
    app = get_application(session, actor, public_id)
    if app.status in (ApplicationStatus.APPROVED, ApplicationStatus.REJECTED):
        raise Conflict("The application is decided; the conversation is closed.", code="invalid_state")
    if not body.strip():
        raise ValidationFailed({"comment": ["Write something."]})
    note = ApplicationComment(author_id=actor.user_id, action="comment", body=body.strip())
    app.comments.append(note)
    session.flush()
    audit.record(session, actor, "merchant_application.commented", "merchant_application", app.public_id,
                 after={"comment": note.body})
    session.commit()
    return note


def reject_application(session: Session, actor: Actor, public_id: str, comment: str) -> MerchantApplication:
    """Turn an application down, saying why."""
    return _decide(session, actor, public_id, "reject", comment)


def request_changes(session: Session, actor: Actor, public_id: str, comment: str) -> MerchantApplication:
    """Send an application back to the applicant, saying what to change."""
    return _decide(session, actor, public_id, "request_changes", comment)


def _decide(session: Session, actor: Actor, public_id: str, action: str, comment: str) -> MerchantApplication:
    app = get_application(session, actor, public_id, lock=True)
    if not (comment or "").strip():
        raise ValidationFailed({"comment": ["Tell the applicant why."]})
    _transition(session, actor, app, action, comment.strip())
    session.commit()
    return app


def approve_application(session: Session, actor: Actor, public_id: str, *, comment: str | None, connect,
                        today: dt.date | None = None) -> Merchant:
    """Approve: create the merchant, its stores, ledger payable and agreement; the applicant becomes owner."""
    today = today or dt.date.today()
    app = get_application(session, actor, public_id, lock=True)
    if app.status not in TRANSITIONS["approve"][0]:
        raise Conflict(f"Cannot approve an application that is {app.status.value}.", code="invalid_state")
    if _live_merchant_with(session, app.uscc):
        raise Conflict("A partner merchant with this credit code already exists.", code="duplicate_uscc")
    applicant = session.get(User, app.applicant_id, with_for_update=True)
    if applicant.role != Role.APPLICANT or not applicant.is_active:
        raise Conflict("The applicant's account already runs a merchant.", code="applicant_not_available")
    public = new_public_id("mch")
    merchant = Merchant(
        public_id=public, name=app.name, uscc=app.uscc, legal_representative=app.legal_representative,
        contact_phone_enc=app.contact_phone_enc, contact_phone_masked=app.contact_phone_masked,
        category=app.category, region=app.region, address=app.address, status=MerchantStatus.ACTIVE,
        settlement_method=app.settlement_method, bank_name=app.bank_name, bank_account_name=app.bank_account_name,
        bank_account_enc=app.bank_account_enc, bank_account_masked=app.bank_account_masked,
        payable_account=f"merchant:{public}:payable")
    session.add(merchant)
    try:
        session.flush()
    except IntegrityError:
        # Another approval of the same code won the race; the partial unique index kept one merchant.
        session.rollback()
        raise Conflict("A partner merchant with this credit code already exists.", code="duplicate_uscc") from None
    # Every payment credits the payable; settlement and refunds debit it, and a net debit carries over.
    ledger.open_account(session, merchant.payable_account, normal_side="credit", currency="CNY",
                        allow_negative=True, mode="append_only", owner_kind="merchant", owner_id=public)
    for spec in app.stores or []:
        session.add(_new_store(merchant, spec))
    session.add(Agreement(merchant_id=merchant.id, version=AGREEMENT_VERSION, accepted_by_id=app.applicant_id,
                          term_start=today, term_end=_add_years(today, AGREEMENT_YEARS) - dt.timedelta(days=1)))
    applicant.role, applicant.merchant_id = Role.MERCHANT_OWNER, merchant.id
    app.merchant_id = merchant.id
    _transition(session, actor, app, "approve", (comment or "").strip() or None)
    if merchant.settlement_method == SettlementMethod.STRIPE:
        # Keyed by the application, so a retried approval reuses the account Stripe already made.
        merchant.stripe_account_id = connect.create_account(
            merchant_id=public, business_name=merchant.name, email=None,
            idempotency_key=f"merchant-application-{app.public_id}")
        merchant.stripe_status = "pending"
    session.flush()
    audit.record(session, actor, "merchant.created", "merchant", public, after=merchant_snapshot(merchant))
    audit.record(session, actor, "user.role_changed", "user", applicant.public_id,
                 before={"role": Role.APPLICANT.value}, after={"role": Role.MERCHANT_OWNER.value, "merchant_id": public})
    session.commit()
    return merchant


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


# --- merchants -------------------------------------------------------------------------------

def merchant_snapshot(merchant: Merchant) -> dict:
    """Return the masked fields the audit log keeps for a merchant."""
    return {"name": merchant.name, "uscc": merchant.uscc, "status": merchant.status.value,
            "category": merchant.category.value, "region": merchant.region,
            "settlement_method": merchant.settlement_method.value, "bank_account": merchant.bank_account_masked,
            "stripe_account_id": merchant.stripe_account_id, "stripe_status": merchant.stripe_status}


def get_merchant(session: Session, actor: Actor, public_id: str) -> Merchant:
    """Return a merchant its own staff or union staff may manage, or raise NotFound."""
    merchant = session.scalar(select(Merchant).where(Merchant.public_id == public_id))
    if merchant is None:
        raise NotFound("No such merchant.")
    if actor.role in MERCHANT_ROLES:
        if merchant.id != actor.merchant_id:
            raise NotFound("No such merchant.")
    elif actor.role not in MERCHANT_ADMINS + (Role.AUDITOR,):
        raise NotFound("No such merchant.")
    return merchant


MERCHANT_ADMINS = (Role.MERCHANT_REVIEWER, Role.UNION_ADMIN)


def _refuse_if_terminated(merchant: Merchant) -> None:
    if merchant.status == MerchantStatus.TERMINATED:
        raise Conflict("The merchant is terminated.", code="invalid_state")


def _require(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden("Your role may not do this.")


def change_merchant_status(session: Session, actor: Actor, public_id: str, action: str, reason: str) -> Merchant:
    """Suspend, terminate or reinstate a merchant; its QR codes and offers follow at once."""
    _require(actor, *MERCHANT_ADMINS)
    merchant = get_merchant(session, actor, public_id)
    moves = {"suspend": ((MerchantStatus.ACTIVE,), MerchantStatus.SUSPENDED),
             "terminate": ((MerchantStatus.ACTIVE, MerchantStatus.SUSPENDED), MerchantStatus.TERMINATED),
             "reinstate": ((MerchantStatus.SUSPENDED,), MerchantStatus.ACTIVE)}
    allowed_from, target = moves[action]
    if merchant.status not in allowed_from:
        raise Conflict(f"Cannot {action} a merchant that is {merchant.status.value}.", code="invalid_state")
    if not (reason or "").strip():
        raise ValidationFailed({"reason": ["Say why."]})
    before = merchant_snapshot(merchant)
    merchant.status, merchant.status_changed_at, merchant.status_reason = target, utcnow(), reason.strip()
    past = {"suspend": "suspended", "terminate": "terminated", "reinstate": "reinstated"}[action]
    audit.record(session, actor, f"merchant.{past}", "merchant", merchant.public_id, before=before,
                 after=merchant_snapshot(merchant) | {"reason": merchant.status_reason})
    session.commit()
    return merchant


def directory_query(*, category: MerchantCategory | None = None, region: str | None = None,
                    q: str | None = None) -> Select:
    """Return the query for the public directory: active merchants, filtered."""
    query = select(Merchant).where(Merchant.status == MerchantStatus.ACTIVE)
    if category:
        query = query.where(Merchant.category == category)
    if region:
        try:
            query = query.where(Merchant.region.startswith(region_prefix(validate_region(region))))
        except InvalidValue as exc:
            raise ValidationFailed({"region": [str(exc)]}) from None
    if q:
        term = q.strip()
        query = query.where(Merchant.name.contains(term, autoescape=True)
                            | Merchant.address.contains(term, autoescape=True))
    return query


def list_merchants(session: Session, actor: Actor, *, status: MerchantStatus | None, limit: int,
                   cursor: str | None) -> Page:
    """List every merchant, whatever its status, for union staff."""
    _require(actor, *MERCHANT_ADMINS, Role.AUDITOR)
    query = select(Merchant)
    if status is not None:
        query = query.where(Merchant.status == status)
    return paginate(session, query, Merchant.id, limit=limit, cursor=cursor)


def list_directory(session: Session, *, category=None, region=None, q=None, limit: int, cursor: str | None) -> Page:
    """List active merchants for anyone, filtered by category, region and text."""
    return paginate(session, directory_query(category=category, region=region, q=q), Merchant.id,
                    limit=limit, cursor=cursor)


def get_public_merchant(session: Session, public_id: str) -> Merchant:
    """Return an active merchant for the public directory, or raise NotFound."""
    merchant = session.scalar(select(Merchant).where(Merchant.public_id == public_id,
                                                     Merchant.status == MerchantStatus.ACTIVE))
    if merchant is None:
        raise NotFound("No such merchant.")
    return merchant


def agreements_due(session: Session, actor: Actor, *, within_days: int = RENEWAL_WINDOW_DAYS,
                   today: dt.date | None = None) -> list[Agreement]:
    """List the current agreements of live merchants whose term ends within `within_days`."""
    _require(actor, *MERCHANT_ADMINS, Role.AUDITOR)
    today = today or dt.date.today()
    latest = select(Agreement.merchant_id, Agreement.id).order_by(Agreement.merchant_id, Agreement.id.desc())
    newest = {}
    for merchant_id, agreement_id in session.execute(latest):
        newest.setdefault(merchant_id, agreement_id)
    query = (select(Agreement).join(Merchant, Merchant.id == Agreement.merchant_id)
             .where(Agreement.id.in_(list(newest.values()) or [0]),
                    Merchant.status != MerchantStatus.TERMINATED,
                    Agreement.term_end <= today + dt.timedelta(days=within_days))
             .order_by(Agreement.term_end))
    return list(session.scalars(query))


def apply_stripe_account_update(session: Session, account_id: str, *, charges_enabled: bool,
                                payouts_enabled: bool, details_submitted: bool,
                                as_of: dt.datetime | None = None) -> None:
    """Record a Connect account's status from Stripe's account.updated event (ignoring older news)."""
    merchant = session.scalar(select(Merchant).where(Merchant.stripe_account_id == account_id))
    if merchant is None:
        return  # an account of another platform use, or one we never finished creating
    if as_of is not None and merchant.stripe_status_at is not None and as_of < merchant.stripe_status_at:
        return
    merchant.stripe_status_at = as_of or utcnow()
    before = merchant_snapshot(merchant)
    merchant.stripe_status = ("enabled" if charges_enabled and payouts_enabled
                              else "restricted" if details_submitted else "pending")
    if merchant.stripe_status != before["stripe_status"]:
        audit.record(session, SYSTEM, "merchant.stripe_account_updated", "merchant", merchant.public_id,
                     before=before, after=merchant_snapshot(merchant))


def onboarding_link(session: Session, actor: Actor, public_id: str, connect, *, refresh_url: str,
                    return_url: str) -> str:
    """Return a Stripe onboarding link for the merchant's owner to finish the Connect account."""
    merchant = get_merchant(session, actor, public_id)
    _require(actor, Role.MERCHANT_OWNER)
    if merchant.settlement_method != SettlementMethod.STRIPE or not merchant.stripe_account_id:
        raise RuleViolation("This merchant is settled by bank transfer.", code="not_a_stripe_merchant")
    return connect.onboarding_link(merchant.stripe_account_id, refresh_url=refresh_url, return_url=return_url)


# --- stores ----------------------------------------------------------------------------------

def _new_store(merchant: Merchant, spec: dict) -> Store:
    category = spec.get("category")
    return Store(public_id=new_public_id("sto"), merchant=merchant, name=str(spec.get("name") or merchant.name)[:100],
                 address=str(spec.get("address") or merchant.address)[:200],
                 category=MerchantCategory(category) if category else None,
                 opening_hours=str(spec.get("opening_hours") or "")[:100],
                 latitude=spec.get("latitude"), longitude=spec.get("longitude"), status=StoreStatus.OPEN)


def store_snapshot(store: Store) -> dict:
    """Return the fields the audit log keeps for a store."""
    return {"name": store.name, "address": store.address, "status": store.status.value,
            "category": store.category.value if store.category else None, "opening_hours": store.opening_hours}


def add_store(session: Session, actor: Actor, merchant_public_id: str, spec: dict) -> Store:
    """Open a store for the merchant (its owner)."""
    merchant = get_merchant(session, actor, merchant_public_id)
    _require(actor, Role.MERCHANT_OWNER)
    _refuse_if_terminated(merchant)
    if len(merchant.stores) >= MAX_STORES:
        raise RuleViolation(f"A merchant may have at most {MAX_STORES} stores.", code="too_many_stores")
    store = _new_store(merchant, spec)
    session.add(store)
    session.flush()
    audit.record(session, actor, "store.created", "store", store.public_id, after=store_snapshot(store))
    session.commit()
    return store


def get_store(session: Session, actor: Actor, public_id: str) -> Store:
    """Return a store its merchant's staff or union staff may manage, or raise NotFound."""
    store = session.scalar(select(Store).where(Store.public_id == public_id))
    if store is None:
        raise NotFound("No such store.")
    get_merchant(session, actor, store.merchant.public_id)
    return store


def update_store(session: Session, actor: Actor, public_id: str, changes: dict) -> Store:
    """Change a store's details or open/close it (the owner or a manager)."""
    store = get_store(session, actor, public_id)
    _require(actor, Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)
    _refuse_if_terminated(store.merchant)
    before = store_snapshot(store)
    for key in ("name", "address", "opening_hours", "latitude", "longitude"):
        if key in changes:
            setattr(store, key, changes[key])
    if "category" in changes:
        store.category = MerchantCategory(changes["category"]) if changes["category"] else None
    if "status" in changes:
        store.status = StoreStatus(changes["status"])
    audit.record(session, actor, "store.updated", "store", store.public_id, before=before, after=store_snapshot(store))
    session.commit()
    return store


def get_store_any(session: Session, public_id: str) -> Store:
    """Return a store by public id for public pages, or raise NotFound."""
    store = session.scalar(select(Store).where(Store.public_id == public_id))
    if store is None:
        raise NotFound("No such store.")
    return store


def usable_store(session: Session, public_id: str) -> Store:
    """Return a store whose QR code works now, or say why not."""
    store = get_store_any(session, public_id)
    if not store.accepts_cards():
        raise Conflict("This store does not accept member cards at the moment.", code="store_not_accepting")
    return store


# --- staff -----------------------------------------------------------------------------------

STAFF_ROLES = {"manager": Role.MERCHANT_MANAGER, "cashier": Role.MERCHANT_CASHIER}


def add_staff(session: Session, actor: Actor, merchant_public_id: str, *, username: str, password: str,
              role: str, display_name: str = "") -> User:
    """Give a manager or cashier an account at the merchant (its owner)."""
    merchant = get_merchant(session, actor, merchant_public_id)
    _require(actor, Role.MERCHANT_OWNER)
    _refuse_if_terminated(merchant)
    user = create_user(session, username=username, password=password, role=STAFF_ROLES[role],
                       display_name=display_name, merchant_id=merchant.id)
    audit.record(session, actor, "merchant.staff_added", "user", user.public_id,
                 after={"username": user.username, "role": user.role.value, "merchant_id": merchant.public_id})
    session.commit()
    return user


def list_staff(session: Session, actor: Actor, merchant_public_id: str) -> list[User]:
    """List the merchant's staff accounts."""
    merchant = get_merchant(session, actor, merchant_public_id)
    _require(actor, Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, *MERCHANT_ADMINS, Role.AUDITOR)
    return list(session.scalars(select(User).where(User.merchant_id == merchant.id).order_by(User.id)))


def deactivate_staff(session: Session, actor: Actor, merchant_public_id: str, user_public_id: str) -> User:
    """Switch off a manager's or cashier's account (the owner); their tokens stop working."""
    merchant = get_merchant(session, actor, merchant_public_id)
    _require(actor, Role.MERCHANT_OWNER)
    user = session.scalar(select(User).where(User.public_id == user_public_id, User.merchant_id == merchant.id))
    if user is None or user.role == Role.MERCHANT_OWNER:
        raise NotFound("No such staff member.")
    user.is_active = False
    audit.record(session, actor, "merchant.staff_deactivated", "user", user.public_id, after={"is_active": False})
    session.commit()
    return user
