"""Chinese by default, English on request: the locale comes from ?lang= or the lang cookie."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app, request
from flask_babel import Babel, gettext

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


BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


def business_date(moment: dt.datetime | None = None) -> dt.date:
    """The business day (Asia/Shanghai) an aware moment falls on; today's when none is given."""
    return (moment or dt.datetime.now(dt.timezone.utc)).astimezone(BUSINESS_TZ).date()


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Show a stored UTC time in the union's own time zone (Asia/Shanghai)."""
    return value.astimezone(BUSINESS_TZ).strftime(fmt) if value else ""


def N_(text: str) -> str:
    """Mark a word for translation where it is only known at run time (extracted, returned as is)."""
    return text


def say(message: str, known, numbered=()) -> str:
    """Translate a service's sentence for a page when it is one of `known`, or matches one of `numbered`'s
    (pattern, sentence with %(name)s, names) with its figures put back; any other sentence is shown as it is."""
    if message in known:
        return gettext(message)
    for pattern, sentence, names in numbered:
        match = pattern.match(message)
        if match:
            return gettext(sentence, **dict(zip(names, match.groups())))
    return message


# Words the templates translate by value: roles, statuses and import error words.
RUNTIME_TERMS = (
    N_("member"), N_("applicant"), N_("merchant_owner"), N_("merchant_manager"), N_("merchant_cashier"), N_("union_admin"),
    N_("merchant_reviewer"), N_("finance_maker"), N_("finance_approver"), N_("auditor"),
    N_("active"), N_("transferred"), N_("left"),
    N_("invalid_id_number"), N_("invalid_phone"), N_("unknown_union"), N_("invalid_name"),
    N_("invalid_join_date"), N_("malformed_row"), N_("duplicate_id_number"),
    N_("draft"), N_("submitted"), N_("under_review"), N_("approved"), N_("rejected"), N_("changes_requested"),
    N_("resubmitted"), N_("suspended"), N_("terminated"), N_("open"), N_("closed"),
    N_("dining"), N_("supermarket"), N_("pharmacy"), N_("medical"), N_("culture_sport"), N_("legal"),
    N_("education"), N_("travel"), N_("other"),
    N_("submit"), N_("resubmit"), N_("start_review"), N_("approve"), N_("reject"), N_("request_changes"),
    N_("comment"),
    N_("pending_approval"), N_("ready"), N_("paid"), N_("failed"), N_("settled"), N_("carried_forward"),
)
