"""A world for the offer catalog: the org tree, merchants with staff, union admins scoped to two cities and
one for the whole platform, aid programs at three levels, and a member."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from benefits.models import Offer
from core.auth import Actor
from core.models import AuditEvent, Role
from tests import factories as f


@pytest.fixture
def world(session, cipher):
    tree = f.org_tree(session)
    shop = f.merchant(session, cipher, "好味餐厅", category="dining")
    pharmacy = f.merchant(session, cipher, "仁心药房", category="pharmacy")
    member = f.member(session, cipher, tree["yc_base"], "王芳")
    users = {
        "platform": f.user(session, Role.UNION_ADMIN),
        "admin": f.user(session, Role.UNION_ADMIN, union=tree["yc"]),
        "gy_admin": f.user(session, Role.UNION_ADMIN, union=tree["gy"]),
        "owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id),
        "manager": f.user(session, Role.MERCHANT_MANAGER, merchant_id=shop.id),
        "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=shop.id),
        "pharmacy_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=pharmacy.id),
        "member": f.user(session, Role.MEMBER, member=member),
        "auditor": f.user(session, Role.AUDITOR),
        "maker": f.user(session, Role.FINANCE_MAKER),
        "reviewer": f.user(session, Role.MERCHANT_REVIEWER),
    }
    programs = {"fed": f.aid_program(session, tree["fed"], "全省普惠补贴"),
                "yc": f.aid_program(session, tree["yc"], "银川普惠补贴"),
                "gy": f.aid_program(session, tree["gy"], "固原普惠补贴")}
    return {"tree": tree, "shop": shop, "pharmacy": pharmacy, "member": member, "users": users,
            "programs": programs, "h": {name: f.bearer(session, u) for name, u in users.items()},
            "a": {name: Actor.of(u) for name, u in users.items()}}


def offer_row(session, public_id: str) -> Offer:
    """Read an offer version afresh from the database."""
    return session.scalar(select(Offer).where(Offer.public_id == public_id).execution_options(populate_existing=True))


def audit_actions(session, object_id: str) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == object_id)
                                .order_by(AuditEvent.id)))


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, username: str) -> None:
    page = client.get("/login")
    resp = client.post("/login", data={"username": username, "password": f.PASSWORD, "csrf_token": csrf(page)})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def post(client, url: str, **data):
    """POST a page form with the session's CSRF token."""
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **data})
