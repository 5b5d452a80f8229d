"""The offer pages: the catalog members browse, the union's console and the merchant's own offers; who sees
each in Chinese and in English, who is refused, and the forms that drive the catalog."""

import datetime as dt

import pytest

from benefits import service
from benefits.models import OfferStatus
from core.db import utcnow
from core.models import Role
from members import service as members
from tests import factories as f
from tests.benefits.conftest import offer_row, post, sign_in

ANON = "anonymous"


@pytest.fixture
def pages(session, world):
    """Offers for the pages: a published one, an admin's draft, a merchant's draft and proposal."""
    platform, admin, owner = world["a"]["platform"], world["a"]["admin"], world["a"]["owner"]
    published = f.offer(session, platform, publish=True, title="全省超市95折", value=500)
    draft = f.offer(session, admin, title="银川体检草稿", category="health")
    own = service.create_offer(session, owner, f.offer_terms(title="好味午餐88折", value=1200, category=None))
    proposal = service.create_offer(session, owner, f.offer_terms(title="好味晚餐9折", category=None))
    service.propose(session, owner, proposal.public_id)
    return {"published": published, "draft": draft, "own": own, "proposal": proposal}


CONSOLE = {Role.UNION_ADMIN, Role.AUDITOR}
ADMIN = {Role.UNION_ADMIN}
STAFF = {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER}
OWNER = {Role.MERCHANT_OWNER}
# (name, url, roles that see it, a heading in Chinese, the same in English)
PAGES = [
    ("console", lambda p: "/console/offers/", CONSOLE, "优惠管理", "Offers"),
    ("console new", lambda p: "/console/offers/new", ADMIN, "新建优惠", "New offer"),
    ("console offer", lambda p: f"/console/offers/{p['draft'].public_id}", CONSOLE, "银川体检草稿", "Versions"),
    ("console edit", lambda p: f"/console/offers/{p['draft'].public_id}/edit", ADMIN, "修改优惠", "Edit the offer"),
    ("merchant offers", lambda p: "/merchant/offers/", STAFF, "我的优惠", "My offers"),
    ("merchant new", lambda p: "/merchant/offers/new", OWNER, "新建优惠", "New offer"),
    ("merchant offer", lambda p: f"/merchant/offers/{p['own'].public_id}", STAFF, "好味午餐88折", "Version 1"),
    ("merchant edit", lambda p: f"/merchant/offers/{p['own'].public_id}/edit", OWNER, "修改优惠", "Edit the offer"),
]


def user_for(session, cipher, world, role):
    users = {Role.UNION_ADMIN: "admin", Role.MERCHANT_OWNER: "owner", Role.MERCHANT_MANAGER: "manager",
             Role.MERCHANT_CASHIER: "cashier", Role.MEMBER: "member", Role.AUDITOR: "auditor",
             Role.FINANCE_MAKER: "maker", Role.MERCHANT_REVIEWER: "reviewer"}
    if role in users:
        return world["users"][users[role]]
    return f.user(session, role)


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("page", PAGES, ids=[p[0] for p in PAGES])
def test_page_matrix_in_chinese_and_english(client, session, cipher, world, pages, page, role):
    _name, url, allowed, chinese, english = page
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    resp = client.get(url(pages))
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role in allowed:
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert chinese in resp.get_data(as_text=True)
        english_page = client.get(url(pages) + "?lang=en")
        assert english_page.status_code == 200 and english in english_page.get_data(as_text=True)
        client.get("/?lang=zh")
    else:
        assert resp.status_code == 403 and resp.mimetype == "text/html"


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
def test_the_catalog_is_open_to_everyone_and_shows_published_offers_only(client, session, cipher, world, pages,
                                                                         role):
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    text = client.get("/offers/").get_data(as_text=True)
    assert "会员优惠" in text and "全省超市95折" in text and "立减5%" in text
    assert "银川体检草稿" not in text and "好味午餐88折" not in text and "好味晚餐9折" not in text
    english = client.get("/offers/?lang=en").get_data(as_text=True)
    assert "Member offers" in english and "5% off" in english


