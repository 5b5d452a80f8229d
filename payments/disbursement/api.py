"""JSON endpoints of aid programs, fundings, disbursement batches and claw-backs (finance staff)."""

from __future__ import annotations

import csv
import io

from flask import Response, current_app, request, stream_with_context, url_for
from marshmallow import ValidationError

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.errors import BadRequest, Conflict, ValidationFailed
from core.jobs import jobs
from core.models import Role
from core.web import current_actor, field_cipher
from payments.disbursement import schemas as s
from payments.disbursement import service
from payments.disbursement.models import BatchStatus

blp = Blueprint("disbursement_api", __name__, url_prefix="/api/v1",
                description="Aid programs, their fundings, and batches paying them onto cards")
MAKER, APPROVER = Role.FINANCE_MAKER, Role.FINANCE_APPROVER
FINANCE = (MAKER, APPROVER)
READERS = (*FINANCE, Role.AUDITOR)


@blp.route("/programs", methods=["POST"])
@blp.auth(*FINANCE)
@blp.arguments(s.ProgramCreateSchema)
@blp.response(201, s.ProgramSchema)
def create_program(body):
    """Create an aid program with its budget account; restricted purses name categories and an expiry."""
    return service.create_program(db.session, current_actor(), **body)


@blp.route("/programs", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.ProgramPage)
def list_programs(args):
    """List the aid programs."""
    page = service.list_programs(db.session, limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/programs/<program_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.ProgramDetailSchema)
def get_program(program_id):
    """One program with its money: funded, available in the budget, reserved, paid onto cards."""
    program = service.get_program(db.session, program_id)
    program.figures = service.program_figures(db.session, program)
    return program


@blp.route("/programs/<program_id>/fundings", methods=["POST"])
@blp.auth(*FINANCE)
@blp.arguments(s.FundingCreateSchema)
@blp.response(201, s.FundingSchema)
def create_funding(body, program_id):
    """Record a deposit from the union's bank account; another approver confirms it."""
    return service.create_funding(db.session, current_actor(), program_id, **body)


@blp.route("/programs/<program_id>/fundings", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.PageArgs, location="query")
@blp.response(200, s.FundingPage)
def list_fundings(args, program_id):
    """The program's fundings."""
    page = service.list_fundings(db.session, program_id, limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/fundings/<funding_id>/approve", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.FundingSchema)
def approve_funding(funding_id):
    """Confirm a deposit (not the person who entered it): it is posted to the program's budget."""
    return service.approve_funding(db.session, current_actor(), funding_id)


@blp.route("/fundings/<funding_id>/reject", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.FundingSchema)
def reject_funding(funding_id):
    """Turn a deposit down."""
    return service.reject_funding(db.session, current_actor(), funding_id)


def _detail(batch):
    batch.by_union, batch.errors = service.preview(db.session, batch)
    return batch


@blp.route("/disbursements", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(201, s.BatchDetailSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such program, or no such union in the rule")
@blp.doc(requestBody={"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file", "program_id"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "CSV: id_number,amount[,note] or card_number,amount[,note]; amounts in fen"},
        "program_id": {"type": "string"}, "note": {"type": "string"}}}},
    "application/json": {"schema": {"$ref": "#/components/schemas/RuleBatch"}}}})
def create_batch():
    """Create a draft batch from a CSV upload or a rule; every line is checked and the preview totals
    returned before anything moves."""
    cfg = current_app.config
    actor = current_actor()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        try:
            form = s.UploadFormSchema().load(request.form.to_dict())
        except ValidationError as exc:
            raise ValidationFailed(exc.normalized_messages()) from None
        if upload is None:
            raise ValidationFailed({"file": ["Attach the CSV file."]})
        batch = service.create_batch_from_csv(db.session, field_cipher(), actor, form["program_id"], upload.stream,
                                              upload.filename, note=form["note"],
                                              max_lines=cfg["DISBURSEMENT_MAX_LINES"])
    elif request.is_json:
        try:
            body = s.RuleBatchSchema().load(request.get_json())
        except ValidationError as exc:
            raise ValidationFailed(exc.normalized_messages()) from None
        batch = service.create_batch_from_rule(db.session, actor, body["program_id"], service.Rule(**body["rule"]),
                                               note=body["note"], max_lines=cfg["DISBURSEMENT_MAX_LINES"])
    else:
        raise BadRequest("Send a CSV file as multipart/form-data, or a rule as JSON.", code="unsupported_media_type")
    return _detail(batch), 201, {"Location": url_for("disbursement_api.get_batch", batch_id=batch.public_id)}


