"""Pages: the finance dashboard, and the reports of aid programs, merchants and the trial balance, each
downloadable as CSV or XLSX (column headers in the page's language; amounts in fen)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _

from core.db import db, utcnow
from core.errors import ValidationFailed
from core.exports import table_response
from core.i18n import BUSINESS_TZ, N_
from core.web import page_roles
from merchants.models import MerchantCategory
from payments import ledger
from payments.reports import service
from payments.reports.schemas import EARLIEST, LATEST

bp = Blueprint("reports_pages", __name__, template_folder="templates")

READERS = service.FINANCE_READERS
PROGRAMS_IN_CHART = 8
MERCHANTS_PAGE = 50
MAX_EXPORT_ROWS = 20_000

# What each kind of account is, by the code's first part.
ACCOUNT_TYPES = {
    "card": N_("Member card purses"),
    "program": N_("Aid program budgets"),
    "disbursement": N_("Disbursement reserves"),
    "merchant": N_("Merchant payables"),
    "payout": N_("Payouts in transit"),
    "union": N_("Union bank account and fees"),
    "stripe": N_("Stripe clearing"),
    "reconciliation": N_("Reconciliation differences"),
}
CATEGORY_WORDS = [c.value for c in MerchantCategory]
# What a download keeps of the page's query: the period, the filters and the language.
DOWNLOAD_ARGS = ("from", "to", "category", "region", "lang")


@bp.context_processor
def _helpers():
    def account_type(group: str) -> str:
        return _(ACCOUNT_TYPES[group]) if group in ACCOUNT_TYPES else group

    def download_url(endpoint: str, fmt: str, **extra) -> str:
        kept = {name: request.args[name][:20] for name in DOWNLOAD_ARGS if request.args.get(name)}
        return url_for(endpoint, fmt=fmt, **kept, **extra)

    return {"account_type": account_type, "download_url": download_url, "CATEGORIES": CATEGORY_WORDS}


# --- the period and filters asked for -------------------------------------------------------------

def _date(name: str, errors: dict) -> dt.date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        problem = _("Enter the dates as YYYY-MM-DD.")
    else:
        if EARLIEST <= day <= LATEST:
            return day
        problem = _("Choose dates from 2000-01-01 to 2100-12-31.")
    if problem not in errors.setdefault("_", []):
        errors["_"].append(problem)
    return None


def _period() -> tuple[dt.date | None, dt.date | None, dt.datetime | None, dt.datetime | None, dict]:
    """The business days asked for (both included, either open), their moments, and what was wrong."""
    errors: dict[str, list[str]] = {}
    first, last = _date("from", errors), _date("to", errors)
    if errors:
        return None, None, None, None, errors
    if first and last and last < first:
        return None, None, None, None, {"_": [_("The end of the period comes before its start.")]}
    since, until = service.period(first, last)
    return first, last, since, until, errors


def _status(errors: dict) -> int:
    return 422 if errors else 200


def _filename(name: str, first: dt.date | None, last: dt.date | None) -> str:
    if first is None and last is None:
        return f"{name}-{utcnow().astimezone(BUSINESS_TZ):%Y%m%d}"
    return f"{name}-{first.strftime('%Y%m%d') if first else 'start'}-{last.strftime('%Y%m%d') if last else 'now'}"


# --- the dashboard --------------------------------------------------------------------------------

def _program_chart(rows: list[service.ProgramFigures]) -> list[tuple[str, list[int]]]:
    """The programs with the most money funded, as bar groups: funded, disbursed, spent, expired, returned."""
    biggest = sorted(rows, key=lambda r: (-r.funded, -r.disbursed, r.program_id))[:PROGRAMS_IN_CHART]
    return [(r.name, [r.funded, r.disbursed, r.spent, r.expired, r.returned]) for r in biggest]


@bp.route("/finance/dashboard")
@page_roles(*READERS)
def dashboard():
    """Where the platform's money is now, each program's money, and the last 30 days of payments and
    settlements: tiles, charts and the tables under them."""
    session = db.session
    programs = service.program_figures(session)
    days = service.daily_activity(session)
    return render_template("reports/dashboard.html", tiles=service.tiles(session), programs=programs,
                           program_total=service.sum_programs(programs), chart=_program_chart(programs),
                           in_chart=PROGRAMS_IN_CHART, days=days)


# --- programs -------------------------------------------------------------------------------------

def _program_rows():
    first, last, since, until, errors = _period()
    rows = service.program_figures(db.session, since=since, until=until)
    by_month = []
    if first and last and not errors:
        try:
            by_month = service.program_months(db.session, since=since, until=until)
        except ValidationFailed:
            errors["_"] = [_("Figures by month cover at most %(months)s months.", months=service.MAX_MONTHS)]
    return first, last, errors, rows, by_month


@bp.route("/finance/reports/programs")
@page_roles(*READERS)
def programs():
    """Each aid program's money over the business days chosen (all time without them), and by month."""
    first, last, errors, rows, by_month = _program_rows()
    html = render_template("reports/programs.html", first=first, last=last, errors=errors, rows=rows,
                           total=service.sum_programs(rows), months=service.months_total(by_month),
                           chart=_program_chart(rows), in_chart=PROGRAMS_IN_CHART)
    return html, _status(errors)


def _program_headers(by_month: bool) -> list[str]:
    head = [_("Program"), _("Program ID")] + ([_("Month")] if by_month else [])
    return head + [_("Funded (fen)"), _("Disbursed (fen)"), _("Spent (fen)"), _("Union subsidy (fen)"),
                   _("Expired (fen)"), _("Returned (fen)"), _("Clawed back (fen)")] + (
        [] if by_month else [_("Budget balance now (fen)")]) + [_("Currency")]


