"""A refund in Chromium: a member paid a pharmacy with aid and the general balance; the owner refunds part of it
at the till on a phone (too much is refused, nothing lost), a manager refunds the rest in English, and the
member finds the money back in the purses it came from: the card's balances, its transactions and the
receipt."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from cards import service as cards
from core.auth import Actor, create_user
from core.db import db, utcnow
from core.models import Role
from payments import ledger
from payments.checkout import service as checkout
from payments.checkout.models import Payment
from payments.ledger import credit, debit
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, guard
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone

PHONE = {"width": 390, "height": 844}


def credit_purse(session, account: str, amount: int) -> None:
    ledger.get_or_create_account(session, "test:funding", normal_side="debit", allow_negative=True)
    ledger.post(session, kind="test_credit", idempotency_key=f"fund:{account}", metadata={"description": "test credit"},
                entries=[debit("test:funding", amount), credit(account, amount)])
    session.commit()


@pytest.fixture(scope="module")
def refund_server(tmp_path_factory):
    """A live server with a pharmacy, its owner and a manager, and a member who paid it ¥150 today: ¥100 of
    medical aid first, then ¥50 of the card's ¥200 general balance."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽")
        member_user = create_user(session, username="e2e-refund-member", password=PASSWORD, role=Role.MEMBER,
                                  member_id=member.id, display_name="马丽")
        shop = f.merchant(session, cipher, "惠民大药房", category="pharmacy")
        create_user(session, username="e2e-refund-owner", password=PASSWORD, role=Role.MERCHANT_OWNER,
                    merchant_id=shop.id, display_name="店主 马")
        create_user(session, username="e2e-refund-manager", password=PASSWORD, role=Role.MERCHANT_MANAGER,
                    merchant_id=shop.id, display_name="店长 周")
        session.commit()
        card = card_with_pin(session, cipher, app, member, member_user)
        credit_purse(session, cards.general_account(card.public_id), 20_000)
        aid = cards.open_restricted_purse(session, card, program_id="prg_e2e_medical", label="医疗互助",
                                          allowed_categories=["pharmacy"], expires_at=utcnow() + dt.timedelta(days=90))
        credit_purse(session, aid.account_code, 10_000)
        payment, _replayed = checkout.pay(session, Actor.of(member_user), checkout.PayRequest(
            store_id=shop.stores[0].public_id, amount=15_000, card_id=card.public_id, pin=PIN),
            codes=None, pins=guard(app), max_amount=10**7)
        return {"payment_id": payment.public_id}

    with serve(tmp_path_factory, "e2e_refund", setup) as (url, app, facts):
        yield {"url": url, "app": app, **facts}


def refunded(server) -> int:
    with server["app"].app_context():
        return db.session.scalar(select(Payment.refunded).where(Payment.public_id == server["payment_id"]))


def open_refund(page, base, payment_id):
    """Go from the home page to the till and open the refund form of a payment."""
    page.click("ul.tiles a[href='/merchant/till']")
    page.wait_for_url(f"{base}/merchant/till")
    row = page.locator(f"#payments tr[data-payment={payment_id}]")
    row.locator("summary").click()
    return row


