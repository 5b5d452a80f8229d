"""The JSON API plumbing (flask-smorest with our error format) and core endpoints: tokens, me, audit."""

from __future__ import annotations

import datetime as dt
import functools

import flask_smorest
from flask import current_app, g, jsonify
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select, text

from core import audit, idempotency
from core.auth import Actor, authenticate, issue_token, revoke_token
from core.db import db
from core.errors import NotFound, http_exception_body
from core.models import ApiToken, Role, User
from core.web import api_roles, client_ip, current_actor, login_guard, public


class Api(flask_smorest.Api):
    """flask-smorest, answering errors in the API.md format."""

    ERROR_SCHEMA = None  # set below, once the schema class exists

    def document_errors(self) -> None:
        """Document the errors any operation may answer: 404 where the path names an object, 400 and 422 where a
        body is sent (once every blueprint is registered)."""
        for path, operations in self.spec._paths.items():
            for method, operation in operations.items():
                if method not in HTTP_METHODS:
                    continue
                responses = operation.setdefault("responses", {})
                if "{" in path:
                    responses.setdefault("404", error_response("No such object, or not yours"))
                if "requestBody" in operation:
                    responses.setdefault("400", error_response("The body is malformed"))
                    responses.setdefault("422", error_response("Some fields are invalid"))

    def document_idempotency(self) -> None:
        """Add the Idempotency-Key header to every authenticated POST in the OpenAPI document."""
        param = {"in": "header", "name": "Idempotency-Key", "required": False,
                 "schema": {"type": "string", "maxLength": 255, "pattern": idempotency.KEY_RE.pattern},
                 "description": "Repeat with the same key and body to get the first answer again; "
                                "the same key with another body answers 409."}
        for operations in self.spec._paths.values():
            operation = operations.get("post")
            if operation and operation.get("security"):
                operation.setdefault("parameters", []).append(param)
                responses = operation.setdefault("responses", {})
                responses["400"] = error_response("The body or the Idempotency-Key is malformed")
                responses.setdefault("409", error_response(
                    "Conflicts with the current state, or with another request under the same Idempotency-Key"))

    def handle_http_exception(self, error):
        body, status = http_exception_body(error)
        resp = jsonify(body)
        resp.status_code = status
        return resp


HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def error_response(description: str) -> dict:
    """Return an OpenAPI response answering an error in the API.md format."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}}


class Blueprint(flask_smorest.Blueprint):
    """A flask-smorest blueprint whose `auth` decorator checks roles and documents the bearer scheme."""

    def auth(self, *roles: Role, keyed_in_view: bool = False):
        """Require a bearer token of one of `roles`; put it above @arguments so 401/403 come first.

        A POST's Idempotency-Key is honoured around the view, in transactions of its own; a view that
        keeps the key with what it writes, in its own transaction (`keyed_in_view`), is left to do so."""

        def decorate(fn):
            @functools.wraps(fn)
            def once(*args, **kwargs):
                if keyed_in_view:
                    return fn(*args, **kwargs)
                return idempotency.run_once(current_actor().user_id, fn, *args, **kwargs)

            wrapped = api_roles(*roles)(once)
            wrapped = self.doc(security=[{"bearerAuth": []}])(wrapped)
            for status, text_ in ((401, "No or bad credentials"), (403, "Role not allowed")):
                wrapped = self.alt_response(status, schema=ApiErrorSchema, description=text_)(wrapped)
            return wrapped

        return decorate


class StrictSchema(Schema):
    """Refuse unknown fields so typos are reported, not silently dropped."""

    class Meta:
        ordered = True


class UtcDateTime(fields.AwareDateTime):
    """An aware date-time in, as UTC; one that UTC cannot hold (past year 9999 or before year 1) is refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(dt.timezone.utc)
        except OverflowError:
            raise ValidationError("The date-time is out of range once converted to UTC.") from None


class ApiErrorSchema(Schema):
    code = fields.Int(required=True)
    error = fields.Str(required=True)
    message = fields.Str(required=True)
    errors = fields.Dict(keys=fields.Str(), values=fields.List(fields.Str()))


Api.ERROR_SCHEMA = ApiErrorSchema


