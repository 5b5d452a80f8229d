"""Pages: finance's payouts (exceptions first, approval, resolution, sending Stripe payouts), the bank
transfer files (generate, download, import the bank's answer), and a merchant's own payouts."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from core import audit
from core.db import db
from core.errors import DomainError, ValidationFailed
from core.i18n import N_
from core.models import FINANCE_ROLES, Role
from core.money import format_amount
from core.web import current_actor, field_cipher, page_roles
from merchants.models import SettlementMethod
from payments.payouts import service
from payments.payouts.api import bank_file_response
from payments.payouts.models import PayoutStatus
from payments.payouts.provider import payout_provider

bp = Blueprint("payouts_pages", __name__, template_folder="templates")
MAKER, APPROVER = Role.FINANCE_MAKER, Role.FINANCE_APPROVER
FINANCE = tuple(FINANCE_ROLES)
READERS = (*FINANCE, Role.AUDITOR)
MERCHANT_READERS = tuple(service.MERCHANT_READERS)
PAGE = 50
FILES_PAGE = 20
HISTORY = 50

STATUS_LABELS = {
    "pending_approval": N_("Waiting for approval"),
    "ready": N_("Ready to send"),
    "submitted": N_("Sent, not yet paid"),
    "paid": N_("Paid"),
    "failed": N_("Failed"),
}
METHOD_LABELS = {"bank": N_("Bank transfer file"), "stripe": N_("Stripe")}
EXCEPTION_LABELS = {"open": N_("Open exception"), "resolved": N_("Resolved")}
OUTCOME_LABELS = {
    "paid": N_("Marked paid"),
    "failed": N_("Marked failed: money back on the payable"),
    "returned": N_("Returned after payment: money back on the payable"),
    "unchanged": N_("Already so: nothing changed"),
    "error": N_("Not applied"),
}
ANSWER_ERROR_LABELS = {
    "malformed_line": N_("The line does not have the three fields reference,status,reason."),
    "missing_reference": N_("The line names no payout."),
    "invalid_status": N_("The status is neither paid nor failed."),
    "duplicate_reference": N_("An earlier line already answers for this payout."),
    "not_in_file": N_("No payout of this bank file has this reference."),
    "already_failed": N_("The payout has already failed; its money is back on the merchant's payable."),
}
LABELS = {"status": STATUS_LABELS, "method": METHOD_LABELS, "exception": EXCEPTION_LABELS,
          "outcome": OUTCOME_LABELS, "answer_error": ANSWER_ERROR_LABELS}
# Refusals of the service, by machine word, as the pages say them.
CODE_MESSAGES = {
    "not_an_approver": N_("Only a finance approver approves payouts."),
    "same_person": N_("The payout was settled by you: another approver must approve it."),
    "payout_not_pending_approval": N_("The payout does not wait for approval."),
    "no_exception": N_("The payout has not failed: there is no exception to resolve."),
    "exception_resolved": N_("The exception is already resolved."),
    "no_payouts_due": N_("No bank payout can go into a file now: none is ready and due, or the merchants' bank "
                         "details are incomplete."),
    "bank_file_changed": N_("A merchant's bank details changed after this file was made: it cannot be made again "
                            "as it was. Check with the bank what it received."),
    "file_too_large": N_("The file is too large."),
    "too_many_lines": N_("The file has too many lines."),
    "invalid_file": N_("The file is not the bank's answer: UTF-8 CSV with the header reference,status,reason."),
}
NOTE_HINT = N_("Say what was done about the failed payout (1-1000 characters).")


@bp.context_processor
def _helpers():
    def label(kind: str, value) -> str:
        value = getattr(value, "value", value)
        text = LABELS[kind].get(value)
        return _(text) if text else str(value or "")

    return {"label": label, "FINANCE": {r.value for r in FINANCE}, "MAKER": MAKER.value, "APPROVER": APPROVER.value}


def _explain(exc: DomainError) -> str:
    """Say why the service refused, in the page's language where the refusal is a known one."""
    if exc.code in CODE_MESSAGES:
        return _(CODE_MESSAGES[exc.code])
    if exc.errors and "note" in exc.errors:
        return _(NOTE_HINT)
    return exc.message


