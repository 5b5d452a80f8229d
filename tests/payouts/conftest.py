"""A world for payout tests: merchants paid by bank and through Stripe, their staff, finance staff, and
payouts as settlement leaves them (the payable moved to payouts in transit, a Payout row waiting)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from core.auth import Actor
from core.errors import NotFound
from core.ids import new_public_id
from core.models import Role
from core.stripe_client import stripe_client
from merchants.models import SettlementMethod
from payments import accounts, ledger
from payments.ledger import Transaction, credit, debit
from payments.payouts.models import Payout, PayoutStatus
from payments.settlement.models import Settlement, SettlementStatus
from tests import factories as f

TODAY = dt.date(2026, 11, 26)
ACCOUNT_NUMBER = "6222020200112233"  # what tests.factories.merchant puts on file
PAYMENTS = "test:payments"
WEBHOOK_URL = "/api/v1/webhooks/stripe"


def make_payout(session, merchant, amount: int, *, due_on: dt.date = TODAY, created_by=None,
                approval_above: int | None = None) -> Payout:
    """Settle `amount` for a merchant as settlement does: card payments on its payable, the payable moved to
    payouts in transit, a settled statement and its payout (pending approval above `approval_above`)."""
    accounts.open_platform_accounts(session)
    ledger.get_or_create_account(session, PAYMENTS, normal_side="debit", allow_negative=True)
    day = dt.date(2026, 1, 1) + dt.timedelta(days=f.next_id())
    stl = new_public_id("stl")
    ledger.post(session, kind="test_payments", idempotency_key=f"{stl}:payments", reference=stl,
                entries=[debit(PAYMENTS, amount), credit(merchant.payable_account, amount)])
    txn = ledger.post(session, kind="settlement", idempotency_key=f"settlement:{stl}", reference=stl,
                      entries=[debit(merchant.payable_account, amount), credit(accounts.IN_TRANSIT, amount)])
    settlement = Settlement(public_id=stl, merchant_id=merchant.id, business_date=day, currency="CNY",
                            payments_count=1, amount=amount, charged=amount, net=amount,
                            status=SettlementStatus.SETTLED, transaction_id=txn.public_id, payout_due_on=due_on,
                            created_by_id=created_by.id if created_by else None)
    session.add(settlement)
    session.flush()
    large = approval_above is not None and amount > approval_above
    payout = Payout(public_id=new_public_id("po"), merchant_id=merchant.id, settlement_id=settlement.id,
                    amount=amount, currency="CNY", method=merchant.settlement_method,
                    status=PayoutStatus.PENDING_APPROVAL if large else PayoutStatus.READY, requires_approval=large,
                    due_on=due_on, stripe_account_id=merchant.stripe_account_id,
                    created_by_id=created_by.id if created_by else None)
    session.add(payout)
    session.commit()
    return payout


def stripe_account(app, stripe_server, *, payouts_enabled: bool = True, onboarded: bool = True) -> str:
    """Open a connected account on the Stripe test server as merchant onboarding does, onboarded unless told."""
    account = stripe_client(app.config).v1.accounts.create(params={
        "type": "express", "capabilities": {"transfers": {"requested": True}}})
    if onboarded:
        stripe_server.complete_onboarding(account.id, payouts_enabled=payouts_enabled)
    return account.id


def make_stripe_merchant(session, cipher, account_id: str | None, name: str = "金凤超市"):
    merchant = f.merchant(session, cipher, name, category="supermarket")
    merchant.settlement_method = SettlementMethod.STRIPE
    merchant.stripe_account_id = account_id
    merchant.stripe_status = "enabled" if account_id else None
    session.commit()
    return merchant


def row(session, payout) -> Payout:
    """The payout as the database has it now."""
    return session.scalar(select(Payout).where(Payout.public_id == getattr(payout, "public_id", payout))
                          .execution_options(populate_existing=True))


def posted(session, code: str) -> int:
    """An account's posted balance (nothing for an account not opened yet)."""
    try:
        return ledger.balance(session, code).posted
    except NotFound:
        return 0


def txns(session, payout, kind: str | None = None) -> list[Transaction]:
    query = select(Transaction).where(Transaction.reference == payout.public_id)
    if kind:
        query = query.where(Transaction.kind == kind)
    return list(session.scalars(query.order_by(Transaction.id)))


def count(session, model, *conditions) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*conditions))


def assert_books_balance(session) -> None:
    report = ledger.verify(session)
    assert report.ok, report.problems


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, user) -> None:
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    resp = client.post("/login", data={"username": user.username, "password": f.PASSWORD,
                                       "csrf_token": csrf(client.get("/login"))})
    assert resp.status_code == 302, resp.get_data(as_text=True)


@pytest.fixture
def world(session, cipher):
    shop = f.merchant(session, cipher, "好味餐厅")
    other = f.merchant(session, cipher, "仁心药房", category="pharmacy")
    users = {name: f.user(session, role) for name, role in (
        ("maker", Role.FINANCE_MAKER), ("maker2", Role.FINANCE_MAKER), ("approver", Role.FINANCE_APPROVER),
        ("approver2", Role.FINANCE_APPROVER), ("auditor", Role.AUDITOR), ("admin", Role.UNION_ADMIN),
        ("reviewer", Role.MERCHANT_REVIEWER))}
    users.update({
        "owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id),
        "manager": f.user(session, Role.MERCHANT_MANAGER, merchant_id=shop.id),
        "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=shop.id),
        "other_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=other.id),
    })
    return {"shop": shop, "other": other, "users": users, "a": {name: Actor.of(u) for name, u in users.items()}}


@pytest.fixture
def headers(session, world):
    return {name: f.bearer(session, u) for name, u in world["users"].items()}
