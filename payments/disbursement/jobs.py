"""Background work of disbursements: the batch run and the daily expiry sweep."""

from __future__ import annotations

from flask import current_app

from core.db import db
from payments.disbursement import service


def run_batch_job(batch_id: str) -> None:
    """Run (or go on with) a batch; a crash leaves it failed and resumable, every paid line paid once."""
    cfg = current_app.config
    service.run_batch(db.session, batch_id, chunk=cfg["DISBURSEMENT_CHUNK"], pause=cfg["DISBURSEMENT_CHUNK_PAUSE"])
