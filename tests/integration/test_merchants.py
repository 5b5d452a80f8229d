import datetime as dt
import io

import pytest
from sqlalchemy import select

from core.auth import Actor
from core.models import AuditEvent, Role, User
from merchants import service
from merchants.models import ApplicationStatus, Merchant, MerchantApplication
from payments import ledger
from tests import factories as f

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"x" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 200
FULL = {"legal_representative": "马经理", "contact_phone": "13900003333", "category": "supermarket",
        "region": "640104", "address": "银川市兴庆区新华街8号",
        "stores": [{"name": "新华店", "address": "新华街8号", "opening_hours": "8:00-22:00"},
                   {"name": "鼓楼店", "address": "鼓楼北街2号", "category": "pharmacy"}],
        "proposed_offers": [{"title": "会员95折", "description": "全场95折"}],
        "settlement": {"method": "bank", "bank_name": "宁夏银行", "account_name": "银川惠民超市",
                       "account_number": "6222 0202 0011 2233"}}


def sign_up(client, username):
    resp = client.post("/api/v1/applicants", json={"username": username, "password": "shop-password-1",
                                                   "phone": "13900004444"})
    assert resp.status_code == 201, resp.get_json()
    token = client.post("/api/v1/auth/tokens", json={"username": username, "password": "shop-password-1"})
    return {"Authorization": f"Bearer {token.get_json()['token']}"}


def upload(client, headers, app_id, data=PNG, name="licence.png"):
    return client.post(f"/api/v1/merchant-applications/{app_id}/documents", headers=headers,
                       data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def ready_application(client, headers, uscc=None, **over):
    body = {"name": "银川惠民超市", "uscc": uscc or f.uscc()} | FULL | over
    app = client.post("/api/v1/merchant-applications", headers=headers, json=body)
    assert app.status_code == 201, app.get_json()
    app_id = app.get_json()["id"]
    assert upload(client, headers, app_id).status_code == 201
    return app_id


@pytest.fixture
def reviewer(session):
    return f.bearer(session, f.user(session, Role.MERCHANT_REVIEWER))


def test_the_whole_way_from_sign_up_to_a_merchant_with_stores_payable_and_agreement(client, session, reviewer):
    applicant = sign_up(client, "huimin-shop")
    draft = client.post("/api/v1/merchant-applications", headers=applicant, json={"name": "银川惠民超市"})
    assert draft.status_code == 201 and draft.get_json()["status"] == "draft"
    app_id = draft.get_json()["id"]
    early = client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    assert early.status_code == 422 and early.get_json()["error"] == "incomplete_application"
    assert {"uscc", "stores", "documents", "settlement"} <= set(early.get_json()["errors"])
    patched = client.patch(f"/api/v1/merchant-applications/{app_id}", headers=applicant,
                           json={"uscc": "91350100M000100Y43"} | FULL)
    body = patched.get_json()
    assert patched.status_code == 200
    assert body["settlement"] == {"method": "bank", "bank_name": "宁夏银行", "account_name": "银川惠民超市",
                                  "account_number": "************2233"}
    assert body["contact_phone"] == "139****3333"
    assert upload(client, applicant, app_id, PDF, "营业执照.pdf").status_code == 201
    submitted = client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    assert submitted.get_json()["status"] == "submitted"
    queue = client.get("/api/v1/merchant-applications?status=submitted", headers=reviewer).get_json()["data"]
    assert app_id in [a["id"] for a in queue]
    approved = client.post(f"/api/v1/merchant-applications/{app_id}/approve", headers=reviewer,
                           json={"comment": "资质齐全"})
    assert approved.status_code == 200, approved.get_json()
    result = approved.get_json()
    assert result["status"] == "approved" and result["merchant_id"].startswith("mch_")
    merchant = session.scalar(select(Merchant).where(Merchant.public_id == result["merchant_id"]))
    assert [s.name for s in merchant.stores] == ["新华店", "鼓楼店"]
    assert merchant.stores[1].effective_category.value == "pharmacy"
    account = ledger.get_account(session, merchant.payable_account)
    assert account.allow_negative and account.normal_side.value == "credit"
    agreement = merchant.agreements[0]
    assert agreement.term_start == dt.date.today() and (agreement.term_end - agreement.term_start).days >= 729
    owner = session.scalar(select(User).where(User.username == "huimin-shop"))
    assert owner.role == Role.MERCHANT_OWNER and owner.merchant_id == merchant.id
    # The applicant's same token now acts as the owner.
    stores = client.get(f"/api/v1/merchants/{merchant.public_id}/stores", headers=applicant)
    assert stores.status_code == 200 and len(stores.get_json()) == 2
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == app_id)
                              .order_by(AuditEvent.id)).all()
    assert actions == ["merchant_application.created", "merchant_application.updated",
                       "merchant_application.document_added", "merchant_application.submitted",
                       "merchant_application.review_started", "merchant_application.approved"]
    listed = client.get("/api/v1/merchants?category=supermarket&region=640100").get_json()["data"]
    assert [m["id"] for m in listed] == [merchant.public_id]


