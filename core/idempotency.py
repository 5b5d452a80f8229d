"""Idempotency-Key for POSTs: a repeat with the same key and body gets the first answer again,
the same key with another body is refused (409), and a repeat while the first still runs waits."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

from flask import Response, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from core.db import db, utcnow
from core.errors import BadRequest, Conflict
from core.models import IdempotencyKey

KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
LOCK_SECONDS = 120
REPLAY_HEADER = "Idempotent-Replayed"


def _fingerprint() -> str:
    """Hash what the request says, not how it was framed (a multipart boundary differs per retry)."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.mimetype or ""):
        digest.update(part.encode() + b"\x00")
    if request.mimetype == "multipart/form-data":
        # A part without a name comes with None for one: sort by text so it never meets a str.
        for name, value in sorted(request.form.items(multi=True), key=lambda item: (str(item[0]), item[1])):
            digest.update(f"form:{name}={value}\x00".encode())
        for name, upload in sorted(request.files.items(multi=True), key=lambda item: str(item[0])):
            digest.update(f"file:{name}:{upload.filename}\x00".encode())
            while chunk := upload.stream.read(1 << 16):
                digest.update(chunk)
            upload.stream.seek(0)
    else:
        digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(row: IdempotencyKey) -> Response:
    resp = Response(row.response_body, status=row.response_status, mimetype="application/json")
    if row.response_location:
        resp.headers["Location"] = row.response_location
    resp.headers[REPLAY_HEADER] = "true"
    return resp


def run_once(user_id: int, view, /, *args, **kwargs):
    """Run a POST view at most once per (user, Idempotency-Key); replay its answer afterwards."""
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method != "POST":
        return view(*args, **kwargs)
    if not KEY_RE.match(key):
        raise BadRequest("Idempotency-Key must be 1-255 visible ASCII characters.", code="invalid_idempotency_key")
    fingerprint = _fingerprint()
    now = utcnow()
    # The key lives in its own transaction: it must be claimed before the work and kept after it.
    with db.session_scope() as keys:
        row = keys.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))
        if row is not None:
            if row.fingerprint != fingerprint:
                raise Conflict("This Idempotency-Key was used with a different request.",
                               code="idempotency_key_reused")
            if row.response_status is not None:
                return _replay(row)
            if row.locked_until and row.locked_until > now:
                raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.",
                               code="request_in_progress")
            row.locked_until = now + dt.timedelta(seconds=LOCK_SECONDS)
        else:
            row = IdempotencyKey(user_id=user_id, key=key, fingerprint=fingerprint,
                                 locked_until=now + dt.timedelta(seconds=LOCK_SECONDS))
            keys.add(row)
        try:
            keys.commit()
        except IntegrityError:
            raise Conflict("A request with this Idempotency-Key is still being processed; retry shortly.",
                           code="request_in_progress") from None
        row_id = row.id
    try:
        resp = view(*args, **kwargs)
    except Exception:
        _release(row_id)
        raise
    resp = resp if isinstance(resp, Response) else Response(resp)
    # The answer is built; end the request's own transaction (a view leaves nothing to commit) so the
    # key's bookkeeping below never nests inside it.
    db.session.rollback()
    if resp.status_code >= 500:
        _release(row_id)
        return resp
    with db.session_scope() as keys:
        row = keys.get(IdempotencyKey, row_id)
        row.response_status = resp.status_code
        row.response_body = resp.get_data(as_text=True)
        row.response_location = resp.headers.get("Location")
        row.locked_until = None
        keys.commit()
    return resp


def _release(row_id: int) -> None:
    """Forget a key whose request failed, so the client can retry it."""
    db.session.rollback()  # the failed request's work goes first, whatever it was
    with db.session_scope() as keys:
        keys.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))
        keys.commit()
