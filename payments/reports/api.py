"""JSON endpoints: finance reports: trial balance, programs and merchants."""

from __future__ import annotations

from core.api import Blueprint

blp = Blueprint("reports_api", __name__, url_prefix="/api/v1", description="Finance reports: trial balance, programs and merchants")
