"""Finance pages of aid programs: programs and their money, fundings, batches with their preview,
four-eyes approval, a polled progress bar, the result file, and claw-backs."""

from __future__ import annotations

import datetime as dt
import logging
import re

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from marshmallow import Schema, ValidationError
from sqlalchemy import select

from core.db import db
from core.errors import DomainError, ValidationFailed
from core.i18n import BUSINESS_TZ, N_
from core.jobs import jobs
from core.models import Role, User
from core.money import format_amount, parse_yuan
from core.web import current_actor, field_cipher, page_roles
from members import service as members
from merchants.models import MerchantCategory
from payments.disbursement import schemas as s
from payments.disbursement import service
from payments.disbursement.api import result_csv_response
from payments.disbursement.models import (
    BatchStatus,
    Disbursement,
    LineStatus,
    ProgramKind,
    PursePolicy,
)

log = logging.getLogger(__name__)
bp = Blueprint("disbursement_pages", __name__, url_prefix="/finance", template_folder="templates")

MAKER, APPROVER = Role.FINANCE_MAKER, Role.FINANCE_APPROVER
FINANCE = (MAKER, APPROVER)
READERS = (*FINANCE, Role.AUDITOR)
PROGRAMS_PAGE = 20
FUNDINGS_PAGE = 50
BATCHES_PAGE = 50
LINES_PAGE = 50
CLAWBACKS_ON_PAGE = 100
UNIONS_IN_CHART = 12
UNIONS_TO_CHOOSE = 200
PROGRAMS_TO_CHOOSE = 200
# Progress is polled every second; the bar stops asking after about ten minutes and offers a reload.
POLL_LIMIT = 600

KIND_LABELS = {
    "hardship_aid": N_("Hardship aid"),
    "student_aid": N_("Student aid"),
    "medical_aid": N_("Medical mutual aid"),
    "employment_support": N_("Employment and business start-up support"),
    "consumption_voucher": N_("Consumption vouchers"),
}
PURSE_LABELS = {"general": N_("General balance"), "restricted": N_("Restricted purse")}
PROGRAM_STATUS = {"active": N_("Active"), "closed": N_("Closed")}
FUNDING_STATUS = {"pending": N_("Waiting for approval"), "approved": N_("Approved"), "rejected": N_("Rejected")}
BATCH_STATUS = {
    "draft": N_("Draft"),
    "approved": N_("Approved"),
    "running": N_("Paying"),
    "completed": N_("Completed"),
    "failed": N_("Stopped"),
    "cancelled": N_("Cancelled draft"),
}
LINE_STATUS = {"valid": N_("Valid"), "invalid": N_("Invalid"), "done": N_("Paid"), "failed": N_("Failed")}
CLAWBACK_STATUS = {"pending": N_("Waiting for approval"), "approved": N_("Carried out"), "rejected": N_("Rejected")}
# A short name for each reason the service gives a line (service.ERRORS has the sentences).
REASONS = {
    "invalid_id_number": N_("Invalid ID number"),
    "invalid_card_number": N_("Invalid card number"),
    "invalid_amount": N_("Invalid amount"),
    "amount_out_of_range": N_("Amount out of range"),
    "unknown_member": N_("Unknown member"),
    "unknown_card": N_("Unknown card"),
    "duplicate_line": N_("Member paid twice"),
    "not_eligible": N_("Not eligible"),
    "no_active_card": N_("No usable card"),
    "card_not_usable": N_("Card no longer usable"),
}
LABELS = {"kind": KIND_LABELS, "purse": PURSE_LABELS, "program": PROGRAM_STATUS, "funding": FUNDING_STATUS,
          "batch": BATCH_STATUS, "line": LINE_STATUS, "clawback": CLAWBACK_STATUS, "reason": REASONS}
