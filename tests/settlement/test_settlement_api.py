"""The settlement endpoints, command and pages: who may settle and see what, and what they answer."""

from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest
from sqlalchemy import select

from core.models import Role
from payments import ledger
from payments.settlement import service
from payments.settlement.models import Settlement
from tests.benefits.conftest import post, sign_in
from tests.settlement.conftest import DAY, at, fund

DATE = DAY.isoformat()


@pytest.fixture
def sold(session, world, till):
    """A day of sales at both merchants, one refund."""
    fund(session, world["card"], 50_000)
    first = till.pay(4_000, at(DAY, 10))
    till.refund(first, 1_000, at(DAY, 11))
    till.pay(2_000, at(DAY, 12), store=world["pharmacy_store"])
    return world


def test_finance_settles_a_day_and_a_repeat_creates_nothing(client, session, sold):
    h = sold["h"]
    first = client.post("/api/v1/settlements", json={"business_date": DATE}, headers=h["maker"])
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    assert body["business_date"] == DATE and body["created"] == 2
    ours = next(x for x in body["data"] if x["merchant_id"] == sold["shop"].public_id)
    assert (ours["charged"], ours["refunded"], ours["net"], ours["status"]) == (4_000, 1_000, 3_000, "settled")
    assert ours["id"].startswith("stl_") and ours["payout_id"].startswith("po_") and ours["payout_status"] == "ready"
    assert ours["payout_due_on"] == (DAY + dt.timedelta(days=1)).isoformat()

    again = client.post("/api/v1/settlements", json={"business_date": DATE}, headers=h["approver"])
    assert again.status_code == 201 and again.get_json()["created"] == 0
    assert sorted(x["id"] for x in again.get_json()["data"]) == sorted(x["id"] for x in body["data"])
    assert ledger.verify(session).ok


@pytest.mark.parametrize("body, field", [({}, "business_date"), ({"business_date": "2026-13-01"}, "business_date"),
                                         ({"business_date": DATE, "extra": 1}, "extra")])
def test_a_bad_request_is_a_field_error(client, sold, body, field):
    resp = client.post("/api/v1/settlements", json=body, headers=sold["h"]["maker"])
    assert resp.status_code == 422 and field in resp.get_json()["errors"]


def test_an_open_day_is_refused(client, sold):
    today = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8)).date().isoformat()
    resp = client.post("/api/v1/settlements", json={"business_date": today}, headers=sold["h"]["maker"])
    assert resp.status_code == 422 and resp.get_json()["error"] == "business_day_open"


@pytest.mark.parametrize("day, error", [("0001-01-01", "validation_error"), ("9999-12-31", "business_day_open")])
def test_the_first_and_last_dates_there_are_are_refused_not_a_crash(client, sold, day, error):
    resp = client.post("/api/v1/settlements", json={"business_date": day}, headers=sold["h"]["maker"])
    assert resp.status_code == 422 and resp.get_json()["error"] == error
    sign_in(client, sold["users"]["maker"].username)
    assert client.get(f"/finance/settlements?date={day}").status_code == 422


@pytest.mark.parametrize("who, status", [("auditor", 403), ("owner", 403), ("admin", 403), ("member", 403),
                                         (None, 401)])
def test_only_finance_settles(client, sold, who, status):
    resp = client.post("/api/v1/settlements", json={"business_date": DATE},
                       headers=sold["h"][who] if who else {})
    assert resp.status_code == status


def test_a_merchant_sees_only_its_own_statements(client, session, sold):
    h = sold["h"]
    client.post("/api/v1/settlements", json={"business_date": DATE}, headers=h["maker"])
    everything = client.get(f"/api/v1/settlements?business_date={DATE}", headers=h["auditor"]).get_json()["data"]
    assert len(everything) == 2
    own = client.get("/api/v1/settlements", headers=h["owner"]).get_json()["data"]
    assert [x["merchant_id"] for x in own] == [sold["shop"].public_id]
    theirs = next(x for x in everything if x["merchant_id"] == sold["pharmacy"].public_id)
    assert client.get(f"/api/v1/settlements/{theirs['id']}", headers=h["owner"]).status_code == 404
    assert client.get(f"/api/v1/settlements/{theirs['id']}", headers=h["cashier"]).status_code == 403
    detail = client.get(f"/api/v1/settlements/{own[0]['id']}", headers=h["manager"])
    assert detail.status_code == 200
    lines = detail.get_json()["lines"]
    assert [(x["kind"], x["to_merchant"]) for x in lines] == [("payment", 4_000), ("refund", -1_000)]
    assert client.get("/api/v1/settlements/stl_nothing", headers=h["maker"]).status_code == 404
    assert client.get("/api/v1/settlements", headers=h["member"]).status_code == 403


