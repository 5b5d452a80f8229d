"""Pages: finance reports: trial balance, programs and merchants."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("reports_pages", __name__, template_folder="templates")
