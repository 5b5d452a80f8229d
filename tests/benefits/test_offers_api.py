"""The offers API: the shape API.md promises, the versioning and proposal flows over HTTP, who sees what,
refusals that are 4xx with field errors (never 500), idempotent creation, and races on PostgreSQL."""

import uuid

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from benefits import service
from benefits.models import Offer, OfferBudget, OfferStatus
from core.auth import Actor
from core.models import Role
from tests import factories as f
from tests.benefits.conftest import offer_row
from tests.integration.test_concurrency import first_call_waits, run_in_threads

OFFER_FIELDS = {"id", "lineage", "version", "status", "merchant_id", "title", "description", "category",
                "merchant_category", "kind", "value", "currency", "min_spend", "max_discount", "funding",
                "union_share_bp", "program_id", "starts_at", "ends_at", "weekdays", "hours_from", "hours_to",
                "per_member_limit", "budget_amount", "eligibility", "stackable", "priority", "decision_comment",
                "created_at", "proposed_at", "published_at", "ended_at"}


def create(client, world, who="platform", **over):
    resp = client.post("/api/v1/offers", headers=world["h"][who], json=f.offer_terms(**over))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def act(client, world, who, offer_id, action, json=None):
    return client.post(f"/api/v1/offers/{offer_id}/{action}", headers=world["h"][who], json=json)


def test_an_offer_in_the_api_shape_with_every_field(client, world):
    yc = world["tree"]["yc"].public_id
    body = {"merchant_id": world["shop"].public_id, "title": "工会会员午餐立减", "description": "工作日午餐",
            "kind": "amount_off", "value": 500, "min_spend": 3000, "max_discount": None, "funding": "split",
            "union_share_bp": 4000, "program_id": world["programs"]["yc"].public_id,
            "starts_at": "2026-12-01T00:00:00+08:00", "ends_at": "2027-12-01T00:00:00+08:00",
            "weekdays": [1, 2, 3, 4, 5], "hours_from": "11:00", "hours_to": "14:00",
            "per_member_limit": {"count": 20, "amount": 10000, "period": "month"}, "budget_amount": 5_000_000,
            "eligibility": {"hardship_only": False, "union_ids": [yc]}, "stackable": True, "priority": 3}
    resp = client.post("/api/v1/offers", headers=world["h"]["platform"], json=body)
    assert resp.status_code == 201, resp.get_json()
    offer = resp.get_json()
    assert set(offer) == OFFER_FIELDS
    assert offer["id"].startswith("off_") and offer["lineage"] == offer["id"] and offer["version"] == 1
    assert offer["status"] == "draft" and offer["merchant_id"] == world["shop"].public_id
    assert offer["category"] == "everyday" and offer["currency"] == "CNY"
    assert offer["per_member_limit"] == {"count": 20, "amount": 10000, "period": "month"}
    assert offer["eligibility"] == {"hardship_only": False, "union_ids": [yc]}
    assert offer["starts_at"].startswith("2026-11-30T16:00:00") and offer["weekdays"] == [1, 2, 3, 4, 5]
    assert (offer["funding"], offer["union_share_bp"], offer["budget_amount"]) == ("split", 4000, 5_000_000)
    assert client.get(f"/api/v1/offers/{offer['id']}", headers=world["h"]["platform"]).get_json() == offer


def test_defaults_are_all_members_every_day_no_limits_no_budget(client, world):
    offer = create(client, world)
    assert offer["per_member_limit"] is None and offer["budget_amount"] is None and offer["ends_at"] is None
    assert offer["eligibility"] == {"hardship_only": False, "union_ids": []} and offer["weekdays"] is None
    assert (offer["stackable"], offer["priority"], offer["min_spend"]) == (False, 0, 0)


