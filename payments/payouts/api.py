"""JSON endpoints: payouts to merchants and their status."""

from __future__ import annotations

from core.api import Blueprint

blp = Blueprint("payouts_api", __name__, url_prefix="/api/v1", description="Payouts to merchants and their status")
