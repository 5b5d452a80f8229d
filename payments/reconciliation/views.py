"""Pages: reconciliation of Stripe and bank statements against the ledger."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("reconciliation_pages", __name__, template_folder="templates")
