"""The append-only audit log: every state change, who made it, and what it was before and after."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.auth import Actor
from core.models import AuditEvent
from core.pagination import Page, paginate


def record(session: Session, actor: Actor, action: str, object_type: str, object_id: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AuditEvent:
    """Add an audit entry to the caller's transaction; before/after must already be masked."""
    event = AuditEvent(
        actor_id=actor.user_id,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=_jsonable(before),
        after=_jsonable(after),
        request_id=actor.request_id,
        ip=actor.ip,
    )
    session.add(event)
    return event


def _jsonable(value):
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        return value.value  # enums
    return value


def list_events(session: Session, *, action: str | None = None, object_id: str | None = None,
                actor_id: int | None = None, since: dt.datetime | None = None,
                until: dt.datetime | None = None, limit: int, cursor: str | None) -> Page:
    """Return audit entries, newest first, filtered."""
    query = select(AuditEvent)
    if action:
        # A dotted prefix selects a family: "member" matches "member.created".
        query = query.where((AuditEvent.action == action) | AuditEvent.action.startswith(action + "."))
    if object_id:
        query = query.where(AuditEvent.object_id == object_id)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since:
        query = query.where(AuditEvent.occurred_at >= since)
    if until:
        query = query.where(AuditEvent.occurred_at < until)
    return paginate(session, query, AuditEvent.id, limit=limit, cursor=cursor, descending=True)
