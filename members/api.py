"""JSON endpoints of the member registry: unions, members, hardship entries and CSV imports."""

from __future__ import annotations

from flask import current_app, url_for

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.jobs import jobs
from core.models import Role
from core.web import current_actor, field_cipher
from members import schemas as s
from members import service
from members.jobs import run_import_guarded
from members.models import ImportStatus

blp = Blueprint("members_api", __name__, url_prefix="/api/v1",
                description="The union org tree and the real-name member registry")
ADMIN = Role.UNION_ADMIN
READERS = (Role.UNION_ADMIN, Role.AUDITOR)
FIRST_ROWS = 1000


@blp.route("/unions", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.UnionCreateSchema)
@blp.response(201, s.UnionSchema)
def create_union(body):
    """Add a union to the org tree (a federation root only for a platform-wide admin)."""
    return service.create_union(db.session, current_actor(), **body)


@blp.route("/unions", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.UnionQuery, location="query")
@blp.response(200, s.UnionPage)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such parent union, or outside your scope")
def list_unions(args):
    """List the unions in your scope; `parent_id` lists one union's children."""
    page = service.list_unions(db.session, current_actor(), parent_id=args.get("parent_id"),
                               limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/unions/<union_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.response(200, s.UnionSchema)
def get_union(union_id):
    """Return one union in your scope."""
    return service.get_union(db.session, current_actor(), union_id)


@blp.route("/members", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.MemberCreateSchema)
@blp.response(201, s.MemberSchema)
def create_member(body):
    """Register a member (ID number checked by GB 11643; one ID number, one member)."""
    return service.register_member(db.session, field_cipher(), current_actor(), service.MemberInput(**body))


@blp.route("/members", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.MemberQuery, location="query")
@blp.response(200, s.MemberPage)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such union, or outside your scope")
def list_members(args):
    """List members in your scope; `union_id` includes the unions under it, `hardship` the register."""
    page = service.list_members(db.session, field_cipher(), current_actor(), **args)
    return {"data": page.items, "next_cursor": page.next_cursor}


@blp.route("/members/<member_id>", methods=["GET"])
@blp.auth(*READERS, Role.MEMBER)
@blp.response(200, s.MemberSchema)
def get_member(member_id):
    """Return one member (a member sees only their own record)."""
    return service.get_member(db.session, current_actor(), member_id)


@blp.route("/members/<member_id>", methods=["PATCH"])
@blp.auth(ADMIN)
@blp.arguments(s.MemberUpdateSchema)
@blp.response(200, s.MemberSchema)
def update_member(body, member_id):
    """Change a member's name, phone, status, or union (a transfer)."""
    return service.update_member(db.session, field_cipher(), current_actor(), member_id, **body)


@blp.route("/members/<member_id>/hardship", methods=["PUT"])
@blp.auth(ADMIN)
@blp.arguments(s.HardshipInputSchema)
@blp.response(200, s.HardshipSchema)
def put_hardship(body, member_id):
    """Create or replace the member's hardship register entry."""
    return service.set_hardship(db.session, current_actor(), member_id, **body)


@blp.route("/members/<member_id>/hardship", methods=["DELETE"])
@blp.auth(ADMIN)
@blp.response(204)
def delete_hardship(member_id):
    """Take the member off the hardship register."""
    service.clear_hardship(db.session, current_actor(), member_id)


class _ImportWithRows:
    """An import together with the first page of its row results, for ImportSchema."""

    def __init__(self, imp, page):
        self._imp, self.rows, self.rows_next_cursor = imp, page.items, page.next_cursor

    def __getattr__(self, name):
        return getattr(self._imp, name)


def _import_document(imp) -> _ImportWithRows:
    return _ImportWithRows(imp, service.import_rows(db.session, imp, status=None, limit=FIRST_ROWS, cursor=None))


def _run_or_queue(imp, done_status: int):
    """Run an import now when what is left of it is small, else queue it; answer with its document."""
    # An inline run stopped by an unexpected error answers 202 with the import failed: it keeps its file
    # and goes on with POST .../resume.
    cfg = current_app.config
    location = {"Location": url_for("members_api.get_import", import_id=imp.public_id)}
    if imp.total_rows - imp.processed_rows <= cfg["IMPORT_INLINE_ROWS"]:
        imp = run_import_guarded(db.session, field_cipher(), imp.public_id, cfg["UPLOAD_FOLDER"])
        if imp.status == ImportStatus.COMPLETED:
            return _import_document(imp), done_status
        return _import_document(imp), 202, location
    jobs.enqueue("members.jobs:run_import_job", imp.public_id, job_id=f"{imp.public_id}-{imp.processed_rows}")
    db.session.refresh(imp)
    return _import_document(imp), 202, location


@blp.route("/members/imports", methods=["POST"])
@blp.auth(ADMIN)
@blp.arguments(s.ImportUploadSchema, location="files")
@blp.response(201, s.ImportSchema)
@blp.alt_response(202, schema=s.ImportSchema,
                  description="A large file, queued (poll the import), or a run that failed (resume the import)")
def create_import(files):
    """Import members from CSV (name,id_number,phone,union_id[,join_date]); re-importing changes nothing.

    Files up to IMPORT_INLINE_ROWS rows are processed at once (201, with the first 1000 row results);
    larger ones are queued (202) and the import is polled at its Location.
    """
    upload = files["file"]
    cfg = current_app.config
    imp = service.start_import(db.session, current_actor(), upload.stream, upload.filename, cfg["UPLOAD_FOLDER"],
                               cfg["IMPORT_MAX_ROWS"])
    return _run_or_queue(imp, 201)


@blp.route("/members/imports/<import_id>/resume", methods=["POST"])
@blp.auth(ADMIN)
@blp.response(200, s.ImportSchema)
@blp.alt_response(202, schema=s.ImportSchema,
                  description="Much left to do, queued (poll the import), or the run failed again")
@blp.alt_response(409, schema=ApiErrorSchema,
                  description="Completed (import_completed), still running (import_running), or its file is "
                              "gone (import_file_missing)")
def resume_import(import_id):
    """Run a failed or stalled import again from the first row it has not recorded."""
    imp = service.resume_import(db.session, current_actor(), import_id, current_app.config["UPLOAD_FOLDER"])
    return _run_or_queue(imp, 200)


@blp.route("/members/imports/<import_id>", methods=["GET"])
@blp.auth(ADMIN)
@blp.response(200, s.ImportSchema)
def get_import(import_id):
    """Return an import's progress and counts, with its first 1000 row results."""
    return _import_document(service.get_import(db.session, current_actor(), import_id))


@blp.route("/members/imports/<import_id>/rows", methods=["GET"])
@blp.auth(ADMIN)
@blp.arguments(s.ImportRowQuery, location="query")
@blp.response(200, s.ImportRowPage)
def list_import_rows(args, import_id):
    """Page through an import's per-line results; `status=rejected` for the problems only."""
    imp = service.get_import(db.session, current_actor(), import_id)
    page = service.import_rows(db.session, imp, status=args.get("status"), limit=args["limit"],
                               cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}