def _refused(exc: DomainError) -> None:
    """Drop what the refused change left in the session and tell why (a missing object stays a 404)."""
    db.session.rollback()
    if exc.status == 404:
        raise exc
    flash(_explain(exc), "error")


def _back(payout_id: str):
    """Return to the list when the form was on it, else to the payout's page."""
    if request.form.get("back") == "list":
        return redirect(url_for("payouts_pages.payouts"))
    return redirect(url_for("payouts_pages.payout", payout_id=payout_id))


# --- finance: payouts -------------------------------------------------------------------------------

def _status_arg() -> PayoutStatus | None:
    try:
        return PayoutStatus(request.args.get("status", ""))
    except ValueError:
        return None


@bp.route("/finance/payouts")
@page_roles(*READERS)
def payouts():
    """Every payout, newest first, open exceptions on top; filter by status; approve, resolve, send."""
    actor = current_actor()
    status = _status_arg()
    page = service.list_payouts(db.session, actor, status=status, limit=PAGE,
                                cursor=request.args.get("cursor") or None)
    exceptions = service.open_exceptions(db.session, actor)
    shown = service.with_refs(db.session, [*exceptions, *page.items])
    return render_template("payouts/payouts.html", page=page, exceptions=exceptions, status=status,
                           counts=service.status_counts(db.session, actor), statuses=list(PayoutStatus),
                           names=service.people_names(db.session, shown),
                           due_stripe=service.due_summary(db.session, SettlementMethod.STRIPE,
                                                          today=service.business_today()))


@bp.route("/finance/payouts/<payout_id>")
@page_roles(*READERS)
def payout(payout_id):
    """One payout: its money, where it went, what the provider said, its exception and its history."""
    found = service.get_payout(db.session, current_actor(), payout_id)
    service.with_refs(db.session, [found])
    history = audit.list_events(db.session, object_id=found.public_id, limit=HISTORY, cursor=None).items
    return render_template("payouts/payout.html", payout=found, history=history,
                           names=service.people_names(db.session, [found]))


@bp.route("/finance/payouts/<payout_id>/approve", methods=["POST"])
@page_roles(APPROVER)
def approve(payout_id):
    """Approve a payout above the threshold (not the person who settled it)."""
    try:
        done = service.approve(db.session, current_actor(), payout_id)
        flash(_("Payout of %(amount)s approved: it is sent when due.", amount=format_amount(done.amount)), "info")
    except DomainError as exc:
        _refused(exc)
    return _back(payout_id)


@bp.route("/finance/payouts/<payout_id>/resolve", methods=["POST"])
@page_roles(*FINANCE)
def resolve(payout_id):
    """Close a failed payout's exception with a note of what was done."""
    try:
        service.resolve_exception(db.session, current_actor(), payout_id, request.form.get("note", ""),
                                  provider=payout_provider(current_app.config))
        flash(_("Exception resolved: the money joins the merchant's next settlement."), "info")
    except DomainError as exc:
        _refused(exc)
    return _back(payout_id)


@bp.route("/finance/payouts/send", methods=["POST"])
@page_roles(*FINANCE)
def send():
    """Send the Stripe payouts that are ready and due now."""
    report = service.send_due(db.session, payout_provider(current_app.config), today=service.business_today(),
                              actor=current_actor())
    if report.failed:
        flash(_("%(sent)s Stripe payouts sent; %(failed)s not sent: see their last error.", sent=report.sent,
                failed=report.failed), "error")
    else:
        flash(_("%(sent)s Stripe payouts sent.", sent=report.sent), "info")
    return redirect(url_for("payouts_pages.payouts"))


