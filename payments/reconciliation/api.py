"""JSON endpoints: reconciliation of Stripe and bank statements against the ledger."""

from __future__ import annotations

from core.api import Blueprint

blp = Blueprint("reconciliation_api", __name__, url_prefix="/api/v1", description="Reconciliation of Stripe and bank statements against the ledger")
