"""JSON endpoints: payouts to merchants and their status, sending them, and the bank transfer files."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.errors import ValidationFailed
from core.models import FINANCE_ROLES, Role
from core.web import current_actor, field_cipher
from payments.payouts import schemas as s
from payments.payouts import service
from payments.payouts.provider import payout_provider

blp = Blueprint("payouts_api", __name__, url_prefix="/api/v1", description="Payouts to merchants and their status")
FINANCE = tuple(FINANCE_ROLES)
READERS = (*FINANCE, Role.AUDITOR, Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)


def _merchant_view() -> bool:
    return current_actor().role in service.MERCHANT_READERS


@blp.route("/payouts", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.PayoutQuery, location="query")
@blp.response(200, s.PayoutPage, description="Finance and auditors; a merchant's owner and managers get their own "
                                             "merchant's payouts in the narrower MerchantPayoutPage shape")
def list_payouts(args):
    """List payouts, newest first: finance and auditors all of them, a merchant's owner and managers their own."""
    page = service.list_payouts(db.session, current_actor(), status=args.get("status"),
                                merchant_id=args.get("merchant_id"), exception_status=args.get("exception_status"),
                                limit=args["limit"], cursor=args["cursor"])
    body = {"data": service.with_refs(db.session, page.items), "next_cursor": page.next_cursor}
    if _merchant_view():
        return jsonify(s.MerchantPayoutPage().dump(body))
    return body


def _one(payout):
    service.with_refs(db.session, [payout])
    if _merchant_view():
        return jsonify(s.MerchantPayoutSchema().dump(payout))
    return payout


@blp.route("/payouts/<payout_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.PayoutSchema, description="A merchant's owner and managers get the MerchantPayout shape")
@blp.alt_response(404, schema=ApiErrorSchema, description="No such payout, or another merchant's")
def get_payout(payout_id):
    """One payout with its status and what became of its money."""
    return _one(service.get_payout(db.session, current_actor(), payout_id))


@blp.route("/payouts/<payout_id>/approve", methods=["POST"])
@blp.auth(Role.FINANCE_APPROVER)
@blp.response(200, s.PayoutSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such payout")
@blp.alt_response(409, schema=ApiErrorSchema, description="The payout does not wait for approval")
def approve_payout(payout_id):
    """Approve a payout above the threshold (not the person who settled it): it becomes ready to send."""
    return _one(service.approve(db.session, current_actor(), payout_id))


@blp.route("/payouts/<payout_id>/resolve", methods=["POST"])
@blp.auth(*FINANCE)
@blp.arguments(s.ResolveSchema)
@blp.response(200, s.PayoutSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such payout")
@blp.alt_response(409, schema=ApiErrorSchema, description="The payout has no open exception")
def resolve_payout(body, payout_id):
    """Close a failed payout's exception with a note of what was done about it."""
    return _one(service.resolve_exception(db.session, current_actor(), payout_id, body["note"],
                                          provider=payout_provider(current_app.config)))


@blp.route("/payouts/send", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(200, s.SendReportSchema)
def send_payouts():
    """Send the Stripe payouts that are ready and due now; those Stripe does not take stay ready, with the
    error."""
    return service.send_due(db.session, payout_provider(current_app.config), today=service.business_today(),
                            actor=current_actor())


@blp.route("/payout-bank-files", methods=["POST"])
@blp.auth(Role.FINANCE_MAKER)
@blp.response(201, s.BankFileDetailSchema)
@blp.alt_response(422, schema=ApiErrorSchema, description="No bank payout is due")
def create_bank_file():
    """Put every bank payout that is ready and due into a new transfer file; they become submitted."""
    bank_file = service.create_bank_file(db.session, current_actor(), today=service.business_today(),
                                         cipher=field_cipher())
    return bank_file, 201, {"Location": url_for("payouts_api.get_bank_file", bank_file_id=bank_file.public_id)}


@blp.route("/payout-bank-files", methods=["GET"])
@blp.auth(*FINANCE)
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.BankFilePage)
def list_bank_files(args):
    """List the bank transfer files, newest first."""
    page = service.list_bank_files(db.session, current_actor(), limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/payout-bank-files/<bank_file_id>", methods=["GET"])
@blp.auth(*FINANCE)
@blp.response(200, s.BankFileDetailSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such bank file")
def get_bank_file(bank_file_id):
    """A bank transfer file and its payouts (account numbers masked)."""
    return service.get_bank_file(db.session, current_actor(), bank_file_id)


def bank_file_response(bank_file_id: str) -> Response:
    """Answer the transfer file itself as a download (the API's and the pages' alike)."""
    content = service.bank_file_content(db.session, current_actor(), bank_file_id, cipher=field_cipher())
    return Response(content, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{bank_file_id}.csv"', "Cache-Control": "no-store"})


@blp.route("/payout-bank-files/<bank_file_id>/file.csv", methods=["GET"])
@blp.auth(*FINANCE)
@blp.response(200, description="The transfer file: UTF-8 CSV payee_name,bank_name,account_number,amount,"
                               "currency,reference (amounts in fen, reference the payout id)",
              content_type="text/csv")
@blp.alt_response(404, schema=ApiErrorSchema, description="No such bank file")
@blp.alt_response(409, schema=ApiErrorSchema, description="Bank details changed since it was made")
def bank_file_csv(bank_file_id):
    """Download the transfer file for the bank, with the full account numbers (the download is audited)."""
    return bank_file_response(bank_file_id)


@blp.route("/payout-bank-files/<bank_file_id>/statuses", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(200, s.AnswerImportSchema)
@blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {
        "type": "string", "format": "binary",
        "description": "The bank's answer: UTF-8 CSV reference,status,reason; status paid or failed"}}}}}})
@blp.alt_response(404, schema=ApiErrorSchema, description="No such bank file")
@blp.alt_response(422, schema=ApiErrorSchema, description="Not a CSV answer (lines in error are reported per line)")
def import_statuses(bank_file_id):
    """Import the bank's answer to a transfer file: each line marks its payout paid or failed; lines in error
    are reported with their number, and importing the same answer again changes nothing."""
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed({"file": ["Attach the bank's answer as a CSV file."]})
    return service.import_bank_statuses(db.session, current_actor(), bank_file_id, upload.stream)