def test_published_offers_are_public_and_the_rest_is_not(client, world):
    draft = create(client, world, title="草稿")
    live = create(client, world, title="已发布")
    assert act(client, world, "platform", live["id"], "publish").status_code == 200
    listed = client.get("/api/v1/offers")
    assert listed.status_code == 200 and [o["id"] for o in listed.get_json()["data"]] == [live["id"]]
    assert client.get(f"/api/v1/offers/{live['id']}").get_json()["status"] == "published"
    hidden = client.get(f"/api/v1/offers/{draft['id']}")
    assert hidden.status_code == 404 and hidden.get_json()["error"] == "not_found"
    assert client.get(f"/api/v1/offers/{draft['id']}", headers=world["h"]["member"]).status_code == 404
    as_admin = client.get("/api/v1/offers", headers=world["h"]["platform"]).get_json()["data"]
    assert {o["id"] for o in as_admin} == {draft["id"], live["id"]}
    bad = client.get("/api/v1/offers", headers={"Authorization": "Bearer uct_wrong"})
    assert bad.status_code == 401


def test_listing_filters_and_pages(client, world):
    for i in range(3):
        offer = create(client, world, title=f"体检优惠{i}", category="health")
        act(client, world, "platform", offer["id"], "publish")
    create(client, world, title="文体活动", category="culture")
    first = client.get("/api/v1/offers?category=health&limit=2").get_json()
    second = client.get(f"/api/v1/offers?category=health&limit=2&cursor={first['next_cursor']}").get_json()
    assert [o["title"] for o in first["data"] + second["data"]] == ["体检优惠0", "体检优惠1", "体检优惠2"]
    assert second["next_cursor"] is None
    drafts = client.get("/api/v1/offers?status=draft&q=文体", headers=world["h"]["platform"]).get_json()["data"]
    assert [o["title"] for o in drafts] == ["文体活动"]
    assert client.get("/api/v1/offers?status=nonsense").status_code == 422
    assert client.get("/api/v1/offers?cursor=garbage").status_code == 422


def test_editing_a_published_offer_over_http_versions_it(client, session, world):
    v1 = create(client, world, value=1000, budget_amount=20_000)
    act(client, world, "platform", v1["id"], "publish")
    patched = client.patch(f"/api/v1/offers/{v1['id']}", headers=world["h"]["platform"], json={"value": 1500})
    assert patched.status_code == 200, patched.get_json()
    v2 = patched.get_json()
    assert v2["id"] != v1["id"] and (v2["lineage"], v2["version"], v2["status"]) == (v1["id"], 2, "draft")
    old = client.get(f"/api/v1/offers/{v1['id']}").get_json()
    assert (old["status"], old["value"]) == ("published", 1000)
    again = client.patch(f"/api/v1/offers/{v1['id']}", headers=world["h"]["platform"], json={"value": 1600})
    assert again.status_code == 409 and again.get_json()["error"] == "version_pending"
    published = act(client, world, "platform", v2["id"], "publish")
    assert published.status_code == 200 and published.get_json()["status"] == "published"
    old = client.get(f"/api/v1/offers/{v1['id']}", headers=world["h"]["platform"]).get_json()
    assert old["status"] == "superseded" and old["ended_at"] is not None and old["value"] == 1000
    assert client.get(f"/api/v1/offers/{v1['id']}").status_code == 404  # no longer on offer
    assert [o["id"] for o in client.get("/api/v1/offers").get_json()["data"]] == [v2["id"]]
    assert offer_row(session, v2["id"]).previous_id == offer_row(session, v1["id"]).id


