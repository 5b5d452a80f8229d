"""Pages: the reconciliation workbench (imports, exceptions and their resolution, adjustments awaiting
approval) and the daily report of the platform's accounts against the statements."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from core.db import db
from core.errors import DomainError, ValidationFailed
from core.exports import table_response
from core.i18n import BUSINESS_TZ, N_
from core.models import Role
from core.money import format_amount, parse_yuan
from core.web import current_actor, page_roles
from payments.reconciliation import exports
from payments.reconciliation import schemas as s
from payments.reconciliation import service
from payments.reconciliation.importers import balance_transactions
from payments.reconciliation.models import ResolutionKind, ResolutionStatus, Source
from payments.reports.schemas import DATE_RANGE

bp = Blueprint("reconciliation_pages", __name__, url_prefix="/finance", template_folder="templates")

MAKER, APPROVER = Role.FINANCE_MAKER, Role.FINANCE_APPROVER
FINANCE = (MAKER, APPROVER)
READERS = (*FINANCE, Role.AUDITOR)
LIST_PAGE = 30
LINES_PAGE = 50
PENDING_ON_PAGE = 100
STATE_LABELS = {
    "matched": N_("Matched"),
    "unmatched_internal": N_("Ours, no line"),
    "unmatched_external": N_("Theirs, not ours"),
    "mismatched": N_("Amount differs"),
    "exceptions": N_("Exceptions"),
    "all": N_("All"),
}
SOURCE_LABELS = {"bank": N_("Bank statement"), "stripe": N_("Stripe balance transactions")}
METHOD_LABELS = {"file": N_("CSV file"), "api": N_("Stripe API")}
ORIGIN_LABELS = {"statement": N_("Statement line"), "internal": N_("Ours")}
RULE_LABELS = {"reference": N_("By reference"), "amount_date": N_("By amount and date")}
RESOLUTION_LABELS = {"note": N_("Note"), "adjustment": N_("Adjustment")}
RESOLUTION_STATUS = {"pending": N_("Waiting for approval"), "resolved": N_("Resolved"), "rejected": N_("Rejected")}
ITEM_LABELS = {"payout": N_("Payout"), "funding": N_("Funding"), "top_up": N_("Top-up")}
LABELS = {"state": STATE_LABELS, "source": SOURCE_LABELS, "method": METHOD_LABELS, "origin": ORIGIN_LABELS,
          "rule": RULE_LABELS, "resolution": RESOLUTION_LABELS, "resolution_status": RESOLUTION_STATUS,
          "item": ITEM_LABELS}
ACCOUNT_LABELS = {"union:bank": N_("Union bank account"), "stripe:clearing": N_("Stripe balance"),
                  "payout:in-transit": N_("Payouts in transit")}
TABS = ("exceptions", "unmatched_internal", "unmatched_external", "mismatched", "matched", "all")


@bp.context_processor
def _helpers():
    def label(kind: str, value) -> str:
        value = getattr(value, "value", value)
        text = LABELS[kind].get(value)
        return _(text) if text else str(value)

    def account_label(code: str) -> str:
        return _(ACCOUNT_LABELS[code]) if code in ACCOUNT_LABELS else code

    return {"label": label, "account_label": account_label, "MAKER": MAKER.value, "APPROVER": APPROVER.value,
            "FINANCE": {MAKER.value, APPROVER.value}}


def _field_errors(exc: DomainError) -> dict[str, list[str]]:
    if exc.errors:
        return {field: list(texts) for field, texts in exc.errors.items()}
    return {"_": [exc.message]}


def _refused(exc: DomainError) -> None:
    """Drop what the refused change left in the session and say why (a missing object stays a 404)."""
    db.session.rollback()
    if exc.status == 404:
        raise exc
    if exc.errors:
        flash(" ".join(t for texts in exc.errors.values() for t in texts), "error")
    else:
        flash(exc.message, "error")


# --- the list and imports ----------------------------------------------------------------------------

def _list_page(errors: dict | None = None, status: int = 200):
    page = service.list_reconciliations(db.session, limit=LIST_PAGE, cursor=request.args.get("cursor") or None)
    pending = service.list_resolutions(db.session, kind=ResolutionKind.ADJUSTMENT, status=ResolutionStatus.PENDING,
                                       limit=1, cursor=None)
    yesterday = dt.datetime.now(BUSINESS_TZ).date() - dt.timedelta(days=1)
    html = render_template("reconciliation/list.html", page=page, errors=errors or {}, form=request.form,
                           yesterday=yesterday, window=current_app.config["RECONCILIATION_DATE_WINDOW_DAYS"],
                           limits=service.limits_from(current_app.config), any_pending=bool(pending.items))
    return html, status


@bp.route("/reconciliations")
@page_roles(*READERS)
def reconciliations():
    """The workbench: import a statement, and the reconciliations so far."""
    return _list_page()


def _import(form):
    cfg = current_app.config
    limits, window = service.limits_from(cfg), int(cfg["RECONCILIATION_DATE_WINDOW_DAYS"])
    if form.get("method") == "api":
        try:
            body = s.ReconciliationStripeImportSchema().load({"source": "stripe", "since": form.get("since", ""),
                                                              "until": form.get("until", "")})
        except ValidationError as exc:
            raise ValidationFailed({name: [_("Enter a date.")] for name in exc.normalized_messages()}) from None
        return service.import_stripe_api(db.session, current_actor(), balance_transactions(cfg), since=body["since"],
                                         until=body["until"], window_days=window, limits=limits)
    source = form.get("source")
    if source not in {s.value for s in Source}:
        raise ValidationFailed({"source": [_("Choose where the statement comes from.")]})
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed({"file": [_("Choose a CSV file to upload.")]})
    return service.import_file(db.session, current_actor(), source=Source(source), fileobj=upload.stream,
                               filename=upload.filename, window_days=window, limits=limits)


@bp.route("/reconciliations", methods=["POST"])
@page_roles(*FINANCE)
def import_statement():
    """Import a statement (a CSV file, or Stripe's API for a period) and show what matching found."""
    try:
        rec, created = _import(request.form)
    except DomainError as exc:
        db.session.rollback()
        return _list_page(_field_errors(exc), exc.status)
    if created:
        flash(_("%(lines)s lines imported: %(matched)s matched, %(exceptions)s exceptions.", lines=rec.lines_count,
                matched=rec.matched, exceptions=rec.exceptions), "info")
    else:
        flash(_("This statement was imported before: here is its reconciliation."), "info")
    return redirect(url_for("reconciliation_pages.reconciliation", rec_id=rec.public_id))


# --- one reconciliation ------------------------------------------------------------------------------

def _tab(rec) -> str:
    wanted = request.args.get("state")
    if wanted in TABS:
        return wanted
    return "exceptions" if rec.exceptions else "all"


@bp.route("/reconciliations/<rec_id>")
@page_roles(*READERS)
def reconciliation(rec_id):
    """A reconciliation: its counts, its lines by state, each exception with its resolution, and the
    adjustments waiting for an approver."""
    rec = service.get_reconciliation(db.session, rec_id)
    tab = _tab(rec)
    lines = service.list_lines(db.session, rec, state=None if tab == "all" else tab, limit=LINES_PAGE,
                               cursor=request.args.get("cursor") or None)
    pending = service.list_resolutions(db.session, rec=rec, kind=ResolutionKind.ADJUSTMENT,
                                       status=ResolutionStatus.PENDING, limit=PENDING_ON_PAGE, cursor=None).items
    names = service.users_named(db.session, [rec.imported_by_id, *(p.created_by_id for p in pending),
                                             *(line.resolution.created_by_id for line in lines.items
                                               if line.resolution)])
    counts = {"matched": rec.matched, "unmatched_internal": rec.unmatched_internal,
              "unmatched_external": rec.unmatched_external, "mismatched": rec.mismatched,
              "exceptions": rec.exceptions, "all": rec.matched + rec.exceptions}
    return render_template("reconciliation/detail.html", rec=rec, lines=lines, tab=tab, tabs=TABS, counts=counts,
                           pending=pending, names=names, me=current_actor().user_id)


def _amount(raw: str | None) -> int | None:
    """Read a signed amount typed in yuan (`-12.50`) as fen; None when left empty."""
    raw = (raw or "").strip()
    if not raw:
        return None
    sign = -1 if raw.startswith("-") else 1
    fen = parse_yuan(raw.lstrip("+-"))
    if fen is None:
        raise ValidationFailed({"amount": [_("Enter an amount in yuan, such as 12.50 or -12.50.")]})
    return sign * fen


@bp.route("/reconciliations/<rec_id>/lines/<int:line_no>/resolve", methods=["POST"])
@page_roles(*FINANCE)
def resolve_line(rec_id, line_no):
    """Resolve an exception with a note, or enter an adjustment for an approver to confirm."""
    form = request.form
    try:
        kind = form.get("kind")
        if kind not in {k.value for k in ResolutionKind}:
            raise ValidationFailed({"kind": [_("Choose a note or an adjustment.")]})
        amount = _amount(form.get("amount")) if kind == ResolutionKind.ADJUSTMENT.value else None
        line = service.resolve_line(db.session, current_actor(), rec_id, line_no, kind=ResolutionKind(kind),
                                    note=form.get("note", ""), amount=amount)
    except DomainError as exc:
        _refused(exc)
    else:
        if line.resolution.kind is ResolutionKind.NOTE:
            flash(_("Line %(line)s resolved.", line=line_no), "info")
        else:
            flash(_("Adjustment of %(amount)s entered for line %(line)s: another approver confirms it.",
                    amount=format_amount(line.resolution.amount), line=line_no), "info")
    return redirect(url_for("reconciliation_pages.reconciliation", rec_id=rec_id, state=request.args.get("state"),
                            _anchor=f"line-{line_no}"))


@bp.route("/reconciliations/adjustments/<adjustment_id>/<any(approve, reject):decision>", methods=["POST"])
@page_roles(APPROVER)
def decide_adjustment(adjustment_id, decision):
    """Confirm an adjustment (it is posted to the ledger) or turn it down (the exception is open again)."""
    adjustment = service.get_adjustment(db.session, adjustment_id)
    rec_id = adjustment.reconciliation.public_id
    try:
        if decision == "approve":
            adjustment = service.approve_adjustment(db.session, current_actor(), adjustment_id)
            flash(_("Adjustment approved: %(amount)s posted against the differences account.",
                    amount=format_amount(abs(adjustment.amount))), "info")
        else:
            service.reject_adjustment(db.session, current_actor(), adjustment_id)
            flash(_("Adjustment rejected: nothing was posted, the exception is open again."), "info")
    except DomainError as exc:
        _refused(exc)
    return redirect(url_for("reconciliation_pages.reconciliation", rec_id=rec_id, _anchor="pending"))


@bp.route("/reconciliations/<rec_id>/export.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def export_lines(rec_id, fmt):
    """Download the lines (of the tab shown) as CSV or XLSX."""
    rec = service.get_reconciliation(db.session, rec_id)
    state = request.args.get("state")
    state = state if state in s.LINE_FILTERS else None
    lang = "en" if request.args.get("lang") == "en" else "zh"
    try:
        rows = service.export_lines(db.session, rec, state=state)
    except DomainError as exc:
        _refused(exc)
        return redirect(url_for("reconciliation_pages.reconciliation", rec_id=rec_id))
    return table_response(exports.line_headers(lang), rows, filename=rec.public_id, fmt=fmt, sheet=rec.public_id)


# --- the daily report --------------------------------------------------------------------------------

def _report_args():
    """The report's days and accounts from the query string (yesterday and every account by default)."""
    args = {}
    for name in ("date", "since", "until"):
        raw = request.args.get(name)
        if raw:
            try:
                args[name] = DATE_RANGE(dt.date.fromisoformat(raw))
            except (ValueError, ValidationError):
                raise ValidationFailed({name: [_("Enter a date.")]}) from None
    account = request.args.get("account")
    accounts_ = (account,) if account in service.REPORT_ACCOUNTS else service.REPORT_ACCOUNTS
    since, until = service.report_period(args.get("date"), args.get("since"), args.get("until"))
    return since, until, accounts_


def _chart(rows) -> list[tuple[str, str, int]]:
    """The days with a statement and a difference, for the chart: (day, account, difference)."""
    return [(r.day.isoformat(), r.account, r.difference) for r in rows if r.difference]


@bp.route("/reconciliations/report")
@page_roles(*READERS)
def report():
    """Per account and day: the books (opening, in, out, closing) against the statement, and the difference."""
    error = None
    try:
        since, until, accounts_ = _report_args()
    except DomainError as exc:
        error = " ".join(t for texts in (exc.errors or {"_": [exc.message]}).values() for t in texts)
        since = until = dt.datetime.now(BUSINESS_TZ).date() - dt.timedelta(days=1)
        accounts_ = service.REPORT_ACCOUNTS
    rows = service.daily_report(db.session, since=since, until=until, accounts_=accounts_)
    html = render_template("reconciliation/report.html", rows=rows, since=since, until=until, error=error,
                           account=accounts_[0] if len(accounts_) == 1 else "", accounts=service.REPORT_ACCOUNTS,
                           chart=_chart(rows))
    return html, (422 if error else 200)


@bp.route("/reconciliations/report.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def export_report(fmt):
    """Download the daily report as CSV or XLSX."""
    try:
        since, until, accounts_ = _report_args()
    except DomainError as exc:
        _refused(exc)
        return redirect(url_for("reconciliation_pages.report"))
    rows = service.daily_report(db.session, since=since, until=until, accounts_=accounts_)
    lang = "en" if request.args.get("lang") == "en" else "zh"
    return table_response(exports.report_headers(lang), service.report_table(rows),
                          filename=f"reconciliation-report-{since.isoformat()}-{until.isoformat()}", fmt=fmt,
                          sheet="report")
