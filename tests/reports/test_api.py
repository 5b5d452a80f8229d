"""GET /api/v1/reports/programs and /merchants: the figures, the period, who may read which rows."""

import pytest

from core.models import Role
from tests import factories as f
from tests.reports.conftest import EMPTY_CITY, PHARMACY_CITY, PHARMACY_REGION, PROVINCE

PROGRAM_FIELDS = ("funded", "disbursed", "spent", "subsidised", "expired", "returned", "clawed_back", "balance")


def get(client, url, headers, **params):
    return client.get(url, headers=headers, query_string=params)


def test_program_report_for_finance_and_auditors(client, scenario):
    ours = scenario["program_ids"]
    for who in ("maker", "approver", "auditor"):
        resp = get(client, "/api/v1/reports/programs", scenario["h"][who], program_id=ours)
        assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["from"] is None and body["to"] is None and body["next_cursor"] is None
    assert [r["id"] for r in body["data"]] == ours
    rows = {r["id"]: r for r in body["data"]}
    aid = rows[scenario["aid"].public_id]
    assert {k: aid[k] for k in PROGRAM_FIELDS} == {
        "funded": 1_000_000, "disbursed": 60_000, "spent": 15_000, "subsidised": 1_000, "expired": 36_000,
        "returned": 100_000, "clawed_back": 40_000, "balance": 985_000}
    assert (aid["name"], aid["currency"]) == ("医药救助", "CNY") and "months" not in aid
    general = rows[scenario["general"].public_id]
    assert (general["funded"], general["disbursed"], general["spent"], general["balance"]) == (200_000, 20_000, 0,
                                                                                             180_000)


def test_program_report_by_period_month_and_page(client, scenario):
    h, today, ours = scenario["h"]["auditor"], scenario["today"], scenario["program_ids"]
    past = get(client, "/api/v1/reports/programs", h, program_id=ours,
               **{"from": "2020-01-01", "to": "2020-12-31"}).get_json()
    assert past["from"] == "2020-01-01" and past["to"] == "2020-12-31"
    assert [r["id"] for r in past["data"]] == ours
    assert all(r["funded"] == 0 and r["spent"] == 0 for r in past["data"])
    assert [r["balance"] for r in past["data"]] == [985_000, 180_000, 0]  # the budgets now
    first = today.replace(day=1)
    monthly = get(client, "/api/v1/reports/programs", h, by="month", program_id=scenario["aid"].public_id,
                  **{"from": first.isoformat(), "to": today.isoformat()})
    assert monthly.status_code == 200, monthly.get_json()
    [row] = monthly.get_json()["data"]
    assert [m["month"] for m in row["months"]] == [today.strftime("%Y-%m")]
    assert (row["months"][0]["funded"], row["months"][0]["returned"], row["funded"]) == (1_000_000, 100_000,
                                                                                        1_000_000)
    two = get(client, "/api/v1/reports/programs", h, program_id=[scenario["aid"].public_id,
                                                                  scenario["general"].public_id]).get_json()
    assert {r["id"] for r in two["data"]} == {scenario["aid"].public_id, scenario["general"].public_id}
    page = get(client, "/api/v1/reports/programs", h, program_id=ours, limit=2).get_json()
    assert [r["id"] for r in page["data"]] == ours[:2] and page["next_cursor"]
    rest = get(client, "/api/v1/reports/programs", h, program_id=ours, limit=2, cursor=page["next_cursor"]).get_json()
    assert [r["id"] for r in rest["data"]] == [scenario["idle"].public_id] and rest["next_cursor"] is None


@pytest.mark.parametrize("params", [
    {"from": "2026-13-01"}, {"to": "yesterday"}, {"from": "2026-02-01", "to": "2026-01-31"},
    {"from": "1999-12-31"}, {"by": "month"}, {"by": "month", "from": "2020-01-01", "to": "2026-01-01"},
    {"by": "week"}, {"limit": 0}, {"cursor": "nonsense"},
])
def test_program_report_refuses_bad_queries(client, session, params):
    auditor = f.user(session, Role.AUDITOR)
    resp = get(client, "/api/v1/reports/programs", f.bearer(session, auditor), **params)
    assert resp.status_code == 422, (params, resp.get_json())
    assert resp.get_json()["error"] == "validation_error"


@pytest.mark.parametrize("params", [
    {"category": "casino"}, {"region": "64"}, {"region": "999999"}, {"from": "2026-02-30"},
    {"merchant_id": "x" * 41},
])
def test_merchant_report_refuses_bad_queries(client, session, params):
    maker = f.user(session, Role.FINANCE_MAKER)
    resp = get(client, "/api/v1/reports/merchants", f.bearer(session, maker), **params)
    assert resp.status_code == 422, (params, resp.get_json())