def test_the_catalog_filters_by_family_and_tells_a_member_what_is_not_for_them(client, session, world, pages):
    tree, platform = world["tree"], world["a"]["platform"]
    f.offer(session, platform, publish=True, title="法律咨询两次", kind="entitlement", value=0, category="legal",
            per_member_limit={"count": 2, "period": "year"})
    f.offer(session, platform, publish=True, title="固原职工专享", category="health",
            eligibility={"union_ids": [tree["gy"].public_id]})
    f.offer(session, platform, publish=True, title="困难职工专享", category="health",
            eligibility={"hardship_only": True})
    legal = client.get("/offers/?category=legal").get_data(as_text=True)
    assert "法律咨询两次" in legal and "全省超市95折" not in legal and "每年2次" in legal and "免费" in legal
    sign_in(client, world["users"]["member"].username)
    health = client.get("/offers/?category=health").get_data(as_text=True)
    assert health.count("not-for-you") == 2 and "固原市总工会" in health
    members.set_hardship(session, f.PLATFORM, world["member"].public_id, level=1, reason="大病",
                         valid_until=dt.date.today() + dt.timedelta(days=30))
    assert client.get("/offers/?category=health").get_data(as_text=True).count("not-for-you") == 1
    found = client.get("/offers/?q=超市").get_data(as_text=True)
    assert "全省超市95折" in found and "法律咨询两次" not in found


def test_the_catalog_is_linked_from_the_home_page_and_the_top_bar(client, world):
    assert 'href="/offers/"' in client.get("/").get_data(as_text=True)
    sign_in(client, world["users"]["member"].username)
    home = client.get("/").get_data(as_text=True)
    assert 'href="/offers/"' in home[:home.index("<main>")] and 'href="/offers/"' in home[home.index("<main>"):]


@pytest.mark.parametrize("who, link", [("admin", "/console/offers/"), ("auditor", "/console/offers/"),
                                       ("owner", "/merchant/offers/"), ("manager", "/merchant/offers/")])
def test_the_console_pages_are_linked_from_the_navigation(client, world, who, link):
    sign_in(client, world["users"][who].username)
    home = client.get("/").get_data(as_text=True)
    assert f'href="{link}"' in home[:home.index("<main>")] and f'href="{link}"' in home[home.index("<main>"):]


# --- the union's console -------------------------------------------------------------------------

FORM = {"title": "体检套餐8折", "description": "每年一次", "category": "health", "kind": "percent_off",
        "value": "20", "max_discount": "100", "funding": "merchant", "starts_on": "", "ends_on": "",
        "limit_count": "1", "limit_period": "year", "budget": "5,000", "priority": "2"}


def test_an_admin_writes_publishes_and_revises_an_offer_through_the_console(client, session, world):
    sign_in(client, world["users"]["admin"].username)
    created = post(client, "/console/offers/new", **FORM, weekdays=["6", "7"], hours_from="08:00",
                   hours_to="12:00", stackable="on")
    assert created.status_code == 302, created.get_data(as_text=True)
    offer_id = created.headers["Location"].rsplit("/", 1)[-1]
    offer = offer_row(session, offer_id)
    assert (offer.value, offer.max_discount, offer.limit_count, offer.budget_amount) == (2000, 10_000, 1, 500_000)
    assert offer.weekdays == [6, 7] and offer.stackable and offer.union_ids == [world["tree"]["yc"].public_id]
    detail = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "立减20%" in detail and "最多优惠¥100.00" in detail and 'id="publish"' in detail
    assert post(client, f"/console/offers/{offer_id}/publish").status_code == 302
    assert offer_row(session, offer_id).status == OfferStatus.PUBLISHED
    edit = client.get(f"/console/offers/{offer_id}/edit").get_data(as_text=True)
    assert 'value="20"' in edit and 'value="100.00"' in edit and "新版本" in edit
    revised = post(client, f"/console/offers/{offer_id}/edit", **(FORM | {"value": "25"}))
    assert revised.status_code == 302
    new_id = revised.headers["Location"].rsplit("/", 1)[-1]
    assert new_id != offer_id and offer_row(session, new_id).value == 2500
    assert offer_row(session, offer_id).value == 2000
    old_page = client.get(f"/console/offers/{offer_id}").get_data(as_text=True)
    assert 'id="pending"' in old_page and 'id="edit"' not in old_page
    assert post(client, f"/console/offers/{new_id}/publish").status_code == 302
    assert offer_row(session, offer_id).status == OfferStatus.SUPERSEDED
    withdrawn = post(client, f"/console/offers/{new_id}/withdraw", comment="活动结束")
    assert withdrawn.status_code == 302 and offer_row(session, new_id).status == OfferStatus.WITHDRAWN
    listing = client.get("/console/offers/?status=superseded").get_data(as_text=True)
    assert offer_id in listing and new_id not in listing


