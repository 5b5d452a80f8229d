"""Flask glue: request ids, who is calling (bearer token or session), and role checks."""

from __future__ import annotations

import functools
import re
import uuid

from flask import current_app, g, redirect, request, url_for
from flask_login import LoginManager, current_user
from sqlalchemy import select

from core.auth import Actor, LoginGuard, user_for_token
from core.db import db, utcnow
from core.errors import BadRequest, Forbidden, PayloadTooLarge, Unauthorized, ValidationFailed
from core.models import Role, User

login_manager = LoginManager()
login_manager.login_view = "core.login"
login_manager.session_protection = "strong"
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


@login_manager.user_loader
def _load_user(public_id: str) -> User | None:
    return db.session.scalar(select(User).where(User.public_id == public_id, User.is_active.is_(True)))


def login_guard() -> LoginGuard:
    """Return the login throttle configured for this app."""
    cfg = current_app.config
    return LoginGuard(current_app.extensions["kv"], max_failures=cfg["LOGIN_MAX_FAILURES"],
                      ip_max_failures=cfg["LOGIN_IP_MAX_FAILURES"], window=cfg["LOGIN_WINDOW_SECONDS"],
                      lockout=cfg["LOGIN_LOCKOUT_SECONDS"])


def field_cipher():
    """Return the personal-data cipher configured from DATA_KEY."""
    return current_app.extensions["cipher"]


def client_ip() -> str | None:
    """Return the caller's address (ProxyFix rewrites it when behind trusted proxies)."""
    return request.remote_addr


def before_request() -> None:
    """Give the request an id and refuse oversized JSON bodies before anything reads them."""
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    if request.mimetype == "application/json" or request.is_json:
        limit = current_app.config["MAX_JSON_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit // 1024} KiB.")
        request.max_content_length = limit
    refuse_nul_characters()


def _nul_fields(value) -> list[str]:
    """Return the paths of strings (values or keys) holding NUL, walking the document without recursion."""
    found: list[str] = []
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                found.append(path or "_schema")
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = str(key) if not path else f"{path}.{key}"
                if "\x00" in str(key):
                    found.append(child_path)
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return found


def _json_body():
    """Parse the JSON body once (cached for the view), refusing documents nested beyond the parser's reach."""
    try:
        return request.get_json(silent=True, cache=True)
    except RecursionError:
        raise BadRequest("The request body is not valid JSON: it is nested too deeply.",
                         code="malformed_json") from None


def refuse_nul_characters() -> None:
    """Refuse text with NUL characters anywhere in the input: no database stores them."""
    found = [name for name, value in request.args.items(multi=True) if "\x00" in value or "\x00" in name]
    if request.is_json:
        found += _nul_fields(_json_body())
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        found += [name for name, value in request.form.items(multi=True) if "\x00" in value]
    if found:
        raise ValidationFailed({name: ["Text may not contain NUL characters."] for name in sorted(set(found))})


def after_request(response):
    """Echo the request id so callers and logs can be tied together."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    else:
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def args_with(**overrides) -> str:
    """Return the current query string with some parameters replaced (for paging links)."""
    from urllib.parse import urlencode

    params = {k: v for k, v in request.args.items() if k not in overrides}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return urlencode(params)


def current_actor() -> Actor:
    """Return the actor established by the auth decorator of this request."""
    actor = g.get("actor")
    if actor is None:
        raise Unauthorized()
    return actor


def _bearer_actor() -> Actor:
    header = request.headers.get("Authorization", "")
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain.strip():
        raise Unauthorized("Send `Authorization: Bearer <token>`; get one from POST /api/v1/auth/tokens.",
                           headers={"WWW-Authenticate": "Bearer"})
    found = user_for_token(db.session, plain.strip())
    if found is None:
        raise Unauthorized("The token is invalid, expired or revoked.", code="invalid_token",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    user, token = found
    g.api_token = token
    g.user = user
    # Touch last use at most once a minute, so reads do not write on every call.
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
    actor = Actor.of(user, g.request_id, client_ip())
    # End the sign-in transaction here: the endpoint starts its own, and on SQLite an open one
    # would hold the database lock that the endpoint's other sessions (idempotency keys) need.
    db.session.commit()
    return actor


def optional_actor() -> Actor | None:
    """Return the bearer-authenticated caller of a public endpoint, or None for an anonymous one; a token
    that is sent must be valid."""
    if not request.headers.get("Authorization"):
        return None
    g.actor = _bearer_actor()
    return g.actor


def api_roles(*roles: Role):
    """Let only bearer-authenticated callers with one of `roles` (any role if none) through."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            actor = _bearer_actor()
            if roles and actor.role not in roles:
                raise Forbidden("Your role may not do this.")
            g.actor = actor
            return fn(*args, **kwargs)

        wrapper.allowed_roles = frozenset(roles) if roles else frozenset(Role)
        return wrapper

    return decorate


def public(fn):
    """Mark an endpoint as open to anyone (the authorization tests check every endpoint is marked)."""
    fn.allowed_roles = None
    return fn


def page_roles(*roles: Role):
    """Let only signed-in users with one of `roles` see a page; others go to login or get 403."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return redirect(url_for("core.login", next=request.full_path))
            if roles and current_user.role not in roles:
                raise Forbidden("Your role may not see this page.")
            g.actor = Actor.of(current_user, g.request_id, client_ip())
            return fn(*args, **kwargs)

        wrapper.allowed_roles = frozenset(roles) if roles else frozenset(Role)
        return wrapper

    return decorate
