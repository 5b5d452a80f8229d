"""Merchant pages: the public directory, a store's pay page, the application portal, the reviewer
queue, and the merchant's own dashboard."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from core.db import db
from core.errors import DomainError
from merchants import service
from merchants.models import MerchantCategory

bp = Blueprint("merchants_pages", __name__, template_folder="templates")
CITIES = [("640100", "银川市"), ("640200", "石嘴山市"), ("640300", "吴忠市"), ("640400", "固原市"), ("640500", "中卫市")]


@bp.route("/merchants/")
def directory():
    """List active partner merchants with filters."""
    args = request.args
    try:
        category = MerchantCategory(args["category"]) if args.get("category") else None
        page = service.list_directory(db.session, category=category, region=args.get("region") or None,
                                      q=args.get("q") or None, limit=30, cursor=args.get("cursor") or None)
    except (ValueError, DomainError):
        page = service.Page([], None)
    return render_template("merchants/directory.html", page=page, args=args, categories=list(MerchantCategory),
                           cities=CITIES)


@bp.route("/merchants/<merchant_id>")
def merchant_page(merchant_id):
    """Show one active merchant and its stores."""
    return render_template("merchants/merchant.html", merchant=service.get_public_merchant(db.session, merchant_id))


@bp.route("/pay/<store_id>")
def pay_page(store_id):
    """The page a store's QR code opens: who the member is paying, or why the store takes no cards now."""
    try:
        store = service.usable_store(db.session, store_id)
        problem = None
    except DomainError as exc:
        if exc.status == 404:
            raise
        store, problem = service.get_store_any(db.session, store_id), exc.message
    return render_template("merchants/pay.html", store=store, problem=problem), (409 if problem else 200)
