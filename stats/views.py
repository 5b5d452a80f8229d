"""Pages of the union console: an org subtree's overview with its drill-down and trends, and every table of it
as CSV or XLSX (headers in the page's language: Chinese, or English with ?lang=en)."""

from __future__ import annotations

import datetime as dt
import re

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _

from benefits.views import FAMILY_LABELS
from core.db import db, utcnow
from core.errors import ValidationFailed
from core.exports import table_response
from core.i18n import N_, business_date
from core.web import current_actor, page_roles
from stats import jobs, service
from stats.schemas import parse_month

bp = Blueprint("stats_pages", __name__, template_folder="templates")

READERS = service.READERS
MONTH_RE = re.compile(r"^(20\d\d|2100)-(0[1-9]|1[0-2])$")
KIND_LABELS = {
    "federation": N_("Federation of trade unions"),
    "city": N_("City federation"),
    "county": N_("County federation"),
    "grassroots": N_("Grassroots union"),
}
# What a download keeps of the page's query.
DOWNLOAD_ARGS = ("union_id", "from", "to", "lang")


@bp.context_processor
def _helpers():
    def download_url(table: str, fmt: str) -> str:
        kept = {name: request.args[name][:40] for name in DOWNLOAD_ARGS if request.args.get(name)}
        return url_for("stats_pages.download", table=table, fmt=fmt, **kept)

    def family(key: str) -> str:
        return _(FAMILY_LABELS[key]) if key in FAMILY_LABELS else key

    def kind(key: str) -> str:
        return _(KIND_LABELS[key]) if key in KIND_LABELS else key

    def basis_points(rate: float | None) -> int:
        return round(rate * 10_000) if rate is not None else 0

    return {"download_url": download_url, "family": family, "union_kind": kind, "basis_points": basis_points}


def _months(errors: dict) -> tuple[dt.date, dt.date]:
    """The trend months asked for with ?from=YYYY-MM&to=YYYY-MM (the last twelve by default)."""
    raw = {name: (request.args.get(name) or "").strip() for name in ("from", "to")}
    for name, value in raw.items():
        if value and not MONTH_RE.fullmatch(value):
            errors.setdefault("months", []).append(_("Enter the months as YYYY-MM."))
            raw[name] = ""
    today = business_date()
    try:
        return service.trend_window(parse_month(raw["from"] or None), parse_month(raw["to"] or None), today)
    except ValidationFailed:
        errors.setdefault("months", []).append(
            _("Choose a first month before the last, at most %(n)s months apart.", n=service.MAX_TREND_MONTHS))
        return service.trend_window(None, None, today)


def _scope():
    actor = current_actor()
    union = service.scope_for(db.session, actor, request.args.get("union_id") or None)
    top = service.scope_for(db.session, actor, None)
    return union, top


@bp.route("/console/")
@page_roles(*READERS)
def overview():
    """A subtree's figures now, its next level down to click into, and its months as charts and tables."""
    union, top = _scope()
    errors: dict[str, list[str]] = {}
    first, last = _months(errors)
    figures = service.overview(db.session, union)
    refreshing = jobs.refresh_if_stale(figures.refreshed_at)
    months = service.trends(db.session, union, first, last)
    html = render_template("stats/overview.html", o=figures, union=union, top=top, refreshing=refreshing,
                           trail=service.breadcrumbs(db.session, union, top), months=months, first=first, last=last,
                           errors=errors)
    return html, 422 if errors else 200


def _child_lines(kids):
    for k in kids:
        c = k.counts
        yield [k.union.name, k.union.public_id, _(KIND_LABELS[k.union.kind.value]), k.union.region, c.members,
               c.hardship_members, c.cards_issued, c.cards_active, c.cards_frozen, c.cards_used_30d,
               c.usage_rate if c.usage_rate is not None else "", k.last_30_days.payments, k.last_30_days.charged]


TABLES = {
    "children": (N_("Next level"), [N_("Union name"), N_("Union ID"), N_("Org level"), N_("Region"), N_("Members"),
                                    N_("Hardship members"), N_("Cards issued"), N_("Active cards"),
                                    N_("Frozen cards"), N_("Cards used in 30 days"), N_("Usage rate"),
                                    N_("Payments in 30 days"), N_("Paid by card in 30 days (fen)")]),
    "merchant-categories": (N_("Merchants by category"), [N_("Category"), N_("Category code"), N_("Merchants"),
                                                          N_("Open stores")]),
    "merchant-cities": (N_("Merchants by city"), [N_("City"), N_("Region"), N_("Merchants"), N_("Open stores")]),
    "offers": (N_("Offers by family"), [N_("Family"), N_("Family code"), N_("Offers on offer")]),
    "programs": (N_("Aid programs"), [N_("Program"), N_("Program ID"), N_("Run by"), N_("Funded (fen)"),
                                      N_("Disbursed (fen)"), N_("Spent (fen)"), N_("Union subsidy (fen)"),
                                      N_("Expired (fen)"), N_("Returned (fen)"), N_("Budget balance now (fen)"),
                                      N_("Currency")]),
    "months": (N_("By month"), [N_("Month"), N_("Members registered"), N_("Cards issued"), N_("Cards activated"),
                                N_("Payments"), N_("List prices (fen)"), N_("Paid by card (fen)"),
                                N_("Discounts borne by merchants (fen)"), N_("Union subsidy (fen)"),
                                N_("Refunded (fen)"), N_("Cards that paid"), N_("Cards in use"), N_("Usage rate"),
                                N_("Aid funded (fen)"), N_("Aid disbursed (fen)"), N_("Aid spent (fen)"),
                                N_("Currency")]),
}


@bp.route("/console/<any(children, 'merchant-categories', 'merchant-cities', offers, programs, months):table>"
          ".<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def download(table: str, fmt: str):
    """One table of the overview, for the same subtree (and months)."""
    union = service.scope_for(db.session, current_actor(), request.args.get("union_id") or None)
    title, headers = TABLES[table]
    if table == "months":
        errors: dict[str, list[str]] = {}
        first, last = _months(errors)
        if errors:
            raise ValidationFailed(errors)
        lines = [[m.month, m.members_joined, m.cards_issued, m.cards_activated, m.payments, m.amount, m.charged,
                  m.merchant_share, m.union_subsidised, m.refunded, m.card_users, m.live_cards,
                  m.usage_rate if m.usage_rate is not None else "", m.aid_funded, m.aid_disbursed, m.aid_spent,
                  m.currency] for m in service.trends(db.session, union, first, last)]
    elif table == "children":
        lines = list(_child_lines(service.children(db.session, union, business_date())))
    elif table == "merchant-categories":
        by_category, _cities = service.merchant_groups(db.session, union)
        lines = [[_(g.key), g.key, g.merchants, g.stores] for g in by_category]
    elif table == "merchant-cities":
        _categories, by_city = service.merchant_groups(db.session, union)
        lines = [[g.name, g.key, g.merchants, g.stores] for g in by_city]
    elif table == "offers":
        lines = [[_(FAMILY_LABELS[k]), k, n] for k, n in service.offer_groups(db.session, union, utcnow())]
    else:
        lines = [[p.name, p.program_id, p.union_name, p.funded, p.disbursed, p.spent, p.subsidised, p.expired,
                  p.returned, p.balance, p.currency] for p in service.programs_of(db.session, union)]
    scope = union.public_id if union else "all"
    return table_response([_(h) for h in headers], lines, filename=f"{table}-{scope}-{business_date():%Y%m%d}",
                          fmt=fmt, sheet=_(title))
