import io
import re

from sqlalchemy import select

from core.models import Role
from merchants.models import Merchant
from tests import factories as f

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def test_an_applicant_applies_on_the_portal_and_a_reviewer_approves_on_the_console(client, session, app):
    page = client.get("/apply/")
    assert page.status_code == 200 and "申请成为特约商户" in page.get_data(as_text=True)
    bad = client.post("/apply/", data={"username": "portal-shop", "password": "shop-password-1", "phone": "1",
                                       "csrf_token": csrf(page)})
    assert bad.status_code == 422 and "手机号码为 11 位数字" in bad.get_data(as_text=True)
    made = client.post("/apply/", data={"username": "portal-shop", "password": "shop-password-1",
                                        "phone": "13900006666", "csrf_token": csrf(page)})
    assert made.status_code == 302 and made.headers["Location"].endswith("/portal/")
    form = client.get("/portal/applications/new")
    saved = client.post("/portal/applications/new", data={"name": "银川书香文具", "csrf_token": csrf(form)})
    assert saved.status_code == 302
    app_url = saved.headers["Location"]
    detail = client.get(app_url)
    token = csrf(detail)
    early = client.post(app_url, data={"action": "submit", "name": "银川书香文具", "csrf_token": token})
    assert early.status_code == 422 and "提交申请前须填写此项。" in early.get_data(as_text=True)
    fields = {"name": "银川书香文具", "uscc": f.uscc(), "legal_representative": "刘经理", "contact_phone": "13900007777",
              "category": "education", "region": "640100", "address": "银川市金凤区",
              "store_name": ["书香总店", ""], "store_address": ["万达广场", ""], "store_hours": ["9:00-21:00", ""],
              "offer_title": ["会员9折", ""], "settlement_method": "bank", "bank_name": "宁夏银行",
              "bank_account_name": "银川书香文具", "bank_account_number": "6222020200118899", "csrf_token": token}
    assert client.post(app_url, data=fields | {"action": "save"}).status_code == 302
    upload = client.post(app_url, content_type="multipart/form-data",
                         data={"action": "upload", "csrf_token": token, "file": (io.BytesIO(PNG), "执照.png")})
    assert upload.status_code == 302
    renamed_exe = client.post(app_url, content_type="multipart/form-data", data={
        "action": "upload", "csrf_token": token, "file": (io.BytesIO(b"MZ\x90\x00" + b"\x00" * 50), "执照.pdf")})
    assert renamed_exe.status_code == 422
    submitted = client.post(app_url, data=fields | {"action": "submit", "bank_account_number": ""})
    assert submitted.status_code == 302
    text = client.get(app_url).get_data(as_text=True)
    assert "已提交" in text and "************8899" in text and "6222020200118899" not in text
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})

    f.user(session, Role.MERCHANT_REVIEWER, username="portal-reviewer")
    login = client.get("/login")
    client.post("/login", data={"username": "portal-reviewer", "password": f.PASSWORD, "csrf_token": csrf(login)})
    queue = client.get("/review/?status=submitted").get_data(as_text=True)
    assert "银川书香文具" in queue
    review_url = re.search(r'href="(/review/app_[^"]+)"', queue).group(1)
    review = client.get(review_url)
    assert "执照.png" in review.get_data(as_text=True)
    doc_url = re.search(r'href="(/applications/[^"]+/documents/[^"]+)"', review.get_data(as_text=True)).group(1)
    assert client.get(doc_url).data == PNG
    decided = client.post(review_url, data={"action": "approve", "comment": "同意入驻", "csrf_token": csrf(review)})
    assert decided.status_code == 302 and "已通过" in client.get(review_url).get_data(as_text=True)
    merchant = session.scalar(select(Merchant).where(Merchant.name == "银川书香文具"))
    assert [s.name for s in merchant.stores] == ["书香总店"]
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})

    login = client.get("/login")
    client.post("/login", data={"username": "portal-shop", "password": "shop-password-1", "csrf_token": csrf(login)})
    dashboard = client.get("/merchant/").get_data(as_text=True)
    assert "银川书香文具" in dashboard and "书香总店" in dashboard and "¥0.00" in dashboard
    poster_url = re.search(r'href="(/merchant/stores/[^"]+/poster)"', dashboard).group(1)
    poster = client.get(poster_url).get_data(as_text=True)
    assert "<svg" in poster and "手机扫码" in poster


def test_an_unknown_category_on_the_form_is_a_clear_error(client, session):
    f.user(session, Role.APPLICANT, username="bogus-category-shop")
    login = client.get("/login")
    client.post("/login", data={"username": "bogus-category-shop", "password": f.PASSWORD, "csrf_token": csrf(login)})
    form = client.get("/portal/applications/new")
    resp = client.post("/portal/applications/new", data={"name": "店", "category": "bogus", "csrf_token": csrf(form)})
    assert resp.status_code == 422 and "请从列表中选择行业类别" in resp.get_data(as_text=True)


def test_portal_pages_keep_applicants_apart(client, session, cipher):
    f.user(session, Role.APPLICANT, username="mine-shop")
    theirs = f.user(session, Role.APPLICANT, username="theirs-shop")
    from core.auth import Actor
    from merchants import service

    other_app = service.create_application(session, cipher, Actor.of(theirs), service.ApplicationInput(name="别人家"))
    login = client.get("/login")
    client.post("/login", data={"username": "mine-shop", "password": f.PASSWORD, "csrf_token": csrf(login)})
    assert client.get(f"/portal/applications/{other_app.public_id}").status_code == 404
    assert client.get("/review/").status_code == 403
    assert client.get("/merchant/").status_code == 403
    assert client.get("/portal/").status_code == 200 and "别人家" not in client.get("/portal/").get_data(as_text=True)


def test_directory_page_filters(client, session, cipher):
    f.merchant(session, cipher, "固原药房", category="pharmacy", region="640402")
    f.merchant(session, cipher, "银川饭庄", category="dining", region="640104")
    page = client.get("/merchants/?category=pharmacy").get_data(as_text=True)
    assert "固原药房" in page and "银川饭庄" not in page
    page = client.get("/merchants/?region=640100").get_data(as_text=True)
    assert "银川饭庄" in page and "固原药房" not in page


def test_union_staff_suspend_and_reinstate_from_the_console(client, session, cipher):
    shop = f.merchant(session, cipher, "控制台测试店")
    f.user(session, Role.MERCHANT_REVIEWER, username="console-reviewer")
    login = client.get("/login")
    client.post("/login", data={"username": "console-reviewer", "password": f.PASSWORD, "csrf_token": csrf(login)})
    page = client.get("/review/merchants/")
    assert "控制台测试店" in page.get_data(as_text=True)
    token = csrf(page)
    client.post("/review/merchants/", data={"merchant_id": shop.public_id, "action": "suspend", "reason": "投诉",
                                            "csrf_token": token})
    session.expire_all()
    assert session.get(Merchant, shop.id).status.value == "suspended"
    assert client.get(f"/pay/{shop.stores[0].public_id}").status_code == 409
    empty_reason = client.post("/review/merchants/", data={"merchant_id": shop.public_id, "action": "reinstate",
                                                           "reason": "", "csrf_token": token}, follow_redirects=True)
    assert "请说明原因。" in empty_reason.get_data(as_text=True)
    client.post("/review/merchants/", data={"merchant_id": shop.public_id, "action": "reinstate", "reason": "已整改",
                                            "csrf_token": token})
    session.expire_all()
    assert session.get(Merchant, shop.id).status.value == "active"
