"""Finance settles a day and pays it out in Chromium: the day's settlement page, the bank transfer file and
the bank's answer, the bank statement reconciled; the merchant's owner reads the statement on a phone."""

from __future__ import annotations

import datetime as dt

import pytest

from core.auth import Actor, create_user
from core.db import db
from core.i18n import business_date
from core.models import Role
from payments.checkout import service as checkout
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, fund, guard
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone
from tests.settlement.conftest import at

WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def settle_server(tmp_path_factory):
    """A live server with a day of sales (two days ago) at a bank-paid restaurant, finance staff and its owner."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        day = business_date() - dt.timedelta(days=2)
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽")
        member_user = f.user(session, Role.MEMBER, member=member)
        card = card_with_pin(session, cipher, app, member, member_user)
        fund(session, card, 100_000)
        shop = f.merchant(session, cipher, "塞上江南餐厅")
        for amount, hour in ((12_800, 12), (6_600, 19)):
            checkout.pay(session, Actor.of(member_user), checkout.PayRequest(
                store_id=shop.stores[0].public_id, amount=amount, card_id=card.public_id, pin=PIN),
                codes=None, pins=guard(app), max_amount=10**7, now=at(day, hour))
        create_user(session, username="e2e-settle-maker", password=PASSWORD, role=Role.FINANCE_MAKER,
                    display_name="制单 王")
        create_user(session, username="e2e-shop-owner", password=PASSWORD, role=Role.MERCHANT_OWNER,
                    merchant_id=shop.id, display_name="店主")
        session.commit()
        return {"day": day, "shop": shop.name}

    with serve(tmp_path_factory, "e2e_settle", setup) as (url, _app, facts):
        yield {"url": url, **facts}


def test_a_day_is_settled_paid_by_bank_file_and_reconciled(settle_server, chromium):
    base, day = settle_server["url"], settle_server["day"]
    finance = chromium.new_context(viewport=WIDE, locale="zh-CN", accept_downloads=True)
    owner = chromium.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        page = finance.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, base, "e2e-settle-maker")
        page.click("header a[href='/finance/settlements']")  # yesterday's page; the sales were the day before
        page.click("#previous-day")
        page.wait_for_url(f"{base}/finance/settlements?date={day.isoformat()}")
        assert "2" in page.inner_text("#unsettled")  # the two payments wait
        page.click("#settle")
        page.wait_for_selector("#settlements tr[data-settlement]")
        row = page.inner_text("#settlements tbody")
        assert settle_server["shop"] in row and "¥194.00" in row
        assert page.inner_text("#total-net") == "¥194.00"
        shot(page, "settle-1-day")
        page.click(f"#settlements a:text-is('{settle_server['shop']}')")
        assert page.inner_text("#net") == "¥194.00" and page.inner_text("#charged") == "¥194.00"
        shot(page, "settle-1b-statement")

        page.click("header a[href='/finance/payouts']")
        page.click("a[href='/finance/payout-bank-files']")
        assert "¥194.00" in page.inner_text("#due")
        page.click("#make-file")
        page.wait_for_selector("#file-id")
        with page.expect_download() as download:
            page.click("#download")
        with open(download.value.path(), encoding="utf-8-sig") as content:
            lines = content.read().splitlines()
        assert len(lines) == 2 and "6222020200112233" in lines[1] and ",19400," in lines[1]
        payout_id = lines[1].rsplit(",", 1)[1]
        assert payout_id.startswith("po_")
        page.set_input_files("#answer #file", files=[{"name": "answer.csv", "mimeType": "text/csv", "buffer": (
            f"reference,status,reason\n{payout_id},paid,\n").encode()}])
        page.click("#import")
        page.wait_for_selector("#results")
        assert "6222020200112233" not in page.content()  # masked on the page
        shot(page, "settle-2-bank-file")
        page.click("header a[href='/finance/payouts']")
        assert page.get_attribute(f"#payout-{payout_id} [data-status]", "data-status") == "paid"
        assert "已发放" in page.inner_text(f"#payout-{payout_id}")

        page.click("header a[href='/finance/reconciliations']")
        statement = (f"date,reference,amount,currency,description\n{day + dt.timedelta(days=1)},{payout_id},19400,"
                     "CNY,塞上江南餐厅结算\n")
        page.set_input_files("#upload-form #file", files=[{"name": "bank.csv", "mimeType": "text/csv",
                                                            "buffer": statement.encode()}])
        page.click("#upload")
        page.wait_for_selector("#reconciliation-id")
        assert page.locator("#lines tr[data-state=matched]").count() == 1
        assert "已匹配" in page.inner_text("#lines tr[data-state=matched]")
        shot(page, "settle-3-reconciled")
        page.click("header a.lang")
        assert "Matched" in page.inner_text("#lines tr[data-state=matched]")
        shot(page, "settle-3b-reconciled-en")

        phone = owner.new_page()
        phone.set_default_timeout(15_000)
        sign_in(phone, base, "e2e-shop-owner")
        phone.click("ul.tiles a[href='/merchant/settlements']")
        phone.click("#settlements tr[data-settlement] a")
        phone.wait_for_selector("#net")
        assert phone.inner_text("#net") == "¥194.00" and "¥194.00" in phone.inner_text("#payout")
        assert fits_the_phone(phone)
        shot(phone, "settle-4-merchant-statement-390")
        phone.click("header a[href='/merchant/payouts']")
        paid = phone.locator(f"#payout-{payout_id}")
        assert paid.locator("[data-status]").get_attribute("data-status") == "paid"
        assert "¥194.00" in paid.inner_text() and "已发放" in paid.inner_text()
        assert fits_the_phone(phone)
        shot(phone, "settle-5-merchant-payouts-390")
        phone.click("header a.lang")
        assert phone.inner_text("h1") == "Payouts" and "Paid on" in phone.inner_text(f"#payout-{payout_id}")
        assert fits_the_phone(phone)
        shot(phone, "settle-6-merchant-payouts-390-en")
    finally:
        finance.close()
        owner.close()
