"""Pages: payouts to merchants and their status."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("payouts_pages", __name__, template_folder="templates")
