"""Pages: daily settlement statements of merchants."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("settlement_pages", __name__, template_folder="templates")