ALL_STATES = list(ApplicationStatus)


def _app_in(session, cipher, app, state: ApplicationStatus) -> MerchantApplication:
    applicant = f.user(session, Role.APPLICANT)
    actor = Actor.of(applicant)
    draft = service.create_application(session, cipher, actor, service.ApplicationInput(
        name="测试商户", uscc=f.uscc(), legal_representative="甲", contact_phone="13900005555",
        category=__import__("merchants.models", fromlist=["MerchantCategory"]).MerchantCategory.DINING,
        region="640104", address="地址", stores=[{"name": "店"}],
        settlement={"method": "bank", "bank_name": "b", "account_name": "a", "account_number": "12345678"}))
    service.add_document(session, actor, draft.public_id, io.BytesIO(PNG), "l.png", app.config["UPLOAD_FOLDER"])
    draft.status = state  # put it straight into the state under test
    session.commit()
    return draft


ACTIONS = {  # action -> (who, states it may start from)
    "submit": ("applicant", {ApplicationStatus.DRAFT, ApplicationStatus.CHANGES_REQUESTED}),
    "review": ("reviewer", {ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED}),
    "approve": ("reviewer", {ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED,
                             ApplicationStatus.UNDER_REVIEW}),
    "reject": ("reviewer", {ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED,
                            ApplicationStatus.UNDER_REVIEW}),
    "request-changes": ("reviewer", {ApplicationStatus.SUBMITTED, ApplicationStatus.RESUBMITTED,
                                     ApplicationStatus.UNDER_REVIEW}),
}
RESULT = {"submit": {ApplicationStatus.DRAFT: "submitted", ApplicationStatus.CHANGES_REQUESTED: "resubmitted"},
          "review": "under_review", "approve": "approved", "reject": "rejected", "request-changes": "changes_requested"}


@pytest.mark.parametrize("state", ALL_STATES, ids=lambda s: s.value)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_review_state_machine(client, session, cipher, app, reviewer, state, action):
    application = _app_in(session, cipher, app, state)
    who, allowed = ACTIONS[action]
    headers = reviewer if who == "reviewer" else f.bearer(session, session.get(User, application.applicant_id))
    resp = client.post(f"/api/v1/merchant-applications/{application.public_id}/{action}", headers=headers,
                       json={"comment": "说明"} if who == "reviewer" else {})
    if state in allowed:
        expected = RESULT[action][state] if isinstance(RESULT[action], dict) else RESULT[action]
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["status"] == expected
    else:
        assert resp.status_code == 409 and resp.get_json()["error"] == "invalid_state", resp.get_json()
        session.expire_all()
        assert session.get(MerchantApplication, application.id).status == state


@pytest.mark.parametrize("action", ["reject", "request-changes"])
def test_reject_and_request_changes_need_a_reason(client, session, cipher, app, reviewer, action):
    application = _app_in(session, cipher, app, ApplicationStatus.SUBMITTED)
    resp = client.post(f"/api/v1/merchant-applications/{application.public_id}/{action}", headers=reviewer, json={})
    assert resp.status_code == 422 and "comment" in resp.get_json()["errors"]


def test_changes_requested_then_edited_and_resubmitted(client, session, reviewer):
    applicant = sign_up(client, "fix-me-shop")
    app_id = ready_application(client, applicant)
    client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    assert client.patch(f"/api/v1/merchant-applications/{app_id}", headers=applicant,
                        json={"address": "x"}).status_code == 409  # no edits while it is with the reviewers
    back = client.post(f"/api/v1/merchant-applications/{app_id}/request-changes", headers=reviewer,
                       json={"comment": "请补充门店营业时间"})
    assert back.get_json()["comments"][-1]["body"] == "请补充门店营业时间"
    edited = client.patch(f"/api/v1/merchant-applications/{app_id}", headers=applicant,
                          json={"stores": [{"name": "新华店", "opening_hours": "8:00-22:00"}]})
    assert edited.status_code == 200
    again = client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    assert again.get_json()["status"] == "resubmitted"


