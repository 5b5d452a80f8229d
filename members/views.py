"""Staff pages of the member registry: search, one member, and the CSV import with progress."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from core.db import db
from core.errors import DomainError
from core.jobs import jobs
from core.models import Role
from core.web import current_actor, field_cipher, page_roles
from members import service
from members.models import RowStatus

bp = Blueprint("members_pages", __name__, url_prefix="/console/members", template_folder="templates")
PAGE_SIZE = 50


@bp.route("/")
@page_roles(Role.UNION_ADMIN, Role.AUDITOR)
def search():
    """Search the registry by name, exact ID number, union and hardship."""
    actor = current_actor()
    args = request.args
    hardship = {"yes": True, "no": False}.get(args.get("hardship", ""))
    unions = service.list_unions(db.session, actor, parent_id=None, limit=200, cursor=None).items
    try:
        page = service.list_members(
            db.session, field_cipher(), actor, union_id=args.get("union_id") or None, hardship=hardship,
            q=args.get("q") or None, limit=PAGE_SIZE,
            cursor=args.get("cursor") or None)
    except DomainError as exc:
        flash(exc.message, "error")
        page = service.Page([], None)
    return render_template("members/search.html", page=page, unions=unions, args=args)


@bp.route("/lookup", methods=["POST"])
@page_roles(Role.UNION_ADMIN, Role.AUDITOR)
def lookup():
    """Find a member by exact ID number (POSTed, so the number never lands in a URL or access log)."""
    id_number = request.form.get("id_number", "")
    page = service.list_members(db.session, field_cipher(), current_actor(), id_number=id_number,
                                limit=1, cursor=None)
    if not page.items:
        flash(_("No member with that ID number in your scope."), "error")
        return redirect(url_for("members_pages.search"))
    return redirect(url_for("members_pages.detail", member_id=page.items[0].public_id))


@bp.route("/<member_id>")
@page_roles(Role.UNION_ADMIN, Role.AUDITOR)
def detail(member_id):
    """Show one member, masked."""
    member = service.get_member(db.session, current_actor(), member_id)
    return render_template("members/detail.html", member=member)


@bp.route("/import", methods=["GET", "POST"])
@page_roles(Role.UNION_ADMIN)
def import_form():
    """Upload a member CSV; the import runs in the background."""
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash(_("Choose a CSV file to upload."), "error")
            return _import_page(), 400
        try:
            imp = service.start_import(db.session, current_actor(), upload.stream, upload.filename,
                                       current_app.config["UPLOAD_FOLDER"], current_app.config["IMPORT_MAX_ROWS"])
        except DomainError as exc:
            messages = [t for texts in (exc.errors or {}).values() for t in texts] or [exc.message]
            for message in messages:
                flash(message, "error")
            return _import_page(), 422
        jobs.enqueue("members.jobs:run_import_job", imp.public_id, job_id=imp.public_id)
        return redirect(url_for("members_pages.import_status", import_id=imp.public_id))
    return _import_page()


def _import_page():
    """Render the upload form with the unions (and their ids) the admin may import into."""
    unions = service.list_unions(db.session, current_actor(), parent_id=None, limit=200, cursor=None).items
    return render_template("members/import.html", unions=unions)


@bp.route("/imports/<import_id>")
@page_roles(Role.UNION_ADMIN)
def import_status(import_id):
    """Show an import's progress bar and, when done, the rejected lines."""
    imp = service.get_import(db.session, current_actor(), import_id)
    rejected = service.import_rows(db.session, imp, status=RowStatus.REJECTED, limit=200,
                                   cursor=request.args.get("cursor") or None)
    return render_template("members/import_status.html", imp=imp, rejected=rejected)


@bp.route("/imports/<import_id>/progress")
@page_roles(Role.UNION_ADMIN)
def import_progress(import_id):
    """Return an import's counts for the progress bar."""
    imp = service.get_import(db.session, current_actor(), import_id)
    return jsonify(status=imp.status.value, total=imp.total_rows, processed=imp.processed_rows,
                   created=imp.created_rows, unchanged=imp.unchanged_rows, rejected=imp.rejected_rows)
