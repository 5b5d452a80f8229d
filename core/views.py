"""Pages every user meets: home, sign in, sign out, and the language switch."""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from core import audit
from core.auth import Actor, authenticate
from core.db import db
from core.errors import DomainError
from core.web import client_ip, login_guard

bp = Blueprint("core", __name__)


class LoginForm(FlaskForm):
    username = StringField("username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=256)])


def _safe_next(target: str | None) -> str | None:
    """Only follow a ?next= that stays on this site."""
    if not target:
        return None
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/")
def home():
    """Show what the signed-in user can do, or invite them to sign in."""
    return render_template("home.html")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with a username and password (throttled and locked out like the API)."""
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = authenticate(db.session, login_guard(), form.username.data, form.password.data, client_ip())
        except DomainError as exc:
            db.session.rollback()
            flash(_("Too many failed attempts. Try again later.") if exc.status == 429
                  else _("Wrong username or password."), "error")
            return render_template("login.html", form=form), exc.status if exc.status != 401 else 200
        audit.record(db.session, Actor.of(user, g.get("request_id"), client_ip()), "auth.session.signed_in",
                     "user", user.public_id)
        db.session.commit()
        login_user(user)
        return redirect(_safe_next(request.args.get("next")) or url_for("core.home"))
    return render_template("login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out (POST with the CSRF token, so another site cannot sign you out)."""
    if current_user.is_authenticated:
        audit.record(db.session, Actor.of(current_user, g.get("request_id"), client_ip()),
                     "auth.session.signed_out", "user", current_user.public_id)
        db.session.commit()
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("core.login"))