def test_the_settle_command_settles_yesterday_or_a_date(app, session, sold):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["settle", "--date", DATE])
    assert result.exit_code == 0, result.output
    assert "2 settled now" in result.output
    assert runner.invoke(args=["settle", "--date", DATE]).output.strip().endswith("0 settled now (net ¥0.00), "
                                                                                 "2 settled before")
    assert session.scalar(select(Settlement.net).where(Settlement.merchant_id == sold["shop"].id)) == 3_000
    future = runner.invoke(args=["settle", "--date", "2999-01-01"])
    assert future.exit_code != 0 and "has not closed yet" in future.output


def test_the_finance_pages_show_the_day_and_each_statement(client, session, sold):
    sign_in(client, sold["users"]["maker"].username)
    page = client.get(f"/finance/settlements?date={DATE}")
    assert page.status_code == 200 and 'id="settle"' in page.get_data(as_text=True)
    settled = post(client, "/finance/settlements", date=DATE)
    assert settled.status_code == 302
    settled = client.get(settled.headers["Location"])
    html = settled.get_data(as_text=True)
    assert settled.status_code == 200 and sold["shop"].name in html and sold["pharmacy"].name in html
    stl = session.scalar(select(Settlement).where(Settlement.merchant_id == sold["shop"].id))
    statement = client.get(f"/finance/settlements/{stl.public_id}").get_data(as_text=True)
    assert "¥30.00" in statement and "¥10.00" in statement  # the net and the refund
    xlsx = client.get(f"/finance/settlements/{stl.public_id}/statement.xlsx")
    rows = list(openpyxl.load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert rows[0][0] == "类型" and [r[0] for r in rows[1:]] == ["payment", "refund"] and rows[2][-1] == -1_000
    csv_en = client.get(f"/finance/settlements/{stl.public_id}/statement.csv?lang=en").get_data(as_text=True)
    assert csv_en.lstrip("\ufeff").startswith("kind,id,created_at")
    assert client.get("/finance/settlements?date=nonsense").status_code == 422


def test_an_auditor_reads_but_cannot_settle_on_the_pages(client, sold):
    sign_in(client, sold["users"]["auditor"].username)
    page = client.get(f"/finance/settlements?date={DATE}")
    assert page.status_code == 200 and 'id="settle"' not in page.get_data(as_text=True)
    assert post(client, "/finance/settlements", date=DATE).status_code == 403


def test_a_merchant_page_shows_its_own_statements_only(client, session, sold):
    client.post("/api/v1/settlements", json={"business_date": DATE}, headers=sold["h"]["maker"])
    theirs = session.scalar(select(Settlement).where(Settlement.merchant_id == sold["pharmacy"].id))
    ours = session.scalar(select(Settlement).where(Settlement.merchant_id == sold["shop"].id))
    sign_in(client, sold["users"]["owner"].username)
    listing = client.get("/merchant/settlements").get_data(as_text=True)
    assert ours.public_id in listing and theirs.public_id not in listing
    assert client.get(f"/merchant/settlements/{ours.public_id}").status_code == 200
    assert client.get(f"/merchant/settlements/{theirs.public_id}").status_code == 404
    assert client.get(f"/finance/settlements/{ours.public_id}").status_code == 403
    assert Role.MERCHANT_OWNER == sold["users"]["owner"].role


def test_the_merchant_dashboard_shows_its_sales_and_latest_statements(client, session, sold, till):
    w = sold
    till.pay(1_500, at(DAY - dt.timedelta(days=1), 10))  # the day before: same month, not today
    figures = service.merchant_figures(session, w["shop"], now=at(DAY, 20))
    assert (figures.today_sales, figures.month_sales, figures.month_discounts) == (4_000, 5_500, 0)
    assert figures.payable == 4_000 - 1_000 + 1_500 and figures.settlements == []
    client.post("/api/v1/settlements", json={"business_date": DATE}, headers=w["h"]["maker"])
    figures = service.merchant_figures(session, w["shop"], now=at(DAY, 20))
    assert [s.business_date for s in figures.settlements] == [DAY] and figures.payable == 0

    sign_in(client, w["users"]["cashier"].username)
    page = client.get("/merchant/").get_data(as_text=True)
    assert 'id="latest-settlements"' in page and "¥45.00" in page  # the statement's net
    assert "/merchant/settlements/" not in page  # a cashier does not open statements