@pytest.mark.parametrize("data, name", [(ELF, "licence.pdf"), (b"MZ\x90\x00" + b"\x00" * 60, "licence.png"),
                                        (b"<html>", "licence.jpg"), (b"", "licence.pdf")])
def test_uploads_are_checked_by_content_not_name(client, session, data, name):
    applicant = sign_up(client, f"upload-{f.next_id()}")
    app_id = client.post("/api/v1/merchant-applications", headers=applicant, json={"name": "店"}).get_json()["id"]
    resp = upload(client, applicant, app_id, data, name)
    assert resp.status_code == 422 and resp.get_json()["error"] == "unsupported_file_type"


def test_oversized_upload_is_refused(client, session, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_LICENCE_BYTES", 1024)
    applicant = sign_up(client, "big-file-shop")
    app_id = client.post("/api/v1/merchant-applications", headers=applicant, json={"name": "店"}).get_json()["id"]
    resp = upload(client, applicant, app_id, PNG + b"\x00" * 2048)
    assert resp.status_code == 422 and resp.get_json()["error"] == "file_too_large"


def test_accepted_formats_and_who_may_download(client, session, reviewer, app):
    applicant = sign_up(client, "docs-shop")
    app_id = client.post("/api/v1/merchant-applications", headers=applicant, json={"name": "店"}).get_json()["id"]
    kinds = [upload(client, applicant, app_id, data, name).get_json()["content_type"]
             for data, name in ((PNG, "a.png"), (PDF, "b.pdf"), (JPEG, "c.jpeg"))]
    assert kinds == ["image/png", "application/pdf", "image/jpeg"]
    doc = client.get(f"/api/v1/merchant-applications/{app_id}", headers=applicant).get_json()["documents"][1]
    url = f"/api/v1/merchant-applications/{app_id}/documents/{doc['id']}"
    for headers in (applicant, reviewer):
        got = client.get(url, headers=headers)
        assert got.status_code == 200 and got.data == PDF and got.mimetype == "application/pdf"
        assert got.headers["Content-Disposition"].startswith("attachment")
    stranger = sign_up(client, "nosy-shop")
    assert client.get(url, headers=stranger).status_code == 404
    # Stored outside the static folder under a name that is not the upload's.
    stored = list((__import__("pathlib").Path(app.config["UPLOAD_FOLDER"]) / "licences").iterdir())
    assert stored and all("b.pdf" not in p.name for p in stored)
    assert not str(app.config["UPLOAD_FOLDER"]).startswith(app.static_folder)


def test_one_credit_code_one_live_merchant(client, session, reviewer):
    code = f.uscc()
    first, second = sign_up(client, "first-shop"), sign_up(client, "second-shop")
    a = ready_application(client, first, code)
    b = ready_application(client, second, code)
    # Codes are public: a second filing is not refused at submit (nobody can squat a code), the reviewer
    # sees the two side by side, and approval admits one merchant.
    assert client.post(f"/api/v1/merchant-applications/{a}/submit", headers=first, json={}).status_code == 200
    assert client.post(f"/api/v1/merchant-applications/{b}/submit", headers=second, json={}).status_code == 200
    assert client.post(f"/api/v1/merchant-applications/{a}/approve", headers=reviewer, json={}).status_code == 200
    clash = client.post(f"/api/v1/merchant-applications/{b}/approve", headers=reviewer, json={})
    assert clash.status_code == 409 and clash.get_json()["error"] == "duplicate_uscc"
    # Once the first merchant is terminated, the code is free again.
    merchant_id = client.get(f"/api/v1/merchant-applications/{a}", headers=reviewer).get_json()["merchant_id"]
    client.post(f"/api/v1/merchants/{merchant_id}/terminate", headers=reviewer, json={"reason": "合同终止"})
    assert client.post(f"/api/v1/merchant-applications/{b}/approve", headers=reviewer, json={}).status_code == 200


def test_a_live_merchants_code_is_refused_at_submit(client, session, cipher):
    shop = f.merchant(session, cipher)
    applicant = sign_up(client, "copycat-shop")
    app_id = ready_application(client, applicant, shop.uscc)
    resp = client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    assert resp.status_code == 409 and resp.get_json()["error"] == "duplicate_uscc"


def test_one_account_applies_for_one_merchant(client, session, cipher, app, reviewer):
    applicant = sign_up(client, "greedy-shop")
    first, second = ready_application(client, applicant), ready_application(client, applicant)
    assert client.post(f"/api/v1/merchant-applications/{first}/submit", headers=applicant, json={}).status_code == 200
    again = client.post(f"/api/v1/merchant-applications/{second}/submit", headers=applicant, json={})
    assert again.status_code == 409 and again.get_json()["error"] == "application_in_review"
    # Even if both reached the reviewers, approving the second cannot steal the owner from the first.
    session.get(MerchantApplication, session.scalar(select(MerchantApplication.id).where(
        MerchantApplication.public_id == second))).status = ApplicationStatus.SUBMITTED
    session.commit()
    assert client.post(f"/api/v1/merchant-applications/{first}/approve", headers=reviewer, json={}).status_code == 200
    stolen = client.post(f"/api/v1/merchant-applications/{second}/approve", headers=reviewer, json={})
    assert stolen.status_code == 409 and stolen.get_json()["error"] == "applicant_not_available"
    merchant_id = client.get(f"/api/v1/merchant-applications/{first}", headers=reviewer).get_json()["merchant_id"]
    assert client.get(f"/api/v1/merchants/{merchant_id}/account", headers=applicant).status_code == 200


def test_concurrent_approvals_admit_one_merchant_without_errors(postgres, engine, app, cipher):
    """Real commits on separate connections: six reviewers press approve at once."""
    import threading

    from sqlalchemy.orm import Session

    from core.errors import DomainError
    from merchants.connect import DisabledConnect

    with Session(engine) as s:
        applicant = f.user(s, Role.APPLICANT, username=f"race-{f.next_id()}")
        reviewer_user = f.user(s, Role.MERCHANT_REVIEWER, username=f"race-reviewer-{f.next_id()}")
        actor = Actor.of(applicant)
        draft = service.create_application(s, cipher, actor, service.ApplicationInput(
            name="竞速商户", uscc=f.uscc(), legal_representative="甲", contact_phone="13900005555",
            category=__import__("merchants.models", fromlist=["MerchantCategory"]).MerchantCategory.DINING,
            region="640104", address="地址", stores=[{"name": "店"}],
            settlement={"method": "bank", "bank_name": "b", "account_name": "a", "account_number": "12345678"}))
        service.add_document(s, actor, draft.public_id, io.BytesIO(PNG), "l.png", app.config["UPLOAD_FOLDER"])
        service.submit_application(s, actor, draft.public_id)
        app_id, reviewer_actor = draft.public_id, Actor.of(reviewer_user)
    results, barrier = [], threading.Barrier(6)

    def approve():
        with Session(engine) as s:
            barrier.wait()
            try:
                service.approve_application(s, reviewer_actor, app_id, comment=None, connect=DisabledConnect())
                results.append("approved")
            except DomainError as exc:
                results.append(exc.code)

    threads = [threading.Thread(target=approve) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["approved"] + ["invalid_state"] * 5, results
    with Session(engine) as s:
        assert len(s.scalars(select(Merchant).where(Merchant.name == "竞速商户")).all()) == 1


def test_store_coordinates_are_kept_exactly(client, session):
    applicant = sign_up(client, "geo-shop")
    resp = client.post("/api/v1/merchant-applications", headers=applicant, json={
        "name": "坐标店", "stores": [{"name": "店", "latitude": "38.487193", "longitude": "106.230909"}]})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["stores"][0]["latitude"] == "38.487193"


def test_bank_account_numbers_must_be_ascii_digits(client):
    applicant = sign_up(client, "fullwidth-shop")
    resp = client.post("/api/v1/merchant-applications", headers=applicant, json={
        "name": "全角店", "settlement": {"method": "bank", "bank_name": "b", "account_name": "a",
                                        "account_number": "１２３４５６７８９０"}})
    assert resp.status_code == 422 and "settlement" in resp.get_json()["errors"]


def test_reviewers_do_not_see_drafts_and_decided_conversations_close(client, session, cipher, app, reviewer):
    draft = _app_in(session, cipher, app, ApplicationStatus.DRAFT)
    listed = client.get("/api/v1/merchant-applications?limit=200", headers=reviewer).get_json()["data"]
    assert draft.public_id not in [a["id"] for a in listed]
    asked = client.get("/api/v1/merchant-applications?status=draft&limit=200", headers=reviewer).get_json()["data"]
    assert draft.public_id in [a["id"] for a in asked]
    decided = _app_in(session, cipher, app, ApplicationStatus.REJECTED)
    resp = client.post(f"/api/v1/merchant-applications/{decided.public_id}/comments", headers=reviewer,
                       json={"comment": "还有一事"})
    assert resp.status_code == 409


def test_a_terminated_merchant_takes_no_new_staff_or_store_changes(client, session, cipher, reviewer):
    shop = f.merchant(session, cipher)
    owner = f.bearer(session, f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id))
    client.post(f"/api/v1/merchants/{shop.public_id}/terminate", headers=reviewer, json={"reason": "终止"})
    staff = client.post(f"/api/v1/merchants/{shop.public_id}/staff", headers=owner,
                        json={"username": "late-1", "password": "late-password", "role": "cashier"})
    reopen = client.patch(f"/api/v1/stores/{shop.stores[0].public_id}", headers=owner, json={"status": "open"})
    assert staff.status_code == reopen.status_code == 409


def test_invalid_uscc_is_a_clear_422(client):
    applicant = sign_up(client, "typo-shop")
    resp = client.post("/api/v1/merchant-applications", headers=applicant,
                       json={"name": "店", "uscc": "91350100M000100Y44"})
    assert resp.status_code == 422 and resp.get_json()["error"] == "invalid_uscc"


def test_suspension_stops_the_qr_code_and_the_pay_page_and_reinstatement_restores_them(client, session, cipher,
                                                                                      reviewer):
    shop = f.merchant(session, cipher, "暂停测试店")
    owner = f.bearer(session, f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id))
    store_id = shop.stores[0].public_id
    qr = client.get(f"/api/v1/stores/{store_id}/qr.svg", headers=owner)
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml" and b"<svg" in qr.data
    assert client.get(f"/pay/{store_id}").status_code == 200
    assert client.post(f"/api/v1/merchants/{shop.public_id}/suspend", headers=reviewer,
                       json={"reason": "投诉核查"}).get_json()["status"] == "suspended"
    refused = client.get(f"/api/v1/stores/{store_id}/qr.png", headers=owner)
    assert refused.status_code == 409 and refused.get_json()["error"] == "store_not_accepting"
    page = client.get(f"/pay/{store_id}")
    assert page.status_code == 409 and "暂不受理会员卡" in page.get_data(as_text=True)
    assert shop.public_id not in [m["id"] for m in client.get("/api/v1/merchants").get_json()["data"]]
    assert client.get(f"/api/v1/merchants/{shop.public_id}").status_code == 404
    client.post(f"/api/v1/merchants/{shop.public_id}/reinstate", headers=reviewer, json={"reason": "核查完毕"})
    assert client.get(f"/api/v1/stores/{store_id}/qr.png", headers=owner).status_code == 200