def test_merchant_report_for_finance(client, scenario):
    resp = get(client, "/api/v1/reports/merchants", scenario["h"]["maker"], region=PROVINCE)
    assert resp.status_code == 200, resp.get_json()
    rows = {r["id"]: r for r in resp.get_json()["data"]}
    assert list(rows) == [scenario["pharmacy"].public_id, scenario["shop"].public_id]
    pharmacy = rows[scenario["pharmacy"].public_id]
    assert {k: pharmacy[k] for k in ("receivable", "payable", "in_transit", "paid", "payments", "sales",
                                     "union_subsidy", "refunds", "refunded", "union_refunded", "settled",
                                     "fees")} == {
        "receivable": 11_900, "payable": 1_900, "in_transit": 10_000, "paid": 3_000, "payments": 2, "sales": 38_000,
        "union_subsidy": 4_000, "refunds": 2, "refunded": 24_000, "union_refunded": 3_000, "settled": 14_000,
        "fees": 100}
    assert (pharmacy["category"], pharmacy["region"], pharmacy["currency"]) == ("pharmacy", PHARMACY_REGION, "CNY")
    assert rows[scenario["shop"].public_id]["receivable"] == 5_000
    today = scenario["today"].isoformat()
    day = get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], merchant_id=scenario["pharmacy"].public_id,
              **{"from": today, "to": today}).get_json()["data"]
    assert [(r["sales"], r["refunded"], r["settled"], r["receivable"]) for r in day] == [(38_000, 14_000, 1_000,
                                                                                         11_900)]
    dining = get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], category="dining",
                 region=PROVINCE).get_json()["data"]
    assert [r["id"] for r in dining] == [scenario["shop"].public_id]
    city = get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], region=PHARMACY_CITY).get_json()["data"]
    assert [r["id"] for r in city] == [scenario["pharmacy"].public_id]
    first = get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], region=PROVINCE, limit=1).get_json()
    assert [r["id"] for r in first["data"]] == [scenario["pharmacy"].public_id] and first["next_cursor"]
    rest = get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], region=PROVINCE, limit=1,
               cursor=first["next_cursor"]).get_json()
    assert [r["id"] for r in rest["data"]] == [scenario["shop"].public_id] and rest["next_cursor"] is None


def test_a_merchant_sees_only_its_own_row(client, scenario):
    own, other = scenario["pharmacy"].public_id, scenario["shop"].public_id
    for who in ("pharmacy_owner", "pharmacy_manager"):
        mine = get(client, "/api/v1/reports/merchants", scenario["h"][who], merchant_id=own)
        assert mine.status_code == 200, mine.get_json()
        assert [r["id"] for r in mine.get_json()["data"]] == [own]
        assert mine.get_json()["data"][0]["receivable"] == 11_900
        unasked = get(client, "/api/v1/reports/merchants", scenario["h"][who])
        assert [r["id"] for r in unasked.get_json()["data"]] == [own]
        theirs = get(client, "/api/v1/reports/merchants", scenario["h"][who], merchant_id=other)
        assert theirs.status_code == 404 and theirs.get_json()["error"] == "not_found"
    shop = get(client, "/api/v1/reports/merchants", scenario["h"]["shop_owner"], merchant_id=other).get_json()["data"]
    assert [r["id"] for r in shop] == [other]
    assert get(client, "/api/v1/reports/merchants", scenario["h"]["auditor"], merchant_id="mch_nope").status_code == 404


@pytest.mark.parametrize("who,programs,merchants", [
    ("maker", 200, 200), ("approver", 200, 200), ("auditor", 200, 200),
    ("admin", 403, 403), ("reviewer", 403, 403), ("applicant", 403, 403), ("甲", 403, 403),
    ("pharmacy_owner", 403, 200), ("pharmacy_manager", 403, 200), ("pharmacy_cashier", 403, 403),
])
def test_who_may_read_the_reports(client, rworld, who, programs, merchants):
    h = rworld["h"][who]
    assert get(client, "/api/v1/reports/programs", h).status_code == programs
    assert get(client, "/api/v1/reports/merchants", h).status_code == merchants


def test_anonymous_callers_are_asked_to_sign_in(client):
    for url in ("/api/v1/reports/programs", "/api/v1/reports/merchants"):
        resp = client.get(url)
        assert resp.status_code == 401 and resp.get_json()["error"] == "unauthorized"


def test_queries_that_select_nothing_answer_empty_reports(client, session):
    h = f.bearer(session, f.user(session, Role.FINANCE_APPROVER))
    for url, params in (("/api/v1/reports/programs", {"program_id": "prg_unknown"}),
                        ("/api/v1/reports/merchants", {"region": EMPTY_CITY}),
                        ("/api/v1/reports/merchants", {"region": PROVINCE, "category": "dining"})):
        resp = get(client, url, h, **params)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["data"] == [] and resp.get_json()["next_cursor"] is None


def test_the_reports_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/reports/programs", "/api/v1/reports/merchants"):
        assert "get" in paths[path]
    params = {p["name"] for p in paths["/api/v1/reports/programs"]["get"]["parameters"]}
    assert {"from", "to", "program_id", "by", "limit", "cursor"} <= params