@blp.route("/disbursements", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.BatchQuery, location="query")
@blp.response(200, s.BatchPage)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such program")
def list_batches(args):
    """List batches, newest last; `program_id` filters."""
    page = service.list_batches(db.session, program_id=args.get("program_id"), limit=args["limit"],
                                cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/disbursements/<batch_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.BatchDetailSchema)
def get_batch(batch_id):
    """A batch: status, line counts, amounts, totals by union and invalid lines by reason."""
    return _detail(service.get_batch(db.session, batch_id))


@blp.route("/disbursements/<batch_id>/lines", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.LineQuery, location="query")
@blp.response(200, s.LinePage)
def list_lines(args, batch_id):
    """Page through a batch's lines; `status=invalid` for the problems."""
    batch = service.get_batch(db.session, batch_id)
    page = service.list_lines(db.session, batch, status=args.get("status"), limit=args["limit"],
                              cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/disbursements/<batch_id>/result.csv", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, description="Every line with its outcome, as CSV (references masked)")
def result_csv(batch_id):
    """Download every line with what became of it."""
    return result_csv_response(service.get_batch(db.session, batch_id))


def result_csv_response(batch) -> Response:
    """Stream a batch's lines with their outcomes as a CSV download (the API's and the pages' alike)."""
    internal_id = batch.id

    def generate():
        # Streamed after the view returned: the rows are read in a session of their own.
        out = io.StringIO()
        writer = csv.writer(out)
        out.write("\ufeff")
        with db.session_scope() as session:
            for row in service.result_rows(session, internal_id):
                writer.writerow(row)
                if out.tell() > 64 * 1024:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
        yield out.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{batch.public_id}-result.csv"', "Cache-Control": "no-store"})


def _start(batch):
    jobs.enqueue("payments.disbursement.jobs:run_batch_job", batch.public_id,
                 job_id=f"{batch.public_id}-{batch.done_lines + batch.failed_lines}")
    db.session.expire_all()
    return service.get_batch(db.session, batch.public_id)


@blp.route("/disbursements/<batch_id>/approve", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.BatchDetailSchema)
@blp.alt_response(422, schema=ApiErrorSchema,
                  description="No line to pay, or the program's budget does not cover them")
def approve_batch(batch_id):
    """Approve a draft (not its maker; above the threshold, two different approvers). The last approval
    reserves the total from the budget and starts the run in the background."""
    batch = service.approve_batch(db.session, current_actor(), batch_id,
                                  second_approval_above=current_app.config["DISBURSEMENT_SECOND_APPROVAL_ABOVE"])
    if batch.status == BatchStatus.APPROVED:
        batch = _start(batch)
    return _detail(batch)


@blp.route("/disbursements/<batch_id>/cancel", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(200, s.BatchDetailSchema)
def cancel_batch(batch_id):
    """Discard a draft."""
    return _detail(service.cancel_batch(db.session, current_actor(), batch_id))


@blp.route("/disbursements/<batch_id>/resume", methods=["POST"])
@blp.auth(*FINANCE)
@blp.response(202, s.BatchDetailSchema)
def resume_batch(batch_id):
    """Run a batch that failed or stopped moving again, from the first line it has not paid."""
    batch = service.get_batch(db.session, batch_id)
    if not service.stalled(batch):
        raise Conflict(f"The batch is {batch.status.value} and not stalled.", code="batch_not_stalled")
    return _detail(_start(batch))


@blp.route("/disbursements/<batch_id>/lines/<int:line_no>/clawbacks", methods=["POST"])
@blp.auth(*FINANCE)
@blp.arguments(s.ClawbackCreateSchema)
@blp.response(201, s.ClawbackSchema)
def request_clawback(body, batch_id, line_no):
    """Ask to take back one paid line's money that is still unspent; another approver carries it out."""
    return service.request_clawback(db.session, current_actor(), batch_id, line_no, body["reason"])


@blp.route("/clawbacks/<clawback_id>/approve", methods=["POST"])
@blp.auth(APPROVER)
@blp.response(200, s.ClawbackSchema)
def approve_clawback(clawback_id):
    """Carry out a claw-back (not the person who asked for it)."""
    return service.approve_clawback(db.session, current_actor(), clawback_id)


def document(api) -> None:
    """Add the shapes only named by reference (the JSON body of POST /disbursements) to the OpenAPI document."""
    api.spec.components.schema("RuleBatch", schema=s.RuleBatchSchema)