def test_qr_codes_encode_the_pay_page_url(client, session, cipher):
    from PIL import Image

    shop = f.merchant(session, cipher)
    owner = f.bearer(session, f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id))
    store_id = shop.stores[0].public_id
    png = client.get(f"/api/v1/stores/{store_id}/qr.png", headers=owner)
    assert png.mimetype == "image/png"
    image = Image.open(io.BytesIO(png.data))
    assert image.size[0] == image.size[1] and image.size[0] >= 200
    from core import qr

    assert qr.png(f"http://localhost/pay/{store_id}") == png.data  # the same payload, the same image


def test_staff_roles(client, session, cipher):
    shop = f.merchant(session, cipher)
    owner = f.bearer(session, f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id))
    made = client.post(f"/api/v1/merchants/{shop.public_id}/staff", headers=owner,
                       json={"username": "till-1", "password": "till-password-1", "role": "cashier"})
    assert made.status_code == 201 and made.get_json()["role"] == "merchant_cashier"
    cashier = client.post("/api/v1/auth/tokens", json={"username": "till-1", "password": "till-password-1"})
    cashier_headers = {"Authorization": f"Bearer {cashier.get_json()['token']}"}
    for method, url, body in (("post", f"/api/v1/merchants/{shop.public_id}/stores", {"name": "x"}),
                              ("post", f"/api/v1/merchants/{shop.public_id}/staff",
                               {"username": "x-1", "password": "xx-password", "role": "manager"}),
                              ("patch", f"/api/v1/stores/{shop.stores[0].public_id}", {"name": "x"})):
        assert getattr(client, method)(url, headers=cashier_headers, json=body).status_code == 403
    gone = client.delete(f"/api/v1/merchants/{shop.public_id}/staff/{made.get_json()['id']}", headers=owner)
    assert gone.status_code == 204
    assert client.get("/api/v1/me", headers=cashier_headers).status_code == 401


