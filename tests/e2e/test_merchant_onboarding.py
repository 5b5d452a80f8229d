"""A business becomes a partner merchant in Chromium and makes its first sale: it applies on the portal from a
phone, a reviewer approves it, the owner signs in, prints the store's QR poster and gives a cashier an account;
the cashier charges a member's payment code at the till (in English), a member pays by scanning the poster, and
the owner finds both sales on the dashboard, in Chinese and in English."""

from __future__ import annotations

import io
import re

import pytest
import zxingcpp
from PIL import Image

from core.auth import create_user
from core.db import db
from core.models import Role
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, fund
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00:~\x9bU" \
      b"\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q\x00\x00\x00\x00IEND\xaeB`\x82"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOP_PASSWORD = "shop-password-1"
CASHIER_PASSWORD = "till-password-7"


@pytest.fixture(scope="module")
def onboarding_server(tmp_path_factory):
    """A live server with a merchant reviewer and a member whose active card has a PIN and ¥500."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽")
        member_user = create_user(session, username="e2e-onb-member", password=PASSWORD, role=Role.MEMBER,
                                  member_id=member.id, display_name="马丽")
        create_user(session, username="e2e-reviewer", password=PASSWORD, role=Role.MERCHANT_REVIEWER,
                    display_name="审核员")
        session.commit()
        fund(session, card_with_pin(session, cipher, app, member, member_user), 50_000)
        return {}

    with serve(tmp_path_factory, "e2e_onboarding", setup) as (url, app, _facts):
        yield {"url": url, "app": app}


def sign_out(page):
    page.click("header form button[type=submit]")
    page.wait_for_url("**/login")


def scan(locator) -> str:
    """Read the QR code an element shows, as a phone's camera would."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(locator.screenshot())))
    assert len(found) == 1
    return found[0].text


def apply(page, base, username, name, licence) -> None:
    """Sign a business up, fill in and submit its application, on a phone; each mistake is explained in
    Chinese and what was typed stays."""
    page.goto(f"{base}/")
    page.click("a[href='/apply/']")
    assert page.inner_text("h1") == "申请成为特约商户" and fits_the_phone(page)
    page.fill("#username", username)
    page.fill("#password", SHOP_PASSWORD)
    page.fill("#phone", "1390000888")
    page.click("button[type=submit]")
    page.wait_for_selector(".field-error")
    assert "手机号码为 11 位数字" in page.inner_text(".field-error")
    assert page.input_value("#username") == username
    page.fill("#password", SHOP_PASSWORD)
    page.fill("#phone", "13900008888")
    page.click("button[type=submit]")
    page.wait_for_url("**/portal/")
    page.click("text=新建申请")
    page.fill("#name", name)
    page.click("button[value=save]")
    page.wait_for_selector("text=草稿已保存")

    code = f.uscc()
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    page.fill("#uscc", mistyped)
    page.fill("#legal_representative", "马经理")
    page.fill("#contact_phone", "13900009999")
    page.select_option("#category", "dining")
    page.select_option("#region", "640100")
    page.fill("#address", "银川市兴庆区鼓楼南街3号")
    page.locator("input[name=store_name]").first.fill("鼓楼店")
    page.locator("input[name=store_address]").first.fill("鼓楼南街3号")
    page.locator("input[name=offer_title]").first.fill("工会会员9折")
    page.check("input[name=settlement_method][value=bank]")
    page.fill("#bank_name", "宁夏银行")
    page.fill("#bank_account_name", name)
    page.click("button[value=save]")
    page.wait_for_selector(".field-error")
    assert page.inner_text(".flash.error") == "有些内容填写有误。"
    assert "校验位不正确" in page.inner_text("#uscc + .field-error")
    assert page.input_value("#address") == "银川市兴庆区鼓楼南街3号"
    assert page.locator("input[name=store_name]").first.input_value() == "鼓楼店"
    assert page.locator("input[name=offer_title]").first.input_value() == "工会会员9折"
    shot(page, "onboarding-1a-mistyped-code")
    page.fill("#uscc", code)
    page.fill("#contact_phone", "13900009999")
    page.fill("#bank_account_number", "6222020200117766")
    page.click("button[value=save]")
    page.wait_for_selector("text=草稿已保存")
    assert page.input_value("#uscc") == code and page.input_value("#address") == "银川市兴庆区鼓楼南街3号"
    assert page.locator("input[name=store_name]").first.input_value() == "鼓楼店"
    assert fits_the_phone(page)
    shot(page, "onboarding-1-form")

    page.click("button[value=submit]")  # the licence is still missing
    page.wait_for_selector(".flash.error")
    assert page.inner_text(".flash.error") == "申请尚未填写完整。"
    assert "请上传营业执照。" in page.inner_text("#application-form")
    page.set_input_files("#file", files=[{"name": "营业执照.txt", "mimeType": "text/plain", "buffer": "营业执照".encode()}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-form .field-error")
    assert page.inner_text("#upload-form .field-error") == "请以 PDF、PNG 或 JPEG 文件上传营业执照。"
    page.set_input_files("#file", str(licence))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=营业执照已上传")
    assert page.locator("text=营业执照.png").count() == 1
    page.click("button[value=submit]")
    page.wait_for_selector("text=已提交，工会将审核您的申请")
    assert "************7766" in page.content() and "6222020200117766" not in page.content()
    assert fits_the_phone(page)
    shot(page, "onboarding-2-submitted")


def test_an_applicant_is_approved_sets_up_the_shop_and_makes_the_first_sales(onboarding_server, page, chromium,
                                                                              tmp_path):
    base = onboarding_server["url"]
    licence = tmp_path / "营业执照.png"
    licence.write_bytes(PNG)
    name = f"塞上江南餐厅{f.next_id()}"
    owner_name = f"saishang-{f.next_id()}"
    apply(page, base, owner_name, name, licence)
    sign_out(page)

    office = chromium.new_context(viewport=WIDE, locale="zh-CN")
    member_ctx = chromium.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    till_ctx = chromium.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    try:
        reviewer = office.new_page()
        reviewer.set_default_timeout(15_000)
        sign_in(reviewer, base, "e2e-reviewer")
        reviewer.click("ul.tiles a[href='/review/?status=submitted']")
        row = reviewer.locator("#queue tbody tr", has_text=name)
        assert row.count() == 1
        shot(reviewer, "onboarding-3-review-queue")
        row.locator("a").click()
        assert reviewer.locator("text=营业执照.png").count() == 1
        reviewer.fill("#comment", "资质齐全，同意入驻")
        reviewer.click("button[value=approve]")
        reviewer.wait_for_selector("text=操作成功")
        assert "已通过" in reviewer.content()
        shot(reviewer, "onboarding-4-approved")

        # The applicant's account now runs the shop.
        sign_in(page, base, owner_name, SHOP_PASSWORD)
        page.click("ul.tiles a[href='/merchant/']")
        page.wait_for_url(f"{base}/merchant/")
        assert page.inner_text("h1") == f"{name} 在册"
        store = page.locator("#stores tr[data-store]")
        assert store.count() == 1 and "鼓楼店" in store.inner_text() and "鼓楼南街3号" in store.inner_text()
        store_id = store.get_attribute("data-store")
        assert page.inner_text("#today-sales") == "¥0.00"
        assert "宁夏银行 ************7766" in page.content()
        assert fits_the_phone(page)
        shot(page, "onboarding-5-dashboard")

        store.locator("a").click()
        page.wait_for_url(f"{base}/merchant/stores/{store_id}/poster")
        assert page.inner_text("h1") == name and "鼓楼店" in page.content()
        pay_url = scan(page.locator(".poster > .qr svg"))
        assert pay_url == f"{base}/pay/{store_id}"
        assert fits_the_phone(page)
        shot(page, "onboarding-6-poster")
        page.click("#back")
        page.wait_for_url(f"{base}/merchant/")

        # The owner gives the cashier an account; a weak password is refused without losing the rest.
        page.click("#new-staff")
        page.wait_for_url(f"{base}/merchant/staff/new")
        assert page.inner_text("h1") == "添加收银员或店长" and fits_the_phone(page)
        cashier_name = f"till-{f.next_id()}"
        page.check("input[name=role][value=cashier]")
        page.fill("#display_name", "收银 杨")
        page.fill("#username", cashier_name)
        page.fill("#password", "1111")
        page.click("#add-staff")
        page.wait_for_selector("[data-field=password]")
        assert "至少8个字符" in page.inner_text("[data-field=password]")
        assert page.input_value("#username") == cashier_name and page.input_value("#display_name") == "收银 杨"
        assert page.is_checked("input[name=role][value=cashier]")
        shot(page, "onboarding-7-staff-refused")
        page.fill("#password", CASHIER_PASSWORD)
        page.click("#add-staff")
        page.wait_for_url(f"{base}/merchant/#staff")
        assert "收银 杨" in page.inner_text(".flash") and cashier_name in page.inner_text(".flash")
        assert "收银员" in page.inner_text(f"#staff tr[data-username='{cashier_name}']")
        assert fits_the_phone(page)
        shot(page, "onboarding-8-staff-added")

        # The member shows a payment code; the cashier, who reads English, charges it at the till.
        phone = member_ctx.new_page()
        phone.set_default_timeout(15_000)
        sign_in(phone, base, "e2e-onb-member")
        phone.click("ul.tiles a[href='/card/code']")
        code = phone.inner_text("#digits").replace(" ", "")
        assert re.fullmatch(r"\d{18}", code)

        cashier = till_ctx.new_page()
        cashier.set_default_timeout(15_000)
        cashier.goto(f"{base}/login")
        cashier.click("header a.lang")
        assert cashier.inner_text("h1") == "Sign in"
        cashier.fill("#username", cashier_name)
        cashier.fill("#password", CASHIER_PASSWORD)
        cashier.click("button[type=submit]")
        cashier.wait_for_url(f"{base}/")
        cashier.click("ul.tiles a[href='/merchant/till']")
        assert cashier.inner_text("#charge h2") == "Charge a member card"
        assert cashier.input_value("#store") == store_id
        cashier.fill("#amount", "128")
        cashier.fill("#code", code)
        assert fits_the_phone(cashier)
        cashier.click("#charge-button")
        cashier.wait_for_selector("#result")
        assert "Payment taken" in cashier.inner_text("#result")
        assert cashier.inner_text("#result-charged") == "¥128.00"
        assert cashier.locator("#payments tbody tr").count() == 1
        assert cashier.locator("#payments summary").count() == 0  # a cashier does not refund
        assert fits_the_phone(cashier)
        shot(cashier, "onboarding-9-first-sale-at-the-till-en")

        # Another sale: the member scans the poster and pays with the PIN.
        phone.goto(pay_url)
        assert phone.inner_text("#payee h1") == name
        phone.fill("#amount", "66")
        phone.fill("#pin", PIN)
        phone.click("#pay-button")
        phone.wait_for_url(re.compile(r".*/card/payments/pay_\w+$"))
        assert phone.inner_text("#charged") == "¥66.00" and name in phone.inner_text("#receipt")
        shot(phone, "onboarding-10-member-paid-by-qr")
        phone.click("header a[href='/card/']")
        assert phone.inner_text("#total") == "¥306.00"  # ¥500 less the two sales

        page.reload()
        assert page.inner_text("#today-sales") == "¥194.00" and page.inner_text("#payable") == "¥194.00"
        shot(page, "onboarding-11-dashboard-with-sales")
        page.click("header a.lang")
        assert page.inner_text("#today-sales") == "¥194.00"
        assert "Today's sales" in page.inner_text(".figures") and "Print poster" in page.inner_text("#stores")
        assert fits_the_phone(page)
        shot(page, "onboarding-12-dashboard-en")
    finally:
        office.close()
        member_ctx.close()
        till_ctx.close()
