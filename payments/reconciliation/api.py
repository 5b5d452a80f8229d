"""JSON endpoints: reconciliation of Stripe and bank statements against the ledger (finance; auditors read)."""

from __future__ import annotations

from flask import current_app, request, url_for
from marshmallow import ValidationError

from core.api import Blueprint
from core.db import db
from core.errors import BadRequest, ValidationFailed
from core.exports import table_response
from core.models import Role
from core.web import current_actor
from payments.reconciliation import exports
from payments.reconciliation import schemas as s
from payments.reconciliation import service
from payments.reconciliation.importers import balance_transactions
from payments.reconciliation.models import ResolutionKind, ResolutionStatus, Source

blp = Blueprint("reconciliation_api", __name__, url_prefix="/api/v1",
                description="Reconciliation of Stripe and bank statements against the ledger")
MAKER, APPROVER = Role.FINANCE_MAKER, Role.FINANCE_APPROVER
FINANCE = (MAKER, APPROVER)
READERS = (*FINANCE, Role.AUDITOR)
FIRST_PAGE = 50


def _load(schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(exc.normalized_messages()) from None


def detail(rec, *, state: str | None = None, limit: int = FIRST_PAGE, cursor: str | None = None):
    """The reconciliation with a page of its lines."""
    page = service.list_lines(db.session, rec, state=state, limit=limit, cursor=cursor)
    rec.lines, rec.lines_next_cursor = page.items, page.next_cursor
    return rec


@blp.route("/reconciliations", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(201, s.ReconciliationDetailSchema, description="A new reconciliation, with its first lines")
@blp.alt_response(200, schema=s.ReconciliationDetailSchema,
                  description="The same statement was imported before: its reconciliation")
@blp.doc(requestBody={"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file", "source"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "bank: date,reference,amount,currency,description (fen, positive leaving); "
                                "stripe: the balance-transactions export (id, Type, Source, Amount, Fee, Net, "
                                "Currency, Created (UTC), Description)"},
        "source": {"type": "string", "enum": ["stripe", "bank"]}}}},
    "application/json": {"schema": {"type": "object", "required": ["source", "since", "until"], "properties": {
        "source": {"type": "string", "enum": ["stripe"]},
        "since": {"type": "string", "format": "date", "description": "first business day (Asia/Shanghai)"},
        "until": {"type": "string", "format": "date", "description": "last business day, included"}}}}}})
def import_statement():
    """Import a statement and match it against payouts, fundings and top-ups: a CSV upload (`source` stripe
    or bank), or `{"source": "stripe", "since", "until"}` to read Stripe's balance transactions through its
    API. The same statement again answers 200 with the reconciliation it made the first time."""
    cfg = current_app.config
    actor = current_actor()
    limits = service.limits_from(cfg)
    window = int(cfg["RECONCILIATION_DATE_WINDOW_DAYS"])
    if request.mimetype == "multipart/form-data":
        form = _load(s.ReconciliationUploadSchema(), request.form.to_dict())
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise ValidationFailed({"file": ["Attach the statement's CSV file."]})
        rec, created = service.import_file(db.session, actor, source=Source(form["source"]), fileobj=upload.stream,
                                           filename=upload.filename, window_days=window, limits=limits)
    elif request.is_json:
        body = _load(s.ReconciliationStripeImportSchema(), request.get_json(silent=True) or {})
        rec, created = service.import_stripe_api(db.session, actor, balance_transactions(cfg), since=body["since"],
                                                 until=body["until"], window_days=window, limits=limits)
    else:
        raise BadRequest("Send the statement as multipart/form-data, or the Stripe period as JSON.",
                         code="unsupported_media_type")
    location = {"Location": url_for("reconciliation_api.get_reconciliation", rec_id=rec.public_id)}
    return detail(rec), (201 if created else 200), location


@blp.route("/reconciliations", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationListQuery, location="query")
@blp.response(200, s.ReconciliationPage)
def list_reconciliations(args):
    """The reconciliations, newest first; `source` filters."""
    page = service.list_reconciliations(db.session, source=Source(args["source"]) if args.get("source") else None,
                                        limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/reconciliations/<rec_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationLineQuery, location="query")
