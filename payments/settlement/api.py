"""JSON endpoints: daily settlement statements of merchants."""

from __future__ import annotations

from core.api import Blueprint

blp = Blueprint("settlement_api", __name__, url_prefix="/api/v1", description="Daily settlement statements of merchants")
