"""Chinese by default, English on request: the locale comes from ?lang= or the lang cookie."""

from __future__ import annotations

from flask import current_app, request
from flask_babel import Babel

babel = Babel()


def select_locale() -> str:
    """Pick the page language: an explicit ?lang=, then the cookie, then Chinese."""
    languages = current_app.config["LANGUAGES"]
    for candidate in (request.args.get("lang"), request.cookies.get("lang")):
        if candidate in languages:
            return candidate
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def remember_locale(response):
    """Keep an explicit ?lang= choice in a cookie for the following pages."""
    lang = request.args.get("lang")
    if lang in current_app.config["LANGUAGES"] and request.cookies.get("lang") != lang:
        response.set_cookie("lang", lang, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
