"""Background entry points of the members domain (run by core.jobs in an app context)."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy.orm import Session

from core.crypto import FieldCipher
from core.db import db
from core.errors import DomainError
from members import service
from members.models import MemberImport

log = logging.getLogger(__name__)


def _stopped(session: Session, import_public_id: str, exc: Exception) -> MemberImport | None:
    """Log why an import stopped and mark it failed; its file stays, so it can be resumed."""
    log.exception("member import %s failed", import_public_id)
    return service.fail_import(session, import_public_id,
                               f"{type(exc).__name__}: the import stopped; resume it to continue where it stopped.")


def run_import_guarded(session: Session, cipher: FieldCipher, import_public_id: str,
                       upload_dir: str) -> MemberImport:
    """Run (or resume) an import now; on an unexpected error return it marked failed instead of raising."""
    try:
        return service.run_import(session, cipher, import_public_id, upload_dir)
    except DomainError:
        raise
    except Exception as exc:  # whatever stopped it, the import must not stay "running" for ever
        return _stopped(session, import_public_id, exc)


def run_import_job(import_public_id: str) -> None:
    """Run (or resume) a member import; on an unexpected error mark it failed, resumable, and re-raise."""
    with db.session_scope() as session:
        try:
            service.run_import(session, current_app.extensions["cipher"], import_public_id,
                               current_app.config["UPLOAD_FOLDER"])
        except Exception as exc:
            _stopped(session, import_public_id, exc)
            raise
