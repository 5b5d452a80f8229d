"""Background entry points of the members domain (run by core.jobs in an app context)."""

from __future__ import annotations

import logging

from flask import current_app

from core.db import db
from members import service

log = logging.getLogger(__name__)


def run_import_job(import_public_id: str) -> None:
    """Run (or resume) a member import; on an unexpected error mark it failed, resumable."""
    with db.session_scope() as session:
        try:
            service.run_import(session, current_app.extensions["cipher"], import_public_id,
                               current_app.config["UPLOAD_FOLDER"])
        except Exception as exc:
            log.exception("member import %s failed", import_public_id)
            service.fail_import(session, import_public_id, f"{type(exc).__name__}: the import stopped; "
                                                           "run it again to resume.")
            raise