# The service's sentences people meet on these pages, so they read in the page's language.
SERVICE_MESSAGES = (
    N_("Not a valid ID number."),
    N_("Not a valid card number."),
    N_("The amount is not a whole number of fen."),
    N_("The amount is zero, negative, or above the program's limit for one line."),
    N_("No member with this ID number."),
    N_("No card with this number."),
    N_("The member is already paid by an earlier line of this batch."),
    N_("The member is not active, or not in a union this program covers."),
    N_("The member has no card that can take money (none issued, or lost or cancelled)."),
    N_("The card was lost or cancelled after the batch was checked."),
    N_("Give the program a name (1-100 characters)."),
    N_("Unknown union."),
    N_("The union is outside the program's unions."),
    N_("A restricted purse names the merchant categories it may be spent at."),
    N_("A restricted purse needs an expiry date."),
    N_("The expiry date has passed."),
    N_("Only a restricted purse has categories and an expiry date."),
    N_("Programs are funded in CNY."),
    N_("The program is closed."),
    N_("The funding was entered by you: another approver must confirm it."),
    N_("The batch was entered by you: another approver must confirm it."),
    N_("The claw-back was entered by you: another approver must confirm it."),
    N_("You gave the first approval: a second, different approver must give the other."),
    N_("The batch has no valid line to pay."),
    N_("The file is empty."),
    N_("The file is not UTF-8 CSV."),
    N_("The header must be id_number,amount[,note] or card_number,amount[,note]."),
    N_("Only a paid line can be taken back."),
    N_("Say why the money is taken back."),
)
# Refusals whose text names changing details: a fixed sentence per machine word.
CODE_MESSAGES = {
    "funding_decided": N_("The funding has already been decided."),
    "batch_not_draft": N_("The batch is no longer a draft."),
    "clawback_pending": N_("A claw-back of this line is already waiting for approval."),
    "clawback_decided": N_("The claw-back has already been decided."),
}
# Field messages with numbers in them: the pattern, the sentence to say instead, and how to write its numbers.
NUMBERED_MESSAGES = (
    (re.compile(r"^Line (\d+) is not UTF-8 CSV\.$"),
     N_("Line %(n)s is not UTF-8 text: save the file as CSV UTF-8 and upload it again."), str),
    (re.compile(r"^A batch has at most (\d+) lines\.$"), N_("A batch has at most %(n)s lines."), str),
    (re.compile(r"^The rule picks (\d+) members; a batch has at most (\d+) lines\.$"),
     N_("The rule picks %(n)s members; a batch has at most %(m)s lines."), str),
    (re.compile(r"^Between 1 and (\d+) fen\.$"), N_("Between ¥0.01 and %(n)s."), lambda fen: format_amount(int(fen))),
)
# What to say next to a form field the input schema refused.
FIELD_HINTS = {
    "name": N_("Give the program a name (1-100 characters)."),
    "kind": N_("Choose a kind of aid."),
    "purse": N_("Choose where the money lands."),
    "union_id": N_("Choose a union."),
    "allowed_categories": N_("Choose categories from the list."),
    "expires_at": N_("Enter a date."),
    "max_line_amount": N_("Between ¥0.01 and ¥1,000,000.00."),
    "amount": N_("Enter an amount in yuan, such as 500 or 500.50."),
    "reference": N_("Enter the bank's reference of the deposit (up to 100 characters)."),
    "note": N_("At most 500 characters."),
    "reason": N_("Say why the money is taken back (up to 500 characters)."),
    "hardship_min_level": N_("Choose a level from the list."),
    "program_id": N_("Choose a program."),
}


def _hint(field: str) -> str:
    """Say what a form field wants, in the page's language."""
    return _(FIELD_HINTS[field])


def _say(message: str) -> str:
    """Translate one of the service's sentences when it is a known one."""
    if message in SERVICE_MESSAGES:
        return _(message)
    for pattern, sentence, write in NUMBERED_MESSAGES:
        match = pattern.match(message)
        if match:
            return _(sentence, **dict(zip(("n", "m"), map(write, match.groups()))))
    return message


def _explain(exc: DomainError) -> str:
    """Say why the service refused, in the page's language where the refusal is a known one."""
    if exc.errors:
        return " ".join(_say(t) for texts in exc.errors.values() for t in texts)
    if exc.code in CODE_MESSAGES:
        return _(CODE_MESSAGES[exc.code])
    return _say(exc.message)


