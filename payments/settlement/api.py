"""JSON endpoints: daily settlement statements of merchants."""

from __future__ import annotations

from flask import current_app

from core.api import Blueprint
from core.db import db
from core.models import FINANCE_ROLES, Role
from core.web import current_actor
from payments.settlement import schemas as s
from payments.settlement import service

blp = Blueprint("settlement_api", __name__, url_prefix="/api/v1", description="Daily settlement statements of merchants")
READERS = (*FINANCE_ROLES, Role.AUDITOR, Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)


def with_payouts(settlements: list) -> list:
    """The settlements with their payouts' ids and statuses, for the answer (one query for all)."""
    payouts = service.payouts_of(db.session, settlements)
    for settlement in settlements:
        payout = payouts.get(settlement.id)
        settlement.payout_id = payout.public_id if payout else None
        settlement.payout_status = payout.status.value if payout else None
    return settlements


@blp.route("/settlements", methods=["POST"])
@blp.auth(*FINANCE_ROLES)
@blp.arguments(s.SettleRequestSchema)
@blp.response(201, s.SettleRunSchema)
def settle(body):
    """Settle every merchant for a closed business day; running it again changes nothing."""
    run = service.settle_day(db.session, current_actor(), body["business_date"],
                             terms=service.Terms.from_config(current_app.config))
    return {"business_date": run.business_date, "created": len(run.created),
            "data": with_payouts(run.settlements)}


@blp.route("/settlements", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.SettlementQuery, location="query")
@blp.response(200, s.SettlementPage)
def list_settlements(args):
    """Settlements, newest first; a merchant's owner and manager see their own only."""
    page = service.list_settlements(db.session, current_actor(), business_date=args.get("business_date"),
                                    merchant_id=args.get("merchant_id"), status=args.get("status"),
                                    limit=args["limit"], cursor=args["cursor"])
    return {"data": with_payouts(page.items), "next_cursor": page.next_cursor}


@blp.route("/settlements/<settlement_id>", methods=["GET"])
@blp.auth(*READERS)
@blp.arguments(s.StatementQuery, location="query")
@blp.response(200, s.StatementSchema)
def get_settlement(args, settlement_id):
    """One settlement statement with its payments and refunds."""
    settlement = service.get_settlement(db.session, current_actor(), settlement_id)
    return {"settlement": with_payouts([settlement])[0],
            "lines": service.statement_lines(db.session, settlement, limit=args["limit"], offset=args["offset"])}