def test_the_merchant_proposal_flow_over_http(client, world):
    h = world["h"]
    resp = client.post("/api/v1/offers", headers=h["owner"],
                       json={"title": "会员专享88折", "kind": "percent_off", "value": 1200, "funding": "merchant"})
    assert resp.status_code == 201, resp.get_json()
    offer = resp.get_json()
    assert offer["merchant_id"] == world["shop"].public_id and offer["status"] == "draft"
    assert client.get(f"/api/v1/offers/{offer['id']}", headers=h["manager"]).status_code == 200
    assert client.get(f"/api/v1/offers/{offer['id']}", headers=h["pharmacy_owner"]).status_code == 404
    assert act(client, world, "manager", offer["id"], "propose").status_code == 403
    assert act(client, world, "pharmacy_owner", offer["id"], "propose").status_code == 404
    proposed = act(client, world, "owner", offer["id"], "propose")
    assert proposed.status_code == 200 and proposed.get_json()["status"] == "proposed"
    assert act(client, world, "owner", offer["id"], "propose").status_code == 409
    no_reason = act(client, world, "admin", offer["id"], "reject", {})
    assert no_reason.status_code == 422 and "comment" in no_reason.get_json()["errors"]
    rejected = act(client, world, "admin", offer["id"], "reject", {"comment": "请说明适用门店"})
    assert rejected.status_code == 200 and rejected.get_json()["decision_comment"] == "请说明适用门店"
    seen = client.get(f"/api/v1/offers/{offer['id']}", headers=h["owner"]).get_json()
    assert seen["status"] == "rejected" and seen["decision_comment"] == "请说明适用门店"
    edited = client.patch(f"/api/v1/offers/{offer['id']}", headers=h["owner"], json={"description": "所有门店"})
    assert edited.status_code == 200 and edited.get_json()["id"] == offer["id"]
    assert act(client, world, "owner", offer["id"], "propose").status_code == 200
    narrow_first = act(client, world, "admin", offer["id"], "publish")
    assert narrow_first.status_code == 422 and narrow_first.get_json()["error"] == "narrow_first"
    narrowed = client.patch(f"/api/v1/offers/{offer['id']}", headers=h["admin"],
                            json={"eligibility": {"union_ids": [world["tree"]["yc"].public_id]}})
    assert narrowed.status_code == 200 and narrowed.get_json()["status"] == "proposed"
    published = act(client, world, "admin", offer["id"], "publish")
    assert published.status_code == 200 and published.get_json()["status"] == "published"


def test_a_merchant_may_not_fund_offers_from_union_money(client, world):
    resp = client.post("/api/v1/offers", headers=world["h"]["owner"], json=f.offer_terms(
        funding="union", program_id=world["programs"]["yc"].public_id))
    assert resp.status_code == 422 and {"funding", "program_id"} <= set(resp.get_json()["errors"])


def test_scope_refusals_are_404_for_objects_and_403_for_roles(client, world):
    draft = create(client, world, who="admin")
    for method, suffix, json in (("get", "", None), ("patch", "", {"value": 1}), ("post", "/publish", None),
                                 ("post", "/withdraw", {}), ("post", "/reject", {"comment": "x"})):
        resp = getattr(client, method)(f"/api/v1/offers/{draft['id']}{suffix}", headers=world["h"]["gy_admin"],
                                       json=json)
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found", (method, suffix)
    for who in ("member", "cashier", "manager", "auditor", "maker", "reviewer"):
        assert client.post("/api/v1/offers", headers=world["h"][who], json=f.offer_terms()).status_code == 403
        assert act(client, world, who, draft["id"], "publish").status_code == 403
    assert client.post("/api/v1/offers", json=f.offer_terms()).status_code == 401
    assert act(client, world, "admin", "off_doesnotexist", "publish").status_code == 404