def test_the_console_form_says_what_is_wrong_next_to_each_field(client, session, world):
    sign_in(client, world["users"]["admin"].username)
    before = len(service.list_offers(session, world["a"]["platform"], limit=200, cursor=None).items)
    resp = post(client, "/console/offers/new", **(FORM | {"title": "", "value": "abc", "budget": "-1"}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'data-field="value"' in text and 'data-field="budget"' in text and "请输入百分比" in text
    resp = post(client, "/console/offers/new", **(FORM | {"title": "", "funding": "split", "union_share": "30",
                                                       "hours_from": "09:00"}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422
    for field in ("title", "program_id", "hours_to"):
        assert f'data-field="{field}"' in text, field
    assert "请给优惠起个标题" in text and 'value="30"' in text  # what was typed stays
    resp = post(client, "/console/offers/new", **(FORM | {"value": "120", "min_spend": ""}))
    assert resp.status_code == 422 and "折扣比例在 0.01 到 100 之间" in resp.get_data(as_text=True)
    english = client.post("/console/offers/new?lang=en", data={**FORM, "title": "", "csrf_token": _token(client)})
    assert "Give the offer a title" in english.get_data(as_text=True)
    assert len(service.list_offers(session, world["a"]["platform"], limit=200, cursor=None).items) == before


def _token(client):
    from tests.benefits.conftest import csrf

    return csrf(client.get("/"))


def test_the_console_reviews_a_merchant_proposal(client, session, world, pages):
    proposal = pages["proposal"].public_id
    sign_in(client, world["users"]["admin"].username)
    queue = client.get("/console/offers/?status=proposed").get_data(as_text=True)
    assert "好味晚餐9折" in queue and "银川体检草稿" not in queue
    detail = client.get(f"/console/offers/{proposal}").get_data(as_text=True)
    assert 'id="narrow"' in detail and 'id="reject-form"' in detail
    refused = post(client, f"/console/offers/{proposal}/publish")
    assert refused.status_code == 302 and offer_row(session, proposal).status == OfferStatus.PROPOSED
    assert "先修改" in client.get(refused.headers["Location"]).get_data(as_text=True)
    no_reason = post(client, f"/console/offers/{proposal}/reject", comment="")
    assert no_reason.status_code == 302 and offer_row(session, proposal).status == OfferStatus.PROPOSED
    rejected = post(client, f"/console/offers/{proposal}/reject", comment="请注明适用时段")
    assert rejected.status_code == 302 and offer_row(session, proposal).status == OfferStatus.REJECTED
    sign_in(client, world["users"]["owner"].username)
    mine = client.get(f"/merchant/offers/{proposal}").get_data(as_text=True)
    assert "请注明适用时段" in mine and 'id="propose"' in mine


def test_a_scoped_admin_gets_404_for_another_subtrees_offer_pages(client, session, world, pages):
    sign_in(client, world["users"]["gy_admin"].username)
    draft = pages["draft"].public_id
    for url in (f"/console/offers/{draft}", f"/console/offers/{draft}/edit"):
        resp = client.get(url)
        assert resp.status_code == 404 and "银川体检草稿" not in resp.get_data(as_text=True)
    assert post(client, f"/console/offers/{draft}/publish").status_code == 404
    assert post(client, f"/console/offers/{draft}/edit", **FORM).status_code == 404
    published = pages["published"].public_id
    assert client.get(f"/console/offers/{published}").status_code == 200  # published: visible, not theirs
    assert client.get(f"/console/offers/{published}/edit").status_code == 404
    assert post(client, f"/console/offers/{published}/withdraw").status_code == 404
    assert offer_row(session, draft).status == OfferStatus.DRAFT


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("action", ["publish", "withdraw", "reject"])
def test_console_actions_matrix(client, session, cipher, world, pages, action, role):
    target = {"publish": pages["draft"], "withdraw": f.offer(session, world["a"]["admin"], publish=True),
              "reject": pages["proposal"]}[action]
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    resp = post(client, f"/console/offers/{target.public_id}/{action}", comment="理由")
    expected = {"publish": OfferStatus.PUBLISHED, "withdraw": OfferStatus.WITHDRAWN, "reject": OfferStatus.REJECTED}
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role == Role.UNION_ADMIN:
        assert resp.status_code == 302 and offer_row(session, target.public_id).status == expected[action]
        return
    else:
        assert resp.status_code == 403 and resp.mimetype == "text/html"
    assert offer_row(session, target.public_id).status != expected[action]


# --- the merchant's own offers -------------------------------------------------------------------

MERCHANT_FORM = {"title": "午市套餐立减", "category": "", "kind": "amount_off", "value": "10", "min_spend": "50",
                 "limit_count": "", "limit_amount": "", "limit_period": ""}


def test_a_merchant_owner_writes_and_proposes_an_offer(client, session, world):
    sign_in(client, world["users"]["owner"].username)
    form = client.get("/merchant/offers/new").get_data(as_text=True)
    assert 'name="funding"' not in form and 'name="union_ids"' not in form and 'name="program_id"' not in form
    created = post(client, "/merchant/offers/new", **MERCHANT_FORM)
    assert created.status_code == 302, created.get_data(as_text=True)
    offer_id = created.headers["Location"].rsplit("/", 1)[-1]
    offer = offer_row(session, offer_id)
    assert (offer.merchant_id, offer.funding.value, offer.value, offer.min_spend) == (world["shop"].id, "merchant",
                                                                                     1000, 5000)
    assert offer.category.value == "everyday" and offer.status == OfferStatus.DRAFT
    assert post(client, f"/merchant/offers/{offer_id}/propose").status_code == 302
    assert offer_row(session, offer_id).status == OfferStatus.PROPOSED
    page = client.get(f"/merchant/offers/{offer_id}").get_data(as_text=True)
    assert 'id="waiting"' in page and 'id="propose"' not in page
    listing = client.get("/merchant/offers/").get_data(as_text=True)
    assert "午市套餐立减" in listing and "已提交" in listing
    edited = post(client, f"/merchant/offers/{offer_id}/edit", **(MERCHANT_FORM | {"value": "12"}))
    assert edited.status_code == 302 and offer_row(session, offer_id).value == 1200


def test_a_merchant_form_refuses_union_funding_fields_and_bad_values(client, session, world):
    sign_in(client, world["users"]["owner"].username)
    resp = post(client, "/merchant/offers/new", **(MERCHANT_FORM | {"value": "", "kind": ""}))
    text = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'data-field="kind"' in text and 'data-field="value"' in text
    smuggled = post(client, "/merchant/offers/new", **(MERCHANT_FORM | {"funding": "union", "union_ids": "x"}))
    assert smuggled.status_code == 302
    offer = offer_row(session, smuggled.headers["Location"].rsplit("/", 1)[-1])
    assert offer.funding.value == "merchant" and offer.union_ids is None


def test_a_manager_reads_the_merchants_offers_but_does_not_change_them(client, session, world, pages):
    sign_in(client, world["users"]["manager"].username)
    page = client.get(f"/merchant/offers/{pages['own'].public_id}").get_data(as_text=True)
    assert "好味午餐88折" in page and 'id="propose"' not in page and 'id="edit"' not in page
    assert post(client, f"/merchant/offers/{pages['own'].public_id}/propose").status_code == 403
    assert offer_row(session, pages["own"].public_id).status == OfferStatus.DRAFT


def test_a_merchant_gets_404_for_another_merchants_offers(client, session, world, pages):
    theirs = service.create_offer(session, world["a"]["pharmacy_owner"], f.offer_terms(category=None))
    sign_in(client, world["users"]["owner"].username)
    for url in (f"/merchant/offers/{theirs.public_id}", f"/merchant/offers/{theirs.public_id}/edit",
                f"/merchant/offers/{pages['published'].public_id}"):
        assert client.get(url).status_code == 404, url
    assert post(client, f"/merchant/offers/{theirs.public_id}/propose").status_code == 404
    assert offer_row(session, theirs.public_id).status == OfferStatus.DRAFT


def test_an_offer_of_the_future_says_when_it_starts(client, session, world):
    start = utcnow() + dt.timedelta(days=10)
    f.offer(session, world["a"]["platform"], publish=True, title="下月开始", starts_at=start)
    day = start.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d")
    assert "下月开始" in client.get("/offers/").get_data(as_text=True)
    assert f"Starts on {day}" in client.get("/offers/?lang=en").get_data(as_text=True)