def _field_errors(exc: DomainError) -> dict[str, list[str]]:
    """Put a refusal next to the fields it is about (`_` for the form as a whole)."""
    if exc.errors:
        return {field.split(".")[-1]: [_say(t) for t in texts] for field, texts in exc.errors.items()}
    return {"_": [_explain(exc)]}


def _load(schema: Schema, data: dict) -> dict:
    """Check form input with the API's schema; say what is wrong in the page's language."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        fields = exc.normalized_messages()
        raise ValidationFailed({name: [_hint(name) if name in FIELD_HINTS else str(texts)]
                                for name, texts in fields.items()}) from None


@bp.context_processor
def _helpers():
    def label(kind: str, value) -> str:
        value = getattr(value, "value", value)
        text = LABELS[kind].get(value)
        return _(text) if text else str(value)

    return {"label": label, "say": _say, "MAKER": MAKER.value, "APPROVER": APPROVER.value,
            "FINANCE": {MAKER.value, APPROVER.value}}


def _refused(exc: DomainError) -> None:
    """Drop what the refused change left in the session and tell why (a missing object stays a 404)."""
    db.session.rollback()
    if exc.status == 404:
        raise exc
    flash(_explain(exc), "error")


# --- programs ------------------------------------------------------------------------------------

def _unions():
    return members.list_unions(db.session, current_actor(), parent_id=None, limit=UNIONS_TO_CHOOSE, cursor=None).items


def _program_input(form) -> dict:
    """Read the new-program form into the API's program input."""
    errors: dict[str, list[str]] = {}
    data = {"name": form.get("name", ""), "kind": form.get("kind", ""), "purse": form.get("purse", ""),
            "union_id": form.get("union_id", "")}
    if data["purse"] == PursePolicy.RESTRICTED.value:
        data["allowed_categories"] = form.getlist("allowed_categories")
        if form.get("expires_on"):
            try:
                day = dt.date.fromisoformat(form["expires_on"])
            except ValueError:
                errors["expires_at"] = [_hint("expires_at")]
            else:
                # The purse can be spent until the end of that day in the union's time zone.
                data["expires_at"] = dt.datetime.combine(day, dt.time(23, 59, 59), BUSINESS_TZ).isoformat()
    if form.get("max_line_amount", "").strip():
        amount = parse_yuan(form["max_line_amount"])
        if amount is None:
            errors["max_line_amount"] = [_hint("max_line_amount")]
        else:
            data["max_line_amount"] = amount
    try:
        body = _load(s.ProgramCreateSchema(), data)
    except ValidationFailed as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    return body


def _programs_page(errors: dict | None = None, status: int = 200):
    page = service.list_programs(db.session, limit=PROGRAMS_PAGE, cursor=request.args.get("cursor") or None)
    rows = [(p, service.program_figures(db.session, p)) for p in page.items]
    unions = _unions() if current_actor().role in FINANCE else []
    chart = [(p.name, [f.funded, f.available, f.reserved, f.disbursed]) for p, f in rows]
    html = render_template("disbursement/programs.html", page=page, rows=rows, chart=chart, unions=unions,
                           errors=errors or {}, form=request.form, kinds=list(ProgramKind),
                           categories=list(MerchantCategory))
    return html, status


@bp.route("/programs/")
@page_roles(*READERS)
def programs():
    """The aid programs with their money (funded, available, reserved, paid out) as a chart and a table."""
    return _programs_page()


@bp.route("/programs/", methods=["POST"])
@page_roles(*FINANCE)
def create_program():
    """Create an aid program with its budget account."""
    try:
        program = service.create_program(db.session, current_actor(), **_program_input(request.form))
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return _programs_page(_field_errors(exc), exc.status)
    flash(_("Program created. Enter a funding to put money in its budget."), "info")
    return redirect(url_for("disbursement_pages.program", program_id=program.public_id))


