"""A member pays at a store in Chromium on a phone: signs in, opens the URL the store's QR code encodes, enters
an amount and sees the published offer's discount, pays with the PIN (a double tap charges once), and finds
the discount on the receipt and the payment in their list; the cashier's till and the union's usage figures
fit a phone and a laptop."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import func, select

from benefits.models import Offer, OfferStatus
from cards import service as cards
from cards.api import pin_guard
from cards.models import Card
from core.auth import Actor, create_user, issue_token
from core.db import db, utcnow
from core.ids import new_public_id
from core.models import Role
from payments import ledger
from payments.checkout.models import Payment
from payments.ledger import credit, debit
from tests import factories as f
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone

PIN = "583920"
WIDE = {"width": 1280, "height": 900}


def published_offer(session, merchant, title: str) -> Offer:
    """A published 10 % offer of the merchant, at most ¥20 off, written straight to the catalog."""
    public = new_public_id("off")
    offer = Offer(public_id=public, lineage=public, merchant_id=merchant.id, title=title, kind="percent_off",
                  value=1000, max_discount=2000, funding="merchant", starts_at=utcnow() - dt.timedelta(days=1),
                  status=OfferStatus.PUBLISHED, published_at=utcnow())
    session.add(offer)
    session.commit()
    return offer


@pytest.fixture(scope="module")
def pay_server(tmp_path_factory):
    """A live server with a member whose active card has a PIN and ¥300, a restaurant with a published offer
    and its staff, and a union admin."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽")
        user = create_user(session, username="e2e-payer", password=PASSWORD, role=Role.MEMBER, member_id=member.id,
                           display_name="马丽")
        shop = f.merchant(session, cipher, "塞上好味餐厅", category="dining")
        owner = create_user(session, username="e2e-shop-owner", password=PASSWORD, role=Role.MERCHANT_OWNER,
                            merchant_id=shop.id, display_name="店主 马")
        create_user(session, username="e2e-cashier", password=PASSWORD, role=Role.MERCHANT_CASHIER,
                    merchant_id=shop.id, display_name="收银 杨")
        create_user(session, username="e2e-union-admin", password=PASSWORD, role=Role.UNION_ADMIN,
                    display_name="工会 张")
        session.commit()
        token, _ = issue_token(session, owner, 3600)
        session.commit()
        card = cards.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix=app.config["CARD_PREFIX"])
        actor = Actor.of(user)
        cards.change_state(session, actor, card.public_id, "activate")
        cards.set_pin(session, cipher, pin_guard(), actor, card.public_id, pin=PIN, current_pin=None)
        ledger.get_or_create_account(session, "test:funding", normal_side="debit", allow_negative=True)
        ledger.post(session, kind="test_credit", idempotency_key=f"fund:{card.public_id}",
                    entries=[debit("test:funding", 30_000), credit(cards.general_account(card.public_id), 30_000)],
                    metadata={"description": "test credit"})
        session.commit()
        published_offer(session, shop, "会员专享九折")
        return {"store_id": shop.stores[0].public_id, "store": shop.stores[0].name, "token": token,
                "card_id": card.public_id}

    with serve(tmp_path_factory, "e2e_pay", setup) as (url, app, facts):
        yield {"url": url, "app": app, **facts}


def payments_made(server) -> int:
    with server["app"].app_context():
        return db.session.scalar(select(func.count(Payment.id)))


def qr_url(page, server) -> str:
    """Read the URL the store's printed QR code encodes, from the image the poster uses."""
    resp = page.request.get(f"{server['url']}/api/v1/stores/{server['store_id']}/qr.png",
                            headers={"Authorization": f"Bearer {server['token']}"})
    assert resp.ok, resp.status
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(resp.body())))
    assert len(found) == 1
    return found[0].text


