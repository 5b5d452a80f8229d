"""Pages: the day's settlements and each statement for finance; a merchant's own statements."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from core.db import db, utcnow
from core.errors import DomainError
from core.exports import table_response
from core.i18n import business_date
from core.models import FINANCE_ROLES, Role
from core.money import format_amount
from core.web import current_actor, page_roles
from merchants import service as merchants
from merchants.models import Merchant
from payments.settlement import service
from payments.settlement.models import Settlement

bp = Blueprint("settlement_pages", __name__, template_folder="templates")
READERS = (*FINANCE_ROLES, Role.AUDITOR)
MERCHANT_READERS = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)
PAGE = 50
STATEMENT_LINES = 1000
EXPORT_LINES = 100_000
STATEMENT_COLUMNS = ("kind", "id", "created_at", "amount", "discount", "charged", "union_share", "to_merchant")
HEADERS = {
    "zh": ("类型", "编号", "时间", "标价(分)", "优惠(分)", "卡付(分)", "工会补贴(分)", "应结(分)"),
    "en": ("kind", "id", "created_at", "amount (fen)", "discount (fen)", "charged (fen)", "union share (fen)",
           "to merchant (fen)"),
}


def _day(raw: str | None) -> tuple[dt.date, str | None]:
    yesterday = business_date() - dt.timedelta(days=1)
    if not raw:
        return yesterday, None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        return yesterday, _("Not a date: use YYYY-MM-DD.")
    # The first and last dates Python knows have no day before or after them to show or bound the day.
    if not dt.date.min < day < dt.date.max:
        return yesterday, _("Not a date: use YYYY-MM-DD.")
    return day, None


def _day_page(day: dt.date, error: str | None = None, status: int = 200):
    page = service.list_settlements(db.session, current_actor(), business_date=day, limit=PAGE,
                                    cursor=request.args.get("cursor") or None)
    _start, cutoff = service.day_bounds(day)
    html = render_template("settlement/day.html", day=day, page=page, totals=service.day_totals(db.session, day),
                           unsettled=service.unsettled_before(db.session, cutoff), closed=cutoff <= utcnow(),
                           payouts=service.payouts_of(db.session, page.items),
                           error=error, may_settle=current_actor().has(*FINANCE_ROLES),
                           previous=day - dt.timedelta(days=1), following=day + dt.timedelta(days=1))
    return html, status


@bp.route("/finance/settlements")
@page_roles(*READERS)
def day():
    """One business day's settlements: totals, each merchant's net, and what is still unsettled."""
    chosen, error = _day(request.args.get("date"))
    return _day_page(chosen, error, 422 if error else 200)


@bp.route("/finance/settlements", methods=["POST"])
@page_roles(*FINANCE_ROLES)
def settle():
    """Settle a closed business day for every merchant."""
    chosen, error = _day(request.form.get("date"))
    if error:
        return _day_page(chosen, error, 422)
    try:
        run = service.settle_day(db.session, current_actor(), chosen,
                                 terms=service.Terms.from_config(current_app.config))
    except DomainError as exc:
        db.session.rollback()
        return _day_page(chosen, exc.message, exc.status)
    flash(_("%(date)s settled: %(new)d new statements, net %(net)s.", date=chosen.isoformat(), new=len(run.created),
            net=format_amount(sum(x.net for x in run.created))), "info")
    return redirect(url_for("settlement_pages.day", date=chosen.isoformat()))


def _statement(settlement: Settlement, back: str):
    earlier, returned = service.carried_from(db.session, settlement)
    lines = service.statement_lines(db.session, settlement, limit=STATEMENT_LINES)
    return render_template("settlement/statement.html", s=settlement, lines=lines, earlier=earlier,
                           returned=returned, payout=service.payout_of(db.session, settlement), back=back,
                           more=settlement.payments_count + settlement.refunds_count > STATEMENT_LINES)


def _export(settlement: Settlement, fmt: str):
    lang = "en" if request.args.get("lang") == "en" else "zh"
    lines = service.statement_lines(db.session, settlement, limit=EXPORT_LINES)
    rows = ([getattr(line, c) for c in STATEMENT_COLUMNS] for line in lines)
    name = f"settlement-{settlement.merchant.public_id}-{settlement.business_date:%Y%m%d}"
    return table_response(HEADERS[lang], rows, filename=name, fmt=fmt, sheet=settlement.public_id)


@bp.route("/finance/settlements/<settlement_id>")
@page_roles(*READERS)
def statement(settlement_id):
    """One merchant's statement for one day: figures, payments and refunds, what it carried, its payout."""
    settlement = service.get_settlement(db.session, current_actor(), settlement_id)
    return _statement(settlement, url_for("settlement_pages.day", date=settlement.business_date.isoformat()))


@bp.route("/finance/settlements/<settlement_id>/statement.<any(csv, xlsx):fmt>")
@page_roles(*READERS)
def statement_export(settlement_id, fmt):
    """The statement's lines as CSV or XLSX."""
    return _export(service.get_settlement(db.session, current_actor(), settlement_id), fmt)


@bp.route("/merchant/")
@page_roles(Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER)
def merchant_dashboard():
    """The merchant's dashboard: today's and this month's figures, stores, staff, statements, agreement."""
    actor = current_actor()
    merchant = db.session.get(Merchant, actor.merchant_id)
    staff = merchants.list_staff(db.session, actor, merchant.public_id) if actor.role != Role.MERCHANT_CASHIER else []
    figures = service.merchant_figures(db.session, merchant)
    return render_template("settlement/dashboard.html", merchant=merchant, staff=staff, figures=figures,
                           payouts=service.payouts_of(db.session, figures.settlements),
                           may_see_statements=actor.has(*MERCHANT_READERS))


@bp.route("/merchant/settlements")
@page_roles(*MERCHANT_READERS)
def merchant_settlements():
    """The merchant's own settlements, newest first."""
    page = service.list_settlements(db.session, current_actor(), limit=PAGE, cursor=request.args.get("cursor") or None)
    return render_template("settlement/merchant.html", page=page,
                           payouts=service.payouts_of(db.session, page.items))


@bp.route("/merchant/settlements/<settlement_id>")
@page_roles(*MERCHANT_READERS)
def merchant_statement(settlement_id):
    """One of the merchant's own statements (404 for another merchant's)."""
    settlement = service.get_settlement(db.session, current_actor(), settlement_id)
    return _statement(settlement, url_for("settlement_pages.merchant_settlements"))


@bp.route("/merchant/settlements/<settlement_id>/statement.<any(csv, xlsx):fmt>")
@page_roles(*MERCHANT_READERS)
def merchant_statement_export(settlement_id, fmt):
    """One of the merchant's own statements as CSV or XLSX."""
    return _export(service.get_settlement(db.session, current_actor(), settlement_id), fmt)