class PageArgs(Schema):
    limit = fields.Int(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.Str(load_default=None, validate=validate.Length(max=200))


def page_schema(item_schema, name: str):
    """Return the `{data, next_cursor}` envelope schema for a list of `item_schema`."""
    return type(name, (Schema,), {
        "data": fields.List(fields.Nested(item_schema), required=True),
        "next_cursor": fields.Str(allow_none=True, required=True),
    })


blp = Blueprint("core_api", __name__, url_prefix="/api/v1", description="Sign-in, tokens and the audit log")


class TokenRequest(StrictSchema):
    username = fields.Str(required=True, validate=validate.Length(min=1, max=64))
    password = fields.Str(required=True, validate=validate.Length(min=1, max=256), load_only=True)


class TokenResponse(Schema):
    token = fields.Str(required=True)
    token_id = fields.Str(required=True)
    expires_at = fields.DateTime(required=True)
    user = fields.Dict()


class MeSchema(Schema):
    id = fields.Str(attribute="public_id")
    username = fields.Str()
    display_name = fields.Str()
    role = fields.Function(lambda u: u.role.value)


@blp.route("/auth/tokens", methods=["POST"])
@public
@blp.arguments(TokenRequest)
@blp.response(201, TokenResponse)
@blp.alt_response(401, schema=ApiErrorSchema, description="Wrong username or password")
@blp.alt_response(429, schema=ApiErrorSchema, description="Locked out after too many failures")
def create_token(body):
    """Exchange a username and password for a bearer token."""
    session = db.session
    user = authenticate(session, login_guard(), body["username"], body["password"], client_ip())
    plain, token = issue_token(session, user, current_app.config["TOKEN_TTL_SECONDS"])
    audit.record(session, Actor.of(user, g.get("request_id"), client_ip()), "auth.token.issued", "token",
                 token.public_id, after={"user_id": user.public_id, "expires_at": token.expires_at})
    session.commit()
    return {"token": plain, "token_id": token.public_id, "expires_at": token.expires_at,
            "user": {"id": user.public_id, "username": user.username, "role": user.role.value}}


@blp.route("/auth/tokens/current", methods=["DELETE"])
@blp.auth()
@blp.response(204)
def revoke_current_token():
    """Revoke the token this request was made with (sign out an API client)."""
    token = g.api_token
    revoke_token(db.session, token)
    audit.record(db.session, current_actor(), "auth.token.revoked", "token", token.public_id)
    db.session.commit()


@blp.route("/auth/tokens/<token_id>", methods=["DELETE"])
@blp.auth()
@blp.response(204)
def revoke_own_token(token_id):
    """Revoke one of your own tokens by id."""
    actor = current_actor()
    token = db.session.scalar(select(ApiToken).where(ApiToken.public_id == token_id,
                                                     ApiToken.user_id == actor.user_id))
    if token is None:
        raise NotFound("No such token.")
    revoke_token(db.session, token)
    audit.record(db.session, actor, "auth.token.revoked", "token", token.public_id)
    db.session.commit()


@blp.route("/me", methods=["GET"])
@blp.auth()
@blp.response(200, MeSchema)
def me():
    """Return the signed-in user."""
    return db.session.get(User, current_actor().user_id)


class AuditQuery(PageArgs):
    action = fields.Str(validate=validate.Length(max=100))
    object_id = fields.Str(validate=validate.Length(max=40))
    since = UtcDateTime()
    until = UtcDateTime()


class AuditEventSchema(Schema):
    id = fields.Int()
    occurred_at = fields.DateTime()
    actor = fields.Str(attribute="actor_label")
    action = fields.Str()
    object_type = fields.Str()
    object_id = fields.Str()
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    request_id = fields.Str(allow_none=True)
    ip = fields.Str(allow_none=True)


@blp.route("/audit-events", methods=["GET"])
@blp.auth(Role.AUDITOR)
@blp.arguments(AuditQuery, location="query")
@blp.response(200, page_schema(AuditEventSchema, "AuditEventPage"))
def list_audit_events(args):
    """List audit entries, newest first (auditors only)."""
    page = audit.list_events(db.session, action=args.get("action"), object_id=args.get("object_id"),
                             since=args.get("since"), until=args.get("until"),
                             limit=args["limit"], cursor=args["cursor"])
    return {"data": page.items, "next_cursor": page.next_cursor}


def health():
    """Report whether the database and Redis answer."""
    status = {"status": "ok", "database": "ok", "redis": "not configured"}
    code = 200
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any driver error means the same thing here: the database is down
        status["database"], status["status"], code = "unavailable", "degraded", 503
    store = current_app.extensions["kv"]
    if store.kind == "redis":
        if store.ping():
            status["redis"] = "ok"
        else:
            status["redis"], status["status"], code = "unavailable", "degraded", 503
    else:
        status["redis"] = "in-process fallback"
    return jsonify(status), code


health.allowed_roles = None