@blp.response(200, s.ReconciliationDetailSchema)
def get_reconciliation(args, rec_id):
    """A reconciliation with a page of its lines; `state` picks one state, or `exceptions` for all but matched."""
    rec = service.get_reconciliation(db.session, rec_id)
    return detail(rec, state=args.get("state"), limit=args["limit"], cursor=args["cursor"])


@blp.route("/reconciliations/<rec_id>/lines/<int:line_no>/resolve", methods=["POST"])
@blp.auth(*FINANCE)
@blp.arguments(s.ReconciliationResolveSchema)
@blp.response(200, s.ReconciliationLineSchema)
def resolve_line(body, rec_id, line_no):
    """Resolve an exception (and the rest of its group): `kind` note, done at once, or adjustment (an
    `amount` in the statement's sign, the difference when left out), posted when another approver
    confirms it."""
    return service.resolve_line(db.session, current_actor(), rec_id, line_no, kind=ResolutionKind(body["kind"]),
                                note=body["note"], amount=body.get("amount"))


@blp.route("/reconciliation-adjustments", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationResolutionQuery, location="query")
@blp.response(200, s.ResolutionPage)
def list_adjustments(args):
    """Adjustments, oldest first; `status=pending` is the approvers' queue."""
    page = service.list_resolutions(db.session, kind=ResolutionKind.ADJUSTMENT,
                                    status=ResolutionStatus(args["status"]) if args.get("status") else None,
                                    limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/reconciliation-adjustments/<adjustment_id>/approve", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.ReconciliationResolutionSchema)
def approve_adjustment(adjustment_id):
    """Confirm an adjustment (not the person who entered it): its ledger transaction is posted."""
    return service.approve_adjustment(db.session, current_actor(), adjustment_id)


@blp.route("/reconciliation-adjustments/<adjustment_id>/reject", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.ReconciliationResolutionSchema)
def reject_adjustment(adjustment_id):
    """Turn an adjustment down: nothing is posted, the exception is open again."""
    return service.reject_adjustment(db.session, current_actor(), adjustment_id)


@blp.route("/reconciliations/<rec_id>/export.<any(csv, xlsx):fmt>", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationExportQuery, location="query")
@blp.response(200, description="The lines as CSV or XLSX (Chinese headers; `lang=en` for English)")
def export_lines(args, rec_id, fmt):
    """Download the lines (of one state, or the exceptions) with their items and resolutions."""
    rec = service.get_reconciliation(db.session, rec_id)
    rows = service.export_lines(db.session, rec, state=args.get("state"))
    return table_response(exports.line_headers(args["lang"]), rows, filename=rec.public_id, fmt=fmt,
                          sheet=rec.public_id)


def _report(args):
    since, until = service.report_period(args.get("date"), args.get("since"), args.get("until"))
    accounts_ = (args["account"],) if args.get("account") else service.REPORT_ACCOUNTS
    return since, until, service.daily_report(db.session, since=since, until=until, accounts_=accounts_)


@blp.route("/reconciliations/report", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationReportQuery, location="query")
@blp.response(200, s.ReconciliationReportSchema)
def daily_report(args):
    """Per account (union:bank, stripe:clearing, payout:in-transit) and business day: opening balance,
    movements in and out, closing balance from the ledger, the statement's figures and the difference.
    `date` for one day, or `since` and `until` (at most 62 days); yesterday by default."""
    since, until, rows = _report(args)
    return {"since": since, "until": until, "rows": rows}


@blp.route("/reconciliations/report.<any(csv, xlsx):fmt>", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.ReconciliationReportExportQuery, location="query")
@blp.response(200, description="The daily report as CSV or XLSX (Chinese headers; `lang=en` for English)")
def export_report(args, fmt):
    """Download the daily report."""
    since, until, rows = _report(args)
    return table_response(exports.report_headers(args["lang"]), service.report_table(rows),
                          filename=f"reconciliation-report-{since.isoformat()}-{until.isoformat()}", fmt=fmt,
                          sheet="report")