def test_renewal_list_shows_agreements_ending_within_60_days(client, session, cipher, reviewer):
    soon, later = f.merchant(session, cipher, "快到期"), f.merchant(session, cipher, "还早")
    from merchants.models import Agreement

    admin_user = session.scalar(select(User).limit(1))
    for shop, days in ((soon, 30), (later, 200)):
        session.add(Agreement(merchant_id=shop.id, version="2026-01", accepted_by_id=admin_user.id,
                              term_start=dt.date.today(), term_end=dt.date.today() + dt.timedelta(days=days)))
    session.commit()
    due = client.get("/api/v1/agreements/renewals", headers=reviewer).get_json()
    assert [a["merchant_name"] for a in due] == ["快到期"]
    wider = client.get("/api/v1/agreements/renewals?within_days=365", headers=reviewer).get_json()
    assert [a["merchant_name"] for a in wider] == ["快到期", "还早"]


def test_stripe_settled_merchant_gets_a_connect_account_and_its_status_from_webhooks(
        client, session, reviewer, stripe_server, stripe_app_config):
    applicant = sign_up(client, "stripe-shop")
    app_id = ready_application(client, applicant, settlement={"method": "stripe"})
    client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    approved = client.post(f"/api/v1/merchant-applications/{app_id}/approve", headers=reviewer, json={})
    assert approved.status_code == 200, approved.get_json()
    merchant = session.scalar(select(Merchant).where(Merchant.public_id == approved.get_json()["merchant_id"]))
    accounts = stripe_server.objects("accounts")
    assert [a["id"] for a in accounts] == [merchant.stripe_account_id] and merchant.stripe_status == "pending"
    assert accounts[0]["type"] == "express"
    link = client.post(f"/api/v1/merchants/{merchant.public_id}/stripe/onboarding-link", headers=applicant)
    assert link.status_code == 201 and link.get_json()["url"].startswith("http")
    event = stripe_server.complete_onboarding(merchant.stripe_account_id, charges_enabled=True)
    body, headers = stripe_server.delivery(event)
    assert client.post("/api/v1/webhooks/stripe", data=body, headers=headers).status_code == 200
    session.expire_all()
    assert session.get(Merchant, merchant.id).stripe_status == "enabled"
    # An older event delivered late does not turn the clock back.
    stale = stripe_server.emit("account.updated", stripe_server.get("accounts", merchant.stripe_account_id)
                               | {"charges_enabled": False, "payouts_enabled": False, "details_submitted": False},
                               account=merchant.stripe_account_id)
    stale["created"] = event["created"] - 3600
    body, headers = stripe_server.delivery(stale)
    assert client.post("/api/v1/webhooks/stripe", data=body, headers=headers).status_code == 200
    session.expire_all()
    assert session.get(Merchant, merchant.id).stripe_status == "enabled"


