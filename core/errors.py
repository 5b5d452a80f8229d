"""Domain errors and their one mapping to HTTP answers: JSON under /api, a friendly page elsewhere."""

from __future__ import annotations

import json
import logging

from flask import Flask, current_app, jsonify, render_template, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from core.redis import StoreUnavailable

log = logging.getLogger(__name__)

HTTP_WORDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


# SQLSTATE classes of a database that cannot finish the request now but may on a retry: connection
# exceptions, transaction rollbacks (serialization failures, deadlocks), insufficient resources, operator
# intervention (shutdown, a cancelled statement); and a lock not granted in time.
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
TRANSIENT_SQLSTATES = ("55P03",)


class DomainError(Exception):
    """A refusal a client can understand: an HTTP status, a machine word and a human message."""

    status = 422
    code = "unprocessable"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 errors: dict[str, list[str]] | None = None, headers: dict | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        if code:
            self.code = code
        self.errors = errors
        self.headers = headers or {}


class BadRequest(DomainError):
    status, code, message = 400, "bad_request", "The request is malformed."


class Unauthorized(DomainError):
    status, code, message = 401, "unauthorized", "Missing or invalid credentials."


class Forbidden(DomainError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(DomainError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(DomainError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class RuleViolation(DomainError):
    """A business rule refused the request (422 with a specific machine word)."""

    status, code = 422, "rule_violation"


class ValidationFailed(DomainError):
    status, code, message = 422, "validation_error", "Some fields are invalid."

    def __init__(self, errors: dict[str, list[str]], message: str | None = None, *, code: str | None = None):
        super().__init__(message, code=code, errors=field_errors(errors))


class TooManyAttempts(DomainError):
    status, code, message = 429, "too_many_attempts", "Too many attempts; try again later."

    def __init__(self, retry_after: int, message: str | None = None, *, code: str | None = None):
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


class PayloadTooLarge(DomainError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class ServiceUnavailable(DomainError):
    status, code, message = 503, "service_unavailable", "A service this needs is unavailable."

    def __init__(self, message: str | None = None, *, code: str | None = None, retry_after: int = 5):
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)})


def wants_json() -> bool:
    """Tell whether the current request is an API call (JSON errors) or a page."""
    return request.path.startswith("/api/") or request.path == "/healthz"


def error_body(status: int, error: str, message: str, errors: dict | None = None) -> dict:
    """Return the API.md error document."""
    body = {"code": status, "error": error, "message": message}
    if errors:
        body["errors"] = errors
    return body


def _flatten_webargs(messages) -> dict[str, list[str]]:
    """Turn webargs' {location: {field: [...]}} into {field: [...]}."""
    out: dict[str, list[str]] = {}
    if not isinstance(messages, dict):
        return {"_schema": [str(messages)]}
    for _location, fields in messages.items():
        if isinstance(fields, dict):
            for field, texts in fields.items():
                out[str(field)] = _texts(texts)
        else:
            out.setdefault("_schema", []).extend(_texts(fields))
    return out


def field_errors(messages) -> dict[str, list[str]]:
    """Turn marshmallow's messages into {field: [text]}; a nested field's texts read "key: text"."""
    if not isinstance(messages, dict):
        return {"_schema": _texts(messages)}
    return {str(field): _texts(texts) for field, texts in messages.items()}


def _texts(value) -> list[str]:
    if isinstance(value, list):
        return [t if isinstance(t, str) else json.dumps(t, ensure_ascii=False) for t in value]
    if isinstance(value, dict):
        # Nested schema errors: keep them readable as "key: text".
        return [f"{k}: {t}" for k, v in value.items() for t in _texts(v)]
    return [str(value)]


def http_exception_body(exc: HTTPException) -> tuple[dict, int]:
    """Build the error document for a werkzeug HTTPException (including flask-smorest aborts)."""
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if status == 400 and messages is not None:
        return error_body(400, "malformed_json", "The request body is not valid JSON."), 400
    if status == 422 and messages is not None:
        return error_body(422, "validation_error", "Some fields are invalid.", _flatten_webargs(messages)), 422
    word = HTTP_WORDS.get(status, "error")
    message = data.get("message") or exc.description or word
    return error_body(status, word, message), status


def database_unavailable(exc: OperationalError) -> bool:
    """Tell whether a database error means "unavailable for now" (a retry may succeed), not a bug."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if hasattr(orig, "sqlite_errorname"):
        return orig.sqlite_errorname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    state = getattr(orig, "sqlstate", None)
    # No SQLSTATE: the server never answered (refused, reset, closed).
    return state is None or state[:2] in TRANSIENT_SQLSTATE_CLASSES or state in TRANSIENT_SQLSTATES


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn every error into the API format or a friendly page."""

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        body = error_body(exc.status, exc.code, exc.message, exc.errors)
        return _respond(body, exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        body, status = http_exception_body(exc)
        headers = dict(exc.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        return _respond(body, status, headers)

    @app.errorhandler(DataError)
    def _data_error(exc: DataError):
        # The database refused a value the validation let through: the client's data, not our fault.
        log.warning("database refused a value on %s %s: %s", request.method, request.path, exc.orig)
        body = error_body(422, "invalid_value", "A value is out of the range this field accepts.")
        return _respond(body, 422, {})

    @app.errorhandler(StoreUnavailable)
    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _store_unavailable(exc: Exception):
        # Redis (key-value store or job queue) is down or slow: the request may succeed when retried.
        log.warning("Redis unavailable on %s %s: %s", request.method, request.path, exc)
        body = error_body(503, "service_unavailable", "A service this needs is unavailable; try again shortly.")
        return _respond(body, 503, {"Retry-After": "5"})

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_unavailable(exc: Exception):
        if isinstance(exc, OperationalError) and not database_unavailable(exc):
            return _unexpected(exc)
        # The connection dropped, the server is restarting or busy, or the pool has no connection to spare:
        # the client may try again. (A request cut off at its COMMIT may have been kept after all; a payment
        # or refund retried with the same Idempotency-Key then answers what it wrote.)
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    getattr(exc, "orig", None) or exc)
        if not wants_json():
            # Who is signed in cannot be looked up now: the error page is drawn as for a visitor.
            current_app.login_manager._update_request_context_with_user()
        body = error_body(503, "service_unavailable", "The database is unavailable for a moment; try again "
                          "shortly (a POST with the same Idempotency-Key).")
        return _respond(body, 503, {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = error_body(500, "internal_error", "Something went wrong on our side.")
        return _respond(body, 500, {})


def _respond(body: dict, status: int, headers: dict):
    if wants_json():
        resp = jsonify(body)
        resp.status_code = status
        resp.headers.update(headers)
        return resp
    html = render_template("error.html", status=status, error=body["error"], message=body["message"])
    return html, status, headers
