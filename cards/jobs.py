"""Background work of cards: bulk issuance runs."""

from __future__ import annotations

from flask import current_app

from cards import service
from core.db import db
from core.web import field_cipher


def run_issuance_job(run_id: str) -> None:
    """Run (or go on with) a bulk issuance; a crash leaves it failed and resumable."""
    service.run_bulk_issuance(db.session, field_cipher(), run_id, prefix=current_app.config["CARD_PREFIX"])
