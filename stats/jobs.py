"""Keeping the console's figures fresh: a refresh runs in the background when a page or call finds them older
than STATS_REFRESH_AFTER seconds (one at a time), or on a schedule with `flask stats refresh`."""

from __future__ import annotations

import datetime as dt
import logging

from flask import current_app

from core.db import db, utcnow
from core.jobs import jobs
from core.redis import StoreUnavailable
from stats import service

log = logging.getLogger(__name__)
QUEUED_KEY = "stats:refresh-queued"
# A queued refresh that never ran (a dead worker) stops blocking the next one after this long.
QUEUED_TTL = 900


def refresh_job() -> None:
    """Refresh the figures in one transaction, then let the next refresh be queued."""
    try:
        with db.session_scope() as session:
            done = service.refresh(session)
            session.commit()
        log.info("stats refreshed: %s days from %s in %.1f s", done.days, done.first_day, done.seconds)
    finally:
        try:
            current_app.extensions["kv"].delete(QUEUED_KEY)
        except StoreUnavailable:
            pass


def refresh_if_stale(refreshed_at: dt.datetime | None) -> bool:
    """Queue a refresh when the figures are older than the configured age; True when one was queued."""
    after = current_app.config["STATS_REFRESH_AFTER"]
    if not after or (refreshed_at is not None and utcnow() - refreshed_at < dt.timedelta(seconds=after)):
        return False
    try:
        if not current_app.extensions["kv"].set(QUEUED_KEY, "1", QUEUED_TTL, only_if_absent=True):
            return False
    except StoreUnavailable:
        return False  # stale figures are still right as of their time; the page says when
    jobs.enqueue("stats.jobs:refresh_job")
    return True