def test_an_owner_and_a_manager_refund_a_payment_and_the_member_gets_the_money_back(refund_server, page, chromium):
    base, payment_id = refund_server["url"], refund_server["payment_id"]

    sign_in(page, base, "e2e-refund-owner")
    row = open_refund(page, base, payment_id)
    assert "¥150.00" in row.inner_text() and "已完成" in row.inner_text()
    assert row.locator("input[name=amount]").input_value() == "150.00"
    assert fits_the_phone(page)
    shot(page, "refund-1-form-390")

    # More than the payment charged is refused, changes nothing, and the form keeps what was typed.
    row.locator("input[name=amount]").fill("150.01")
    row.locator("input[name=reason]").fill("退回一盒药")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".flash.error")
    assert "最多还可退款¥150.00" in page.inner_text(".flash.error")
    assert refunded(refund_server) == 0
    row = page.locator(f"#payments tr[data-payment={payment_id}]")
    assert row.locator("details").get_attribute("open") is not None
    assert row.locator("input[name=amount]").input_value() == "150.01"
    assert row.locator("input[name=reason]").input_value() == "退回一盒药"
    assert fits_the_phone(page)
    shot(page, "refund-2-too-much")

    row.locator("input[name=amount]").fill("30")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(".flash.info")
    assert "¥30.00" in page.inner_text(".flash.info") and payment_id in page.inner_text(".flash.info")
    assert page.get_attribute(f"#payments tr[data-payment={payment_id}]", "data-status") == "partially_refunded"
    assert "部分退款" in row.inner_text() and "已退款 ¥30.00" in row.inner_text()
    assert refunded(refund_server) == 3_000
    assert fits_the_phone(page)
    shot(page, "refund-3-partly-refunded")

    manager_ctx = chromium.new_context(viewport=PHONE, locale="en-US", is_mobile=True)
    try:
        manager = manager_ctx.new_page()
        manager.set_default_timeout(15_000)
        manager.goto(f"{base}/login?lang=en")
        assert manager.inner_text("h1") == "Sign in"
        sign_in(manager, base, "e2e-refund-manager")
        row = open_refund(manager, base, payment_id)
        assert "Partly refunded" in row.inner_text()
        assert row.locator("input[name=amount]").input_value() == "120.00"  # what is left
        assert "At most ¥120.00." in row.inner_text()
        row.locator("input[name=reason]").fill("Customer returned the rest")
        row.locator("button[type=submit]").click()
        manager.wait_for_selector(".flash.info")
        assert "Refunded ¥120.00" in manager.inner_text(".flash.info")
        row = manager.locator(f"#payments tr[data-payment={payment_id}]")
        assert row.get_attribute("data-status") == "refunded" and "Refunded" in row.inner_text()
        assert row.locator("summary").count() == 0  # nothing is left to refund
        assert fits_the_phone(manager)
        shot(manager, "refund-4-refunded-en")
        manager.click("header a[href='/merchant/']")
        assert manager.locator("#staff").count() == 1 and manager.locator("#new-staff").count() == 0
        assert manager.goto(f"{base}/merchant/staff/new").status == 403  # only the owner adds staff
    finally:
        manager_ctx.close()
    assert refunded(refund_server) == 15_000

    # The member: each purse has what it had before the payment, and the receipt tells the story.
    page.context.clear_cookies()
    sign_in(page, base, "e2e-refund-member")
    page.click("ul.tiles a[href='/card/']")
    assert page.inner_text("#total") == "¥300.00"
    aid = page.locator("#purses li.purse.restricted")
    assert "医疗互助" in aid.inner_text() and "¥100.00" in aid.inner_text()
    general = page.locator("#purses li.purse:not(.restricted)")
    assert "通用余额" in general.inner_text() and "¥200.00" in general.inner_text()
    assert fits_the_phone(page)
    shot(page, "refund-5-card")

    page.click("#transactions")
    page.wait_for_url(f"{base}/card/transactions")
    lines = page.locator("#statement li.statement-line")
    kinds = lines.locator(".statement-kind").all_inner_texts()
    assert kinds[:3] == ["退款", "退款", "消费"]
    assert "+¥120.00" in lines.nth(0).inner_text() and "+¥30.00" in lines.nth(1).inner_text()
    assert "-¥150.00" in lines.nth(2).inner_text()
    assert all("惠民大药房" in lines.nth(n).inner_text() for n in range(3))  # each line names the shop
    assert fits_the_phone(page)
    shot(page, "refund-6-transactions")

    page.go_back()
    page.click("#payments")
    page.click(f"#payments a[href='/card/payments/{payment_id}']")
    assert page.inner_text("[data-fact=status]") == "已退款"
    assert page.inner_text("[data-fact=refunded]") == "¥150.00"
    refunds = page.inner_text("#refunds")
    assert "退回一盒药" in refunds and "+¥30.00" in refunds and "+¥120.00" in refunds
    assert fits_the_phone(page)
    shot(page, "refund-7-receipt")
    page.click("header a.lang")
    assert page.inner_text("[data-fact=status]") == "Refunded" and "Back to the card" in page.inner_text("#refunds")
    shot(page, "refund-8-receipt-en")