def test_stripe_down_at_approval_leaves_nothing_half_done(client, session, reviewer, stripe_server,
                                                         stripe_app_config):
    applicant = sign_up(client, "stripe-down-shop")
    app_id = ready_application(client, applicant, settlement={"method": "stripe"})
    client.post(f"/api/v1/merchant-applications/{app_id}/submit", headers=applicant, json={})
    stripe_server.fail_next(500, times=1)
    resp = client.post(f"/api/v1/merchant-applications/{app_id}/approve", headers=reviewer, json={})
    assert resp.status_code == 503
    assert client.get(f"/api/v1/merchant-applications/{app_id}", headers=reviewer).get_json()["status"] == "submitted"
    assert session.scalar(select(Merchant).where(Merchant.name == "银川惠民超市")) is None
    retry = client.post(f"/api/v1/merchant-applications/{app_id}/approve", headers=reviewer, json={})
    assert retry.status_code == 200 and len(stripe_server.objects("accounts")) == 1


def test_sign_up_validates_and_is_rate_limited(client, app):
    bad = client.post("/api/v1/applicants", json={"username": "ok-name", "password": "a-long-password",
                                                  "phone": "123"})
    assert bad.status_code == 422 and bad.get_json()["error"] == "invalid_phone"
    statuses = [client.post("/api/v1/applicants", json={"username": f"spam-{i}", "password": "a-long-password",
                                                        "phone": "13900000000"},
                            environ_base={"REMOTE_ADDR": "10.7.7.7"}).status_code for i in range(22)]
    assert statuses.count(201) == 20 and statuses[-2:] == [429, 429]