BAD_BODIES = [
    ("empty", {}, {"title", "kind", "value", "funding"}),
    ("value as text", f.offer_terms(value="10"), {"value"}),
    ("value as float", f.offer_terms(value=9.5), {"value"}),
    ("value too large", f.offer_terms(value=10**20), {"value"}),
    ("percent over 100", f.offer_terms(value=20_000), {"value"}),
    ("title null", f.offer_terms(title=None), {"title"}),
    ("unknown kind", f.offer_terms(kind="two_for_one"), {"kind"}),
    ("unknown field", f.offer_terms(colour="red"), {"colour"}),
    ("no merchant or family", f.offer_terms(category=None), {"category"}),
    ("bad date", f.offer_terms(starts_at="next tuesday"), {"starts_at"}),
    ("date without zone", f.offer_terms(starts_at="2026-12-01T00:00:00"), {"starts_at"}),
    ("weekdays of text", f.offer_terms(weekdays=["mon"]), {"weekdays"}),
    ("weekday 8", f.offer_terms(weekdays=[8]), {"weekdays"}),
    ("duplicated weekday", f.offer_terms(weekdays=[2, 2]), {"weekdays"}),
    ("hours 24:00", f.offer_terms(hours_from="08:00", hours_to="24:00"), {"hours_to"}),
    ("limit without period", f.offer_terms(per_member_limit={"count": 1}), {"per_member_limit"}),
    ("limit with unknown key", f.offer_terms(per_member_limit={"count": 1, "period": "day", "x": 1}),
     {"per_member_limit"}),
    ("limit of nothing", f.offer_terms(per_member_limit={"period": "day"}), {"per_member_limit"}),
    ("negative budget", f.offer_terms(budget_amount=-5), {"budget_amount"}),
    ("eligibility not an object", f.offer_terms(eligibility=["uni_x"]), {"eligibility"}),
    ("unknown union", f.offer_terms(eligibility={"union_ids": ["uni_nowhere"]}), {"eligibility.union_ids"}),
    ("split without program", f.offer_terms(funding="split", union_share_bp=5000), {"program_id"}),
    ("entitlement without count", f.offer_terms(kind="entitlement", value=0), {"per_member_limit.count"}),
    ("priority too high", f.offer_terms(priority=99_999), {"priority"}),
]