def _program_page(program_id: str, errors: dict | None = None, status: int = 200):
    program = service.get_program(db.session, program_id)
    args = request.args
    fundings = service.list_fundings(db.session, program_id, limit=FUNDINGS_PAGE,
                                     cursor=args.get("fundings_cursor") or None)
    batches = service.list_batches(db.session, program_id=program_id, limit=BATCHES_PAGE,
                                   cursor=args.get("batches_cursor") or None)
    html = render_template("disbursement/program.html", program=program,
                           figures=service.program_figures(db.session, program), fundings=fundings, batches=batches,
                           errors=errors or {}, form=request.form)
    return html, status


@bp.route("/programs/<program_id>")
@page_roles(*READERS)
def program(program_id):
    """One program: its rules, its money, its fundings and its batches."""
    return _program_page(program_id)


@bp.route("/programs/<program_id>/fundings", methods=["POST"])
@page_roles(*FINANCE)
def create_funding(program_id):
    """Record a deposit from the union's bank account; another approver confirms it."""
    form = request.form
    try:
        amount = parse_yuan(form.get("amount"))
        # An amount that is not one is refused by the schema's range, like a negative one.
        body = _load(s.FundingCreateSchema(), {"amount": amount if amount is not None else -1,
                                               "reference": form.get("reference", ""), "note": form.get("note", "")})
        funding = service.create_funding(db.session, current_actor(), program_id, **body)
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return _program_page(program_id, _field_errors(exc), exc.status)
    flash(_("Funding of %(amount)s entered: another approver confirms it.", amount=format_amount(funding.amount)),
          "info")
    return redirect(url_for("disbursement_pages.program", program_id=program_id))


@bp.route("/programs/<program_id>/fundings/<funding_id>/<any(approve, reject):decision>", methods=["POST"])
@page_roles(APPROVER)
def decide_funding(program_id, funding_id, decision):
    """Confirm a deposit (it is posted to the program's budget) or turn it down."""
    try:
        if decision == "approve":
            funding = service.approve_funding(db.session, current_actor(), funding_id)
            flash(_("Funding approved: %(amount)s is in the budget.", amount=format_amount(funding.amount)), "info")
        else:
            service.reject_funding(db.session, current_actor(), funding_id)
            flash(_("Funding rejected: nothing moved."), "info")
    except DomainError as exc:
        _refused(exc)
    return redirect(url_for("disbursement_pages.program", program_id=program_id))


# --- new batches ---------------------------------------------------------------------------------

def _new_batch_page(errors: dict | None = None, status: int = 200):
    programs = service.list_programs(db.session, limit=PROGRAMS_TO_CHOOSE, cursor=None).items
    chosen = request.values.get("program_id") or ""
    program = next((p for p in programs if p.public_id == chosen), None)
    if chosen and program is None:
        program = service.get_program(db.session, chosen)
    html = render_template("disbursement/new_batch.html", programs=programs, program=program, unions=_unions(),
                           errors=errors or {}, form=request.form, source=request.form.get("source", "csv"),
                           max_lines=current_app.config["DISBURSEMENT_MAX_LINES"])
    return html, status


@bp.route("/disbursements/new")
@page_roles(*FINANCE)
def new_batch():
    """Upload a CSV or define a rule for a program; every line is checked before anything moves."""
    return _new_batch_page()


def _create_batch(actor, form):
    cfg = current_app.config
    if form.get("source") == "rule":
        amount = parse_yuan(form.get("amount"))
        level = form.get("hardship_min_level") or None
        rule = {"amount": amount if amount is not None else -1}
        if form.get("union_id"):
            rule["union_id"] = form["union_id"]
        if level:
            rule["hardship_min_level"] = int(level) if level.isdigit() else -1
        rule = _load(s.RuleSchema(), rule)
        head = _load(s.UploadFormSchema(), {"program_id": form.get("program_id", ""), "note": form.get("note", "")})
        return service.create_batch_from_rule(db.session, actor, head["program_id"], service.Rule(**rule),
                                              note=head["note"], max_lines=cfg["DISBURSEMENT_MAX_LINES"])
    head = _load(s.UploadFormSchema(), {"program_id": form.get("program_id", ""), "note": form.get("note", "")})
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationFailed({"file": [_("Choose a CSV file to upload.")]})
    return service.create_batch_from_csv(db.session, field_cipher(), actor, head["program_id"], upload.stream,
                                         upload.filename, note=head["note"], max_lines=cfg["DISBURSEMENT_MAX_LINES"])


