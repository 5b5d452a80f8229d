"""A business applies on the portal in a real browser, and the application reaches the reviewer."""

from tests import factories as f
from tests.e2e.conftest import PASSWORD, shot

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00:~\x9bU" \
      b"\x00\x00\x00\nIDATx\x9cc`\x00\x00\x00\x02\x00\x01H\xaf\xa4q\x00\x00\x00\x00IEND\xaeB`\x82"


def test_application_form_to_reviewer_queue(live_server, page, tmp_path):
    licence = tmp_path / "营业执照.png"
    licence.write_bytes(PNG)
    name = f"塞上江南餐厅{f.next_id()}"

    page.goto(f"{live_server}/apply/")
    page.fill("#username", f"saishang-{f.next_id()}")
    page.fill("#password", "shop-password-1")
    page.fill("#phone", "13900008888")
    page.click("button[type=submit]")
    page.wait_for_url("**/portal/")
    page.click("text=新建申请")
    page.fill("#name", name)
    page.click("button[value=save]")
    page.wait_for_selector("text=草稿已保存")

    page.fill("#uscc", f.uscc())
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
    page.fill("#bank_account_number", "6222020200117766")
    page.click("button[value=save]")
    page.wait_for_selector("text=草稿已保存")
    shot(page, "onboarding-1-form")

    page.set_input_files("#file", str(licence))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("text=营业执照已上传")
    assert page.locator("text=营业执照.png").count() == 1
    page.click("button[value=submit]")
    page.wait_for_selector("text=已提交，工会将审核您的申请")
    assert "************7766" in page.content() and "6222020200117766" not in page.content()
    shot(page, "onboarding-2-submitted")

    page.click("button:has-text('退出')")
    page.goto(f"{live_server}/login")
    page.fill("#username", "e2e-reviewer")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{live_server}/review/?status=submitted")
    row = page.locator("#queue tbody tr", has_text=name)
    assert row.count() == 1
    shot(page, "onboarding-3-review-queue")
    row.locator("a").click()
    assert page.locator("text=营业执照.png").count() == 1
    page.fill("#comment", "资质齐全，同意入驻")
    page.click("button[value=approve]")
    page.wait_for_selector("text=操作成功")
    assert "已通过" in page.content()
    shot(page, "onboarding-4-approved")