@pytest.mark.parametrize("body, fields", [(b[1], b[2]) for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_422_with_field_errors(client, session, world, body, fields):
    before = session.scalar(select(func.count(Offer.id)))
    resp = client.post("/api/v1/offers", headers=world["h"]["platform"], json=body)
    assert resp.status_code == 422, resp.get_json()
    answer = resp.get_json()
    assert answer["code"] == 422 and fields <= set(answer["errors"]), answer
    assert session.scalar(select(func.count(Offer.id))) == before


@pytest.mark.parametrize("body", [{"value": None}, {"title": ""}, {"weekdays": [0]},
                                  {"ends_at": "1999-01-01T00:00:00Z"},
                                  {"per_member_limit": {"count": 0, "period": "day"}}, {"merchant_id": 7}])
def test_bad_edits_are_422_and_never_500(client, world, body):
    draft = create(client, world)
    resp = client.patch(f"/api/v1/offers/{draft['id']}", headers=world["h"]["platform"], json=body)
    assert resp.status_code == 422, resp.get_json()
    assert client.get(f"/api/v1/offers/{draft['id']}", headers=world["h"]["platform"]).get_json() == draft


def test_malformed_json_is_400(client, world):
    resp = client.post("/api/v1/offers", headers={**world["h"]["platform"], "Content-Type": "application/json"},
                       data="{not json")
    assert resp.status_code == 400


def test_creating_an_offer_is_idempotent_by_key(client, session, world):
    headers = {**world["h"]["platform"], "Idempotency-Key": f"offer-{uuid.uuid4().hex}"}
    first = client.post("/api/v1/offers", headers=headers, json=f.offer_terms(title="一次"))
    again = client.post("/api/v1/offers", headers=headers, json=f.offer_terms(title="一次"))
    assert first.status_code == again.status_code == 201 and first.get_json()["id"] == again.get_json()["id"]
    other = client.post("/api/v1/offers", headers=headers, json=f.offer_terms(title="另一个"))
    assert other.status_code == 409
    assert session.scalar(select(func.count(Offer.id)).where(Offer.title == "一次")) == 1


def test_the_openapi_document_describes_the_offers(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    paths = doc["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/offers"]) and "patch" in paths["/api/v1/offers/{offer_id}"]
    for action in ("propose", "publish", "reject", "withdraw"):
        assert "post" in paths[f"/api/v1/offers/{{offer_id}}/{action}"]
    assert paths["/api/v1/offers"]["post"]["security"] == [{"bearerAuth": []}]
    assert {} in paths["/api/v1/offers"]["get"]["security"]
    assert OFFER_FIELDS <= set(doc["components"]["schemas"]["Offer"]["properties"])


# --- races on PostgreSQL -----------------------------------------------------------------------------

@pytest.fixture
def committed(postgres, engine, app):
    """A platform admin and a published offer with its budget, committed for real; the offer leaves the
    catalog afterwards, so it never applies in another test."""
    with Session(engine, expire_on_commit=False) as sess:
        admin = f.user(sess, Role.UNION_ADMIN)
        actor = Actor.of(admin)
        offer = f.offer(sess, actor, publish=True, title=f"并发{uuid.uuid4().hex[:8]}", budget_amount=10_000)
        headers = f.bearer(sess, admin)
    yield {"headers": headers, "actor": actor, "offer": offer}
    with Session(engine) as sess:
        sess.execute(delete(Offer).where(Offer.lineage == offer.lineage))
        sess.execute(delete(OfferBudget).where(OfferBudget.lineage == offer.lineage))
        sess.commit()


def versions(engine, lineage):
    with Session(engine) as sess:
        return [(o.version, o.status) for o in sess.scalars(select(Offer).where(Offer.lineage == lineage)
                                                               .order_by(Offer.version))]


def test_two_publications_of_one_version_at_once_one_wins(app, engine, committed, monkeypatch):
    with Session(engine, expire_on_commit=False) as sess:
        draft = service.update_offer(sess, committed["actor"], committed["offer"].public_id, {"value": 1500})
    first_call_waits(monkeypatch, service, "_lock_lineage")  # both read a draft before either locks
    url = f"/api/v1/offers/{draft.public_id}/publish"
    responses = run_in_threads(*[lambda: app.test_client().post(url, headers=committed["headers"])
                                 for _ in range(2)])
    assert sorted(r.status_code for r in responses) == [200, 409], [r.get_data(as_text=True) for r in responses]
    assert versions(engine, committed["offer"].lineage) == [(1, OfferStatus.SUPERSEDED), (2, OfferStatus.PUBLISHED)]


def test_two_edits_of_a_published_offer_at_once_make_one_new_version(app, engine, committed, monkeypatch):
    first_call_waits(monkeypatch, service, "_lock_lineage")
    url = f"/api/v1/offers/{committed['offer'].public_id}"
    responses = run_in_threads(*[lambda v=v: app.test_client().patch(url, headers=committed["headers"],
                                                                     json={"value": v}) for v in (1500, 2000)])
    assert sorted(r.status_code for r in responses) == [200, 409], [r.get_data(as_text=True) for r in responses]
    assert versions(engine, committed["offer"].lineage) == [(1, OfferStatus.PUBLISHED), (2, OfferStatus.DRAFT)]


def test_a_withdrawal_and_a_publication_at_once_never_leave_a_withdrawn_offer_applying(app, engine, committed,
                                                                                       monkeypatch):
    with Session(engine, expire_on_commit=False) as sess:
        draft = service.update_offer(sess, committed["actor"], committed["offer"].public_id, {"value": 1500})
    first_call_waits(monkeypatch, service, "_lock_lineage")
    client_calls = [
        lambda: app.test_client().post(f"/api/v1/offers/{draft.public_id}/publish", headers=committed["headers"]),
        lambda: app.test_client().post(f"/api/v1/offers/{committed['offer'].public_id}/withdraw",
                                       headers=committed["headers"], json={}),
    ]
    responses = run_in_threads(*client_calls)
    assert all(r.status_code in (200, 409) for r in responses), [r.get_data(as_text=True) for r in responses]
    statuses = [status for _version, status in versions(engine, committed["offer"].lineage)]
    assert statuses.count(OfferStatus.PUBLISHED) <= 1
    assert statuses in ([OfferStatus.WITHDRAWN, OfferStatus.WITHDRAWN],
                        [OfferStatus.SUPERSEDED, OfferStatus.PUBLISHED])
