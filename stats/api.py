"""JSON endpoints of the union console: an org subtree's overview and its trends by month."""

from __future__ import annotations

from core.api import ApiErrorSchema, Blueprint
from core.db import db
from core.i18n import business_date
from core.web import current_actor
from stats import schemas as s
from stats import service

blp = Blueprint("stats_api", __name__, url_prefix="/api/v1", description="Union console: the scheme's figures")


@blp.route("/stats/overview", methods=["GET"])
@blp.auth(*service.READERS)
@blp.arguments(s.OverviewArgs, location="query")
@blp.response(200, s.OverviewSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such union, or outside the admin's subtree")
def overview(args):
    """A union's whole subtree (or the whole platform): members, cards and the usage rate, partner merchants and
    stores by category and city, offers by family, discounts, and each aid program's money. Read from figures
    the console refreshes in the background: `refreshed_at` says when."""
    union = service.scope_for(db.session, current_actor(), args["union_id"])
    return s.overview_body(service.overview(db.session, union))


@blp.route("/stats/trends", methods=["GET"])
@blp.auth(*service.READERS)
@blp.arguments(s.TrendArgs, location="query")
@blp.response(200, s.TrendSchema)
@blp.alt_response(404, schema=ApiErrorSchema, description="No such union, or outside the admin's subtree")
def trends(args):
    """The same subtree month by month (business months, Asia/Shanghai; every month listed, at most 36): members
    and cards, payments and discounts, the month's usage rate, and the aid paid and spent."""
    union = service.scope_for(db.session, current_actor(), args["union_id"])
    first, last = service.trend_window(s.parse_month(args["from_"]), s.parse_month(args["to"]),
                                       business_date())
    rows = service.trends(db.session, union, first, last)
    return {"union": union, "from_": f"{first:%Y-%m}", "to": f"{last:%Y-%m}", "data": rows}
