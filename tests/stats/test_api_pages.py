"""GET /api/v1/stats/overview and /stats/trends, the console page with its drill-down, and its downloads."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest

from stats import jobs
from stats import service as stats
from tests.benefits.conftest import sign_in
from tests import factories as f


def get(client, url, headers, **params):
    return client.get(url, headers=headers, query_string=params)


def test_overview_api_for_the_admins_own_federation(client, session, province):
    h, tree = province["h"], province["tree"]
    resp = get(client, "/api/v1/stats/overview", h["fed_admin"])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["union"] == {"id": tree["fed"].public_id, "name": tree["fed"].name, "kind": "federation",
                             "region": "620000"}
    assert body["members"] == 6 and body["hardship_members"] == 1
    assert body["cards"] == {"issued": 5, "not_activated": 1, "active": 3, "frozen": 1, "lost": 0}
    assert body["cards_used_30d"] == 2 and body["usage_rate"] == 0.6667
    assert (body["merchants"], body["stores"]) == (3, 4)
    assert body["discounts"] == {"merchant_borne": 1_600, "union_subsidised": 1_000, "currency": "CNY"}
    assert body["payments"]["charged"] == 25_400 and body["last_30_days"]["payments"] == 3
    assert [p["id"] for p in body["programs"]] == [province["program"].public_id]
    assert {k: body["programs"][0][k] for k in ("funded", "disbursed", "spent", "expired", "returned")} == {
        "funded": 100_000, "disbursed": 5_000, "spent": 1_000, "expired": 0, "returned": 0}
    assert [(k["name"], k["members"], k["usage_rate"]) for k in body["children"]] == [
        ("兰州市总工会", 4, 0.5), ("天水市总工会", 2, 1.0)]
    assert {c["category"] for c in body["offers_by_category"]} == {
        "culture", "legal", "health", "safety", "entertainment", "everyday"}
    assert body["refreshed_at"] is not None
    # Naming the federation gives the same; naming a city, the city's.
    assert get(client, "/api/v1/stats/overview", h["fed_admin"], union_id=tree["fed"].public_id).get_json() == body
    city = get(client, "/api/v1/stats/overview", h["fed_admin"], union_id=tree["ts"].public_id).get_json()
    assert (city["union"]["name"], city["members"], city["usage_rate"]) == ("天水市总工会", 2, 1.0)


@pytest.mark.parametrize("who, union, status", [
    ("lz_admin", "lz", 200), ("lz_admin", "cg", 200), ("lz_admin", "lz_base", 200),
    ("lz_admin", "fed", 404), ("lz_admin", "ts", 404), ("lz_admin", "ts_base", 404),
    ("base_admin", "lz_base", 200), ("base_admin", "cg", 404), ("ts_admin", "lz", 404),
    ("maker", "ts_base", 200), ("approver", "lz", 200), ("auditor", "fed", 200), ("platform_admin", "qz", 200),
    ("reviewer", "fed", 403), ("owner", "fed", 403), ("member", "fed", 403),
])
def test_who_sees_which_union(client, province, who, union, status):
    for path in ("/api/v1/stats/overview", "/api/v1/stats/trends"):
        resp = get(client, path, province["h"][who], union_id=province["tree"][union].public_id)
        assert resp.status_code == status, (path, resp.get_json())
        if status == 404:
            assert resp.get_json()["error"] == "not_found"


def test_without_a_union_finance_sees_the_platform_and_an_admin_their_own(client, province):
    h, tree = province["h"], province["tree"]
    assert get(client, "/api/v1/stats/overview", h["auditor"]).get_json()["union"] is None
    assert get(client, "/api/v1/stats/overview", h["lz_admin"]).get_json()["union"]["id"] == tree["lz"].public_id
    assert get(client, "/api/v1/stats/overview", h["auditor"], union_id="uni_nosuchunion").status_code == 404
    assert client.get("/api/v1/stats/overview").status_code == 401


def test_trends_api(client, province):
    h = province["h"]
    body = get(client, "/api/v1/stats/trends", h["fed_admin"]).get_json()
    assert len(body["data"]) == 12 and body["to"] == body["data"][-1]["month"]
    assert sum(m["payments"] for m in body["data"]) == 4
    assert sum(m["charged"] for m in body["data"]) == 25_400
    this = body["data"][-1]
    assert {"usage_rate", "card_users", "live_cards", "aid_disbursed", "union_subsidised"} <= set(this)
    short = get(client, "/api/v1/stats/trends", h["fed_admin"], **{"from": body["to"], "to": body["to"]}).get_json()
    assert [m["month"] for m in short["data"]] == [body["to"]]


@pytest.mark.parametrize("params", [{"from": "2026-13"}, {"to": "26-01"}, {"from": "2026-05", "to": "2026-04"},
                                    {"from": "2020-01", "to": "2026-01"}, {"union_id": "x" * 41}])
def test_trends_api_refuses_bad_months(client, province, params):
    resp = get(client, "/api/v1/stats/trends", province["h"]["auditor"], **params)
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["errors"]


# --- pages ------------------------------------------------------------------------------------------

def figure(html: str, row_attr: str, key: str, name: str) -> str:
    row = re.search(rf'<tr {row_attr}="{re.escape(key)}">(.*?)</tr>', html, re.S).group(1)
    return re.search(rf'data-figure="{name}">([^<]*)<', row).group(1).strip()


def test_console_page_drills_down_the_tree(client, session, province):
    tree, staff = province["tree"], province["staff"]
    sign_in(client, staff["fed_admin"].username)
    html = client.get("/console/").get_data(as_text=True)
    assert tree["fed"].name in html and 'data-rate="0.6667"' in html
    assert figure(html, "data-union", tree["lz"].public_id, "members") == "4"
    assert figure(html, "data-union", tree["lz"].public_id, "usage_rate") == "50.0%"
    assert figure(html, "data-union", tree["ts"].public_id, "usage_rate") == "100.0%"
    assert f'/console/?union_id={tree["lz"].public_id}' in html
    assert figure(html, "data-category", "dining", "merchants") == "2"
    assert figure(html, "data-region", "620100", "stores") == "3"
    assert figure(html, "data-program", province["program"].public_id, "disbursed") == "¥50.00"
    assert '<svg' in html and 'id="usage-chart"' in html and 'id="children-chart"' in html
    city = client.get(f"/console/?union_id={tree['lz'].public_id}").get_data(as_text=True)
    assert figure(city, "data-union", tree["cg"].public_id, "members") == "4"
    trail = re.search(r'<ol class="crumbs" id="trail">(.*?)</ol>', city, re.S).group(1)
    assert tree["fed"].name in trail and f'union_id={tree["fed"].public_id}' in trail
    base = client.get(f"/console/?union_id={tree['lz_base'].public_id}").get_data(as_text=True)
    assert 'id="children-table"' not in base and "兰州石化工会" in base


def test_console_page_keeps_an_admin_in_their_subtree(client, province):
    tree = province["tree"]
    sign_in(client, province["staff"]["lz_admin"].username)
    assert client.get(f"/console/?union_id={tree['ts'].public_id}").status_code == 404
    assert client.get(f"/console/?union_id={tree['fed'].public_id}").status_code == 404
    assert client.get(f"/console/children.csv?union_id={tree['ts'].public_id}").status_code == 404
    own = client.get("/console/").get_data(as_text=True)
    assert "兰州市总工会" in own and tree["ts"].public_id not in own


def test_console_page_is_for_union_staff_finance_and_auditors(client, province):
    sign_in(client, province["staff"]["reviewer"].username)
    assert client.get("/console/").status_code == 403
    client.get("/logout")
    sign_in(client, province["staff"]["auditor"].username)
    assert client.get("/console/").status_code == 200


def test_console_page_says_what_is_wrong_with_the_months(client, province):
    sign_in(client, province["staff"]["fed_admin"].username)
    resp = client.get("/console/?from=2026-99&to=2026-01&lang=en")
    assert resp.status_code == 422
    assert 'data-field="months"' in resp.get_data(as_text=True)


def test_downloads_have_chinese_headers_and_an_english_option(client, province):
    tree = province["tree"]
    sign_in(client, province["staff"]["fed_admin"].username)
    xlsx = client.get("/console/children.xlsx")
    assert xlsx.status_code == 200 and xlsx.headers["Content-Disposition"].endswith(".xlsx\"")
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.data)).active
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    assert rows[0][:3] == ["工会名称", "工会编号", "组织层级"]
    assert [(r[0], r[1], r[4]) for r in rows[1:]] == [("兰州市总工会", tree["lz"].public_id, 4),
                                                      ("天水市总工会", tree["ts"].public_id, 2)]
    english = client.get("/console/children.csv?lang=en").data.decode("utf-8-sig")
    table = list(csv.reader(io.StringIO(english)))
    assert table[0][:3] == ["Union name", "Union ID", "Org level"]
    assert table[1][0] == "兰州市总工会" and table[1][10] == "0.5"
    months = openpyxl.load_workbook(io.BytesIO(client.get("/console/months.xlsx").data)).active
    month_rows = [[c.value for c in r] for r in months.iter_rows()]
    assert len(month_rows) == 13 and sum(r[4] for r in month_rows[1:]) == 4
    for table_name in ("merchant-categories", "merchant-cities", "offers", "programs"):
        for fmt in ("csv", "xlsx"):
            resp = client.get(f"/console/{table_name}.{fmt}?union_id={tree['lz'].public_id}")
            assert resp.status_code == 200, (table_name, fmt)
    programs = csv.reader(io.StringIO(client.get("/console/programs.csv?lang=en").data.decode("utf-8-sig")))
    assert list(programs)[1][:4] == ["职工普惠补贴", province["program"].public_id, tree["fed"].name, "100000"]


def test_stats_refresh_command(app, session, province):
    result = app.test_cli_runner().invoke(args=["stats", "refresh"])
    assert result.exit_code == 0, result.output
    assert "figures refreshed from" in result.output and "(2 days)" in result.output
    assert stats.overview(session, province["tree"]["fed"]).counts.members == 6


def test_a_stale_view_queues_a_refresh(app, client, session, province, monkeypatch):
    app.config["STATS_REFRESH_AFTER"] = 60
    try:
        monkeypatch.setattr(stats, "refresh", _counting(stats.refresh))
        sign_in(client, province["staff"]["fed_admin"].username)
        assert client.get("/console/").status_code == 200
        assert stats.refresh.calls == 0  # refreshed by the fixture a moment ago
        state = stats.state(session)
        state.refreshed_at = state.refreshed_at.replace(year=state.refreshed_at.year - 1)
        session.commit()
        html = client.get("/console/").get_data(as_text=True)
        assert stats.refresh.calls == 1  # the tests run jobs at once
        assert "id=\"freshness\"" in html
        # While a refresh is queued or running, a view does not queue another.
        app.extensions["kv"].set(jobs.QUEUED_KEY, "1", 60)
        assert client.get("/console/").status_code == 200 and stats.refresh.calls == 1
    finally:
        app.config["STATS_REFRESH_AFTER"] = 0


def _counting(fn):
    def wrapper(*args, **kwargs):
        wrapper.calls += 1
        return fn(*args, **kwargs)

    wrapper.calls = 0
    return wrapper


def test_overview_of_an_empty_tree(client, session, province):
    lone = f.union(session, f"空工会{f.next_id()}", None, "650000")
    session.commit()
    body = get(client, "/api/v1/stats/overview", province["h"]["auditor"], union_id=lone.public_id).get_json()
    assert (body["members"], body["usage_rate"], body["children"], body["programs"]) == (0, None, [], [])
    assert body["cards"] == {"issued": 0, "not_activated": 0, "active": 0, "frozen": 0, "lost": 0}