@bp.route("/disbursements/new", methods=["POST"])
@page_roles(*FINANCE)
def create_batch():
    """Create a draft batch from the uploaded CSV or the rule, and show its preview."""
    try:
        batch = _create_batch(current_actor(), request.form)
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        return _new_batch_page(_field_errors(exc), exc.status)
    flash(_("%(total)s lines checked: %(valid)s can be paid, %(invalid)s cannot.", total=batch.total_lines,
            valid=batch.valid_lines, invalid=batch.invalid_lines), "info")
    return redirect(url_for("disbursement_pages.batch", batch_id=batch.public_id))


# --- one batch -----------------------------------------------------------------------------------

def _progress(batch: Disbursement) -> dict:
    processed = batch.done_lines + batch.failed_lines
    total = batch.valid_lines
    return {"status": batch.status.value, "total": total, "processed": processed, "done": batch.done_lines,
            "failed": batch.failed_lines, "done_amount": batch.done_amount, "failed_amount": batch.failed_amount,
            "percent": processed * 100 // total if total else 100, "stalled": service.stalled(batch)}


def _names(*user_ids: int | None) -> dict[int, str]:
    """The display names of the people who entered and approved a batch."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


def _lines_shown(batch: Disbursement) -> str:
    """Which lines the page lists unless told: the problems while there are some, else the paid ones."""
    wanted = request.args.get("lines")
    if wanted in ("all", *LINE_STATUS):
        return wanted
    if batch.invalid_lines:
        return LineStatus.INVALID.value
    if batch.failed_lines:
        return LineStatus.FAILED.value
    return LineStatus.DONE.value if batch.done_lines else "all"


@bp.route("/disbursements/<batch_id>")
@page_roles(*READERS)
def batch(batch_id):
    """A batch: status, counts, the preview by union and by reason, lines, approval, progress, claw-backs."""
    batch = service.get_batch(db.session, batch_id)
    by_union, reasons = service.preview(db.session, batch)
    shown = _lines_shown(batch)
    lines = service.list_lines(db.session, batch, status=None if shown == "all" else LineStatus(shown),
                               limit=LINES_PAGE, cursor=request.args.get("cursor") or None)
    rule_union = None
    if batch.rule and batch.rule.get("union_id"):
        rule_union = members.get_union(db.session, current_actor(), batch.rule["union_id"])
    names = _names(batch.created_by_id, batch.approved_by_id, batch.second_approved_by_id)
    return render_template("disbursement/batch.html", batch=batch, program=batch.program, by_union=by_union,
                           chart_unions=[(u.name, [u.amount]) for u in by_union[:UNIONS_IN_CHART]],
                           reasons=sorted(reasons.items(), key=lambda r: -r[1]),
                           lines=lines, shown=shown, clawbacks=service.list_clawbacks(db.session, batch, limit=CLAWBACKS_ON_PAGE), progress=_progress(batch),
                           rule_union=rule_union, names=names, poll_limit=POLL_LIMIT)


@bp.route("/disbursements/<batch_id>/progress")
@page_roles(*READERS)
def progress(batch_id):
    """A batch's counts for the progress bar."""
    return jsonify(_progress(service.get_batch(db.session, batch_id)))


@bp.route("/disbursements/<batch_id>/result.csv")
@page_roles(*READERS)
def result_csv(batch_id):
    """Download every line with what became of it (references masked)."""
    return result_csv_response(service.get_batch(db.session, batch_id))


def _start(batch: Disbursement) -> None:
    """Hand the run to the background worker (inline in sync mode, where a crash must not end the page)."""
    try:
        jobs.enqueue("payments.disbursement.jobs:run_batch_job", batch.public_id,
                     job_id=f"{batch.public_id}-{batch.done_lines + batch.failed_lines}")
    except Exception:
        # The batch is recorded as failed and can be resumed from its page.
        log.exception("disbursement %s stopped", batch.public_id)
        db.session.rollback()
        flash(_("The payment run stopped; resume it to go on."), "error")


def _back_to(batch_id: str):
    return redirect(url_for("disbursement_pages.batch", batch_id=batch_id))


@bp.route("/disbursements/<batch_id>/approve", methods=["POST"])
@page_roles(APPROVER)
def approve_batch(batch_id):
    """Approve a draft (not its maker); the last approval reserves the total and starts the run."""
    actor = current_actor()
    try:
        batch = service.approve_batch(db.session, actor, batch_id,
                                      second_approval_above=current_app.config["DISBURSEMENT_SECOND_APPROVAL_ABOVE"])
    except DomainError as exc:
        db.session.rollback()
        if exc.status == 404:
            raise
        if exc.code == "insufficient_budget":
            batch = service.get_batch(db.session, batch_id)
            figures = service.program_figures(db.session, batch.program)
            flash(_("The program's budget holds %(available)s, less than the batch's %(amount)s: fund the program "
                    "first.", available=format_amount(figures.available), amount=format_amount(batch.amount)),
                  "error")
        else:
            flash(_explain(exc), "error")
        return _back_to(batch_id)
    if batch.status == BatchStatus.APPROVED:
        flash(_("Approved: %(amount)s is reserved and the lines are being paid.", amount=format_amount(batch.amount)),
              "info")
        _start(batch)
    else:
        flash(_("First approval given: a second, different approver must approve too."), "info")
    return _back_to(batch_id)


@bp.route("/disbursements/<batch_id>/cancel", methods=["POST"])
@page_roles(*FINANCE)
def cancel_batch(batch_id):
    """Discard a draft (nothing has moved)."""
    try:
        service.cancel_batch(db.session, current_actor(), batch_id)
        flash(_("The batch is cancelled; nothing was paid."), "info")
    except DomainError as exc:
        _refused(exc)
    return _back_to(batch_id)


@bp.route("/disbursements/<batch_id>/resume", methods=["POST"])
@page_roles(*FINANCE)
def resume_batch(batch_id):
    """Run a batch that failed or stopped moving again, from the first line it has not paid."""
    batch = service.get_batch(db.session, batch_id)
    if not service.stalled(batch):
        flash(_("The batch has not stopped: there is nothing to resume."), "error")
    else:
        flash(_("Paying goes on from the first line not paid yet."), "info")
        _start(batch)
    return _back_to(batch_id)


@bp.route("/disbursements/<batch_id>/lines/<int:line_no>/clawback", methods=["POST"])
@page_roles(*FINANCE)
def request_clawback(batch_id, line_no):
    """Ask to take back one paid line's money that is still unspent; another approver carries it out."""
    try:
        body = _load(s.ClawbackCreateSchema(), {"reason": request.form.get("reason", "").strip()})
        service.request_clawback(db.session, current_actor(), batch_id, line_no, body["reason"])
        flash(_("Claw-back of line %(line)s requested: another approver carries it out.", line=line_no), "info")
    except DomainError as exc:
        _refused(exc)
    return redirect(url_for("disbursement_pages.batch", batch_id=batch_id, lines=LineStatus.DONE.value,
                            _anchor="clawbacks"))


@bp.route("/disbursements/<batch_id>/clawbacks/<clawback_id>/approve", methods=["POST"])
@page_roles(APPROVER)
def approve_clawback(batch_id, clawback_id):
    """Carry out a claw-back (not the person who asked for it): what is unspent goes back to the budget."""
    try:
        clawback = service.approve_clawback(db.session, current_actor(), clawback_id)
        flash(_("Claw-back carried out: %(amount)s went back to the program's budget.",
                amount=format_amount(clawback.amount_taken)), "info")
    except DomainError as exc:
        _refused(exc)
    return redirect(url_for("disbursement_pages.batch", batch_id=batch_id, _anchor="clawbacks"))