# --- finance: bank transfer files ---------------------------------------------------------------------

@bp.route("/finance/payout-bank-files")
@page_roles(*FINANCE)
def bank_files():
    """The bank transfer files, and what a new one would take."""
    page = service.list_bank_files(db.session, current_actor(), limit=FILES_PAGE,
                                   cursor=request.args.get("cursor") or None)
    return render_template("payouts/bank_files.html", page=page,
                           due=service.due_summary(db.session, SettlementMethod.BANK, today=service.business_today()))


@bp.route("/finance/payout-bank-files", methods=["POST"])
@page_roles(MAKER)
def create_bank_file():
    """Put every bank payout that is ready and due into a new transfer file."""
    try:
        made = service.create_bank_file(db.session, current_actor(), today=service.business_today(),
                                        cipher=field_cipher())
    except DomainError as exc:
        _refused(exc)
        return redirect(url_for("payouts_pages.bank_files"))
    flash(_("Bank file made: %(count)s payouts, %(total)s. Download it for the bank.", count=made.payouts_count,
            total=format_amount(made.total)), "info")
    return redirect(url_for("payouts_pages.bank_file", bank_file_id=made.public_id))


def _bank_file_page(bank_file_id: str, answer=None, errors: dict | None = None, status: int = 200):
    found = service.get_bank_file(db.session, current_actor(), bank_file_id)
    html = render_template("payouts/bank_file.html", bank_file=found, payouts=found.payouts, answer=answer,
                           errors=errors or {}, max_kib=service.ANSWER_MAX_BYTES // 1024)
    return html, status


@bp.route("/finance/payout-bank-files/<bank_file_id>")
@page_roles(*FINANCE)
def bank_file(bank_file_id):
    """One bank transfer file: its payouts (accounts masked), the download, and the bank's answer."""
    return _bank_file_page(bank_file_id)


@bp.route("/finance/payout-bank-files/<bank_file_id>/file.csv")
@page_roles(*FINANCE)
def bank_file_csv(bank_file_id):
    """Download the transfer file with the full account numbers (audited)."""
    try:
        return bank_file_response(bank_file_id)
    except DomainError as exc:
        _refused(exc)
        return redirect(url_for("payouts_pages.bank_file", bank_file_id=bank_file_id))


@bp.route("/finance/payout-bank-files/<bank_file_id>/statuses", methods=["POST"])
@page_roles(*FINANCE)
def import_statuses(bank_file_id):
    """Import the bank's answer and show what became of each line."""
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise ValidationFailed({"file": [_("Choose the bank's answer (CSV) to upload.")]})
        answer = service.import_bank_statuses(db.session, current_actor(), bank_file_id, upload.stream)
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        message = _explain(exc) if exc.code in CODE_MESSAGES else " ".join(
            t for texts in (exc.errors or {"_": [exc.message]}).values() for t in texts)
        return _bank_file_page(bank_file_id, errors={"file": [message]}, status=exc.status)
    flash(_("The bank's answer is imported: %(paid)s paid, %(failed)s failed, %(errors)s lines not applied.",
            paid=answer.count("paid"), failed=answer.count("failed") + answer.count("returned"),
            errors=answer.count("error")), "error" if answer.count("error") else "info")
    return _bank_file_page(bank_file_id, answer=answer)


# --- a merchant's own payouts ----------------------------------------------------------------------------

@bp.route("/merchant/payouts")
@page_roles(*MERCHANT_READERS)
def merchant_payouts():
    """The merchant's own payouts: what was sent, paid or returned, to which account (masked)."""
    actor = current_actor()
    status = _status_arg()
    page = service.list_payouts(db.session, actor, status=status, limit=PAGE,
                                cursor=request.args.get("cursor") or None)
    service.with_refs(db.session, page.items)
    return render_template("payouts/merchant_payouts.html", page=page, status=status, statuses=list(PayoutStatus))