def _program_line(r: service.ProgramFigures, by_month: bool) -> list:
    line = [r.name, r.program_id] + ([r.month] if by_month else [])
    line += [r.funded, r.disbursed, r.spent, r.subsidised, r.expired, r.returned, r.clawed_back]
    return line + ([] if by_month else [r.balance]) + [r.currency]


@bp.route("/finance/reports/programs.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def programs_download(fmt):
    """The programs' figures as a table; with `by=month`, one row per program and month."""
    first, last, errors, rows, by_month = _program_rows()
    if errors:
        raise ValidationFailed(errors)
    monthly = request.args.get("by") == "month" and bool(by_month)
    table = by_month if monthly else rows
    return table_response(_program_headers(monthly), (_program_line(r, monthly) for r in table),
                          filename=_filename("programs-by-month" if monthly else "programs", first, last), fmt=fmt,
                          sheet=_("Aid programs"))


# --- merchants ------------------------------------------------------------------------------------

def _merchant_filter(errors: dict) -> tuple[service.MerchantFilter, dict]:
    chosen = {"category": (request.args.get("category") or "").strip()[:20],
              "region": (request.args.get("region") or "").strip()[:6]}
    if chosen["category"] and chosen["category"] not in CATEGORY_WORDS:
        errors.setdefault("category", []).append(_("Choose a category from the list."))
        chosen["category"] = ""
    wanted = service.MerchantFilter(category=chosen["category"] or None, region=chosen["region"] or None)
    if chosen["region"]:
        try:
            wanted.where()
        except ValidationFailed:
            errors.setdefault("region", []).append(_("A region is a 6-digit administrative division code, "
                                                     "e.g. 640100."))
            wanted = dataclasses.replace(wanted, region=None)
    return wanted, chosen


@bp.route("/finance/reports/merchants")
@page_roles(*READERS)
def merchants():
    """What the platform owes each merchant now, and its money over the business days chosen."""
    first, last, since, until, errors = _period()
    wanted, chosen = _merchant_filter(errors)
    page = service.merchant_figures(db.session, merchants=wanted, since=since, until=until, limit=MERCHANTS_PAGE,
                                    cursor=request.args.get("cursor") or None)
    total = service.merchant_totals(db.session, merchants=wanted, since=since, until=until)
    html = render_template("reports/merchants.html", first=first, last=last, errors=errors, chosen=chosen,
                           page=page, total=total)
    return html, _status(errors)


MERCHANT_COLUMNS = (
    (N_("Merchant"), "name"), (N_("Merchant ID"), "merchant_id"), (N_("Category"), "category"),
    (N_("Region"), "region"), (N_("Receivable (fen)"), "receivable"), (N_("Payable (fen)"), "payable"),
    (N_("In transit (fen)"), "in_transit"), (N_("Paid out (fen)"), "paid"), (N_("Payments"), "payments"),
    (N_("Sales (fen)"), "sales"), (N_("Union subsidy (fen)"), "union_subsidy"), (N_("Refunds"), "refunds"),
    (N_("Refunded (fen)"), "refunded"), (N_("Subsidy refunded (fen)"), "union_refunded"),
    (N_("Settled (fen)"), "settled"), (N_("Fees (fen)"), "fees"), (N_("Currency"), "currency"),
)


@bp.route("/finance/reports/merchants.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def merchants_download(fmt):
    """Every merchant the filter selects, with its figures, as a table."""
    first, last, since, until, errors = _period()
    wanted, _chosen = _merchant_filter(errors)
    if errors:
        raise ValidationFailed(errors)
    rows = itertools.islice(service.all_merchant_figures(db.session, merchants=wanted, since=since, until=until),
                            MAX_EXPORT_ROWS)
    lines = ([_(r.category) if name == "category" else getattr(r, name) for _head, name in MERCHANT_COLUMNS]
             for r in rows)
    return table_response([_(head) for head, _name in MERCHANT_COLUMNS], lines,
                          filename=_filename("merchants", first, last), fmt=fmt, sheet=_("Merchants"))


# --- the trial balance ----------------------------------------------------------------------------

@bp.route("/finance/reports/trial-balance")
@page_roles(*READERS)
def trial_balance():
    """The posted balances by account type and currency: debits equal credits, the total is zero."""
    tb = ledger.trial_balance(db.session)
    return render_template("reports/trial_balance.html", tb=tb, totals=sorted(tb.totals.items()))


@bp.route("/finance/reports/trial-balance.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def trial_balance_download(fmt):
    """The trial balance as a table, a total line per currency."""
    tb = ledger.trial_balance(db.session)
    lines = [[_(ACCOUNT_TYPES[r.group]) if r.group in ACCOUNT_TYPES else r.group, r.group, r.currency, r.accounts,
              r.debits, r.credits, r.balance] for r in tb.rows]
    lines += [[_("Total"), "", currency, sum(r.accounts for r in tb.rows if r.currency == currency), t["debits"],
               t["credits"], t["debits"] - t["credits"]] for currency, t in sorted(tb.totals.items())]
    headers = [_("Account type"), _("Account code prefix"), _("Currency"), _("Accounts"), _("Debit balances (fen)"),
               _("Credit balances (fen)"), _("Balance (fen)")]
    return table_response(headers, lines, filename=_filename("trial-balance", None, None), fmt=fmt,
                          sheet=_("Trial balance"))
