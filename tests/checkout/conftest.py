"""A world for checkout tests: a member with an active card and a PIN, merchants with staff, a funded
aid program, and published offers made to measure."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from benefits.models import Offer, OfferBudget, OfferStatus
from cards import service as cards
from cards.models import Card
from core.auth import Actor
from core.ids import new_public_id
from core.models import Role
from payments import ledger
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from payments.ledger import credit, debit
from tests import factories as f

PREFIX = "880064"
PIN = "258369"
FUNDING = "test:funding"
NOW = dt.datetime(2026, 11, 25, 4, 0, tzinfo=dt.timezone.utc)  # a Wednesday, 12:00 in 银川


def guard(app) -> cards.PinGuard:
    return cards.PinGuard(app.extensions["kv"], max_failures=5, lockout=1800)


def card_with_pin(session, cipher, app, member, member_user) -> Card:
    card = cards.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix=PREFIX)
    cards.change_state(session, f.PLATFORM, card.public_id, "activate")
    cards.set_pin(session, cipher, guard(app), Actor.of(member_user), card.public_id, pin=PIN, current_pin=None)
    return card


def fund(session, card: Card, amount: int, *, program_id: str | None = None, categories=None, expires_at=None,
         key: str | None = None) -> str:
    """Credit a card's general purse, or its restricted purse of a program, from a test account."""
    ledger.get_or_create_account(session, FUNDING, normal_side="debit", allow_negative=True)
    if program_id is None:
        code = cards.general_account(card.public_id)
    else:
        code = cards.open_restricted_purse(session, card, program_id=program_id, label=f"aid {program_id}",
                                           allowed_categories=categories, expires_at=expires_at).account_code
    ledger.post(session, kind="test_credit", idempotency_key=key or f"fund:{code}:{amount}:{f.next_id()}",
                entries=[debit(FUNDING, amount), credit(code, amount)], metadata={"description": "test credit"})
    session.commit()
    return code


def make_offer(session, *, merchant=None, category=None, kind="percent_off", value=1000, funding="merchant",
               program_id=None, budget=None, status=OfferStatus.PUBLISHED, **kw) -> Offer:
    """A published offer, written straight to the catalog."""
    public = new_public_id("off")
    offer = Offer(public_id=public, lineage=public, merchant_id=merchant.id if merchant is not None else None,
                  category=category, title=kw.pop("title", f"offer {public[-4:]}"), kind=kind, value=value,
                  funding=funding, union_share_bp=kw.pop("union_share_bp", 10000 if funding == "union" else 0),
                  program_id=program_id, starts_at=kw.pop("starts_at", NOW - dt.timedelta(days=30)),
                  budget_amount=budget, status=status, **kw)
    session.add(offer)
    if budget is not None:
        session.add(OfferBudget(lineage=public, budget=budget, used=0))
    session.commit()
    return offer


def funded_program(session, users, union, amount=1_000_000, **kw):
    maker, approver = Actor.of(users["maker"]), Actor.of(users["approver"])
    program = disbursement.create_program(session, maker, name=kw.pop("name", "职工普惠补贴"),
                                          kind=kw.pop("kind", ProgramKind.CONSUMPTION_VOUCHER),
                                          purse=kw.pop("purse", PursePolicy.GENERAL), union_id=union.public_id,
                                          **kw)
    funding = disbursement.create_funding(session, maker, program.public_id, amount=amount, currency="CNY",
                                          reference=f"BANK-{f.next_id()}")
    disbursement.approve_funding(session, approver, funding.public_id)
    return program


@pytest.fixture
def world(session, cipher, app):
    tree = f.org_tree(session)
    own = f.member(session, cipher, tree["yc_base"], "王芳")
    other = f.member(session, cipher, tree["gy_base"], "李强")
    shop = f.merchant(session, cipher, "好味餐厅", category="dining")
    pharmacy = f.merchant(session, cipher, "仁心药房", category="pharmacy")
    users = {
        "member": f.user(session, Role.MEMBER, member=own),
        "other_member": f.user(session, Role.MEMBER, member=other),
        "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=shop.id),
        "manager": f.user(session, Role.MERCHANT_MANAGER, merchant_id=shop.id),
        "owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id),
        "pharmacy_cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=pharmacy.id),
        "pharmacy_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=pharmacy.id),
        "maker": f.user(session, Role.FINANCE_MAKER),
        "approver": f.user(session, Role.FINANCE_APPROVER),
        "auditor": f.user(session, Role.AUDITOR),
        "admin": f.user(session, Role.UNION_ADMIN, union=tree["yc"]),
    }
    card = card_with_pin(session, cipher, app, own, users["member"])
    other_card = card_with_pin(session, cipher, app, other, users["other_member"])
    return {"tree": tree, "own": own, "other": other, "shop": shop, "pharmacy": pharmacy, "users": users,
            "h": {name: f.bearer(session, u) for name, u in users.items()},
            "a": {name: Actor.of(u) for name, u in users.items()},
            "card": card, "other_card": other_card,
            "store": shop.stores[0], "pharmacy_store": pharmacy.stores[0]}


def payment_code(client, world, who="member", card=None) -> str:
    card = card or world["card"]
    resp = client.post(f"/api/v1/cards/{card.public_id}/payment-codes", headers=world["h"][who])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["code"]


def balance(session, code: str) -> int:
    return ledger.balance(session, code).posted


def card_of(session, public_id: str) -> Card:
    return session.scalar(select(Card).where(Card.public_id == public_id))
