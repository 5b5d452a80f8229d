"""JSON endpoints: finance reports: aid programs' and merchants' money (the trial balance is
GET /api/v1/ledger/trial-balance)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.pagination import paginate
from core.web import current_actor
from payments.disbursement.models import Program
from payments.reports import schemas as s
from payments.reports import service

blp = Blueprint("reports_api", __name__, url_prefix="/api/v1", description="Finance reports: trial balance, programs and merchants")


@blp.route("/reports/programs", methods=["GET"])
@blp.auth(*service.FINANCE_READERS)
@blp.arguments(s.ProgramReportArgs, location="query")
@blp.response(200, s.ProgramReportSchema)
def program_report(args):
    """Each aid program's funded, disbursed, spent (and subsidised), expired and returned money over the
    business days asked for (all time without them), its budget now, and with `by=month` each month's."""
    since, until = service.period(args["from_"], args["to"])
    query = select(Program)
    if args["program_id"] is not None:
        query = query.where(Program.public_id.in_(args["program_id"]))
    page = paginate(db.session, query, Program.id, limit=args["limit"], cursor=args["cursor"])
    ids = [p.public_id for p in page.items]
    rows = [dataclasses.asdict(r) for r in service.program_figures(db.session, program_ids=ids, since=since,
                                                                    until=until)]
    if args["by"] == "month":
        by_program: dict[str, list] = {}
        for r in service.program_months(db.session, program_ids=ids, since=since, until=until):
            by_program.setdefault(r.program_id, []).append(r)
        for row in rows:
            row["months"] = by_program.get(row["program_id"], [])
    return {"from_": args["from_"], "to": args["to"], "data": rows, "next_cursor": page.next_cursor}


@blp.route("/reports/merchants", methods=["GET"])
@blp.auth(*service.FINANCE_READERS, *service.MERCHANT_READERS)
@blp.arguments(s.MerchantReportArgs, location="query")
@blp.response(200, s.MerchantReportSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such merchant, or not yours")
def merchant_report(args):
    """Each merchant's receivable now (payable + in transit) and its money over the business days asked
    for: sales, union subsidies, refunds, settled, fees and payouts paid. A merchant's owner or manager
    sees only their own merchant's row."""
    since, until = service.period(args["from_"], args["to"])
    scope = service.merchant_scope(db.session, current_actor(), args["merchant_id"])
    merchants = dataclasses.replace(scope, category=args["category"], region=args["region"])
    page = service.merchant_figures(db.session, merchants=merchants, since=since, until=until,
                                    limit=args["limit"], cursor=args["cursor"])
    return {"from_": args["from_"], "to": args["to"], "data": page.items, "next_cursor": page.next_cursor}