def test_a_member_scans_the_store_qr_pays_with_the_pin_and_sees_the_discount(pay_server, page):
    base = pay_server["url"]
    url = qr_url(page, pay_server)
    assert url == f"{base}/pay/{pay_server['store_id']}"
    sign_in(page, base, "e2e-payer")
    page.goto(url)
    assert page.inner_text("#payee h1") == "塞上好味餐厅"
    assert pay_server["store"] in page.inner_text("#payee")
    offers = page.inner_text("#offers")
    assert "会员专享九折" in offers and "优惠10%" in offers and "最多优惠¥20.00" in offers
    assert "¥300.00" in page.inner_text("#spendable")
    assert page.get_attribute("#pin", "inputmode") == "numeric" and page.get_attribute("#pin", "type") == "password"
    assert page.get_attribute("#pin", "autocomplete") == "off"
    assert page.is_hidden("#check-price")  # the price follows the amount as it is typed

    page.fill("#amount", "88.80")
    page.wait_for_selector("#price-charged")
    preview = page.inner_text("#preview")
    assert "会员专享九折" in preview and "-¥8.88" in preview and page.inner_text("#price-charged") == "¥79.92"
    page.fill("#pin", PIN)
    assert fits_the_phone(page)
    shot(page, "member-payment-1-pay-page")

    page.dblclick("#pay-button")  # a double tap submits twice: one payment
    page.wait_for_url(re.compile(r".*/card/payments/pay_\w+$"))
    receipt = page.inner_text("#receipt")
    assert page.inner_text("#charged") == "¥79.92"
    assert "会员专享九折" in receipt and "-¥8.88" in receipt and "¥88.80" in receipt and "通用余额" in receipt
    assert "塞上好味餐厅" in receipt and pay_server["store"] in receipt
    assert "本次优惠¥8.88" in page.inner_text("#saved")
    assert "已支付¥79.92" in page.content()
    assert payments_made(pay_server) == 1
    assert fits_the_phone(page)
    shot(page, "member-payment-2-receipt")

    page.goto(f"{base}/card/")
    assert page.inner_text("#total") == "¥220.08"
    page.click("#payments")
    page.wait_for_url(f"{base}/card/payments/")
    assert "塞上好味餐厅" in page.inner_text("#payments") and "¥79.92" in page.inner_text("#payments")
    shot(page, "member-payment-3-my-payments")

    page.click("#payments a")
    page.wait_for_url(re.compile(r".*/card/payments/pay_\w+$"))
    page.goto(page.url + "?lang=en")
    assert "Paid by card" in page.inner_text("#receipt") and "General balance" in page.inner_text("#receipt")
    shot(page, "member-payment-4-receipt-english")

    # A wrong PIN is said clearly, and nothing is charged.
    page.goto(url + "?lang=zh")
    page.fill("#amount", "10")
    page.fill("#pin", "111111")
    page.click("#pay-button")
    page.wait_for_selector("[data-field=pin]")
    assert "支付密码错误" in page.inner_text("[data-field=pin]")
    assert payments_made(pay_server) == 1
    shot(page, "member-payment-5-wrong-pin")


def test_the_till_and_the_usage_figures_read_on_a_phone_and_a_laptop(pay_server, chromium):
    base = pay_server["url"]
    member = chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    phone = member.new_page()
    phone.set_default_timeout(15_000)
    sign_in(phone, base, "e2e-payer")
    phone.goto(f"{base}/card/code")
    code = phone.inner_text("#digits").replace(" ", "")

    till = chromium.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    cashier = till.new_page()
    cashier.set_default_timeout(15_000)
    sign_in(cashier, base, "e2e-cashier")
    cashier.goto(f"{base}/merchant/till")
    cashier.fill("#amount", "50")
    cashier.fill("#code", code)
    cashier.click("#charge-button")
    cashier.wait_for_selector("#result")
    result = cashier.inner_text("#result")
    assert "收款成功" in result and "会员专享九折" in result and "-¥5.00" in result
    assert cashier.inner_text("#result-charged") == "¥45.00"
    assert cashier.locator("#payments tbody tr").count() >= 2
    assert cashier.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(cashier, "member-payment-6-till-phone")

    for name, viewport in (("phone", {"width": 390, "height": 844}), ("laptop", WIDE)):
        context = chromium.new_context(viewport=viewport, locale="zh-CN")
        admin = context.new_page()
        admin.set_default_timeout(15_000)
        sign_in(admin, base, "e2e-union-admin")
        admin.goto(f"{base}/console/offer-usage")
        assert admin.inner_text("h1") == "优惠使用情况"
        assert admin.inner_text("#total-payments") == "2" and admin.inner_text("#total-discount") == "¥13.88"
        assert admin.locator("#offers-chart rect").count() == 2 and admin.locator("#months-chart polyline").count() == 2
        assert "会员专享九折" in admin.inner_text("#offers-table")
        assert admin.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(admin, f"member-payment-7-usage-{name}")
        context.close()
    member.close()
    till.close()
    with pay_server["app"].app_context():
        card = db.session.scalar(select(Card).where(Card.public_id == pay_server["card_id"]))
        assert ledger.balance(db.session, cards.general_account(card.public_id)).posted == 30_000 - 7_992 - 4_500
