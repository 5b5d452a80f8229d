"""The workbench pages: a statement uploaded, its exceptions in tabs, a note and an adjustment entered by one
person and approved by another, the daily report with its chart, downloads, and who may see what."""

import html
import io
import re

import openpyxl
import pytest

from core.models import Role
from payments import accounts, ledger
from tests import factories as f
from tests.reconciliation.conftest import bank_csv


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, user):
    """Sign in through the login page, and read the pages in English from then on."""
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    resp = client.post("/login", data={"username": user.username, "password": f.PASSWORD,
                                       "csrf_token": csrf(client.get("/login"))})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    client.get("/?lang=en")


def post(client, url, **data):
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **data})


def text_of(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


@pytest.fixture
def uploaded(client, rworld):
    books = rworld["books"]
    paid, short, missing = books.payout(10_000, post=True), books.payout(30_000, post=True), books.payout(5_000)
    sign_in(client, rworld["users"]["maker"])
    resp = client.post("/finance/reconciliations", content_type="multipart/form-data", data={
        "csrf_token": csrf(client.get("/")), "method": "file", "source": "bank",
        "file": (bank_csv(f"2026-11-02,{paid.public_id},10000,CNY,ok",
                          f"2026-11-02,{short.public_id},29900,CNY,less",
                          "2026-11-02,FEE-1,1500,CNY,bank charge"), "statement.csv")})
    assert resp.status_code == 302, text_of(resp)
    return {"url": resp.headers["Location"], "missing": missing}


def test_an_upload_shows_its_counts_and_exceptions(client, rworld, uploaded):
    page = client.get(uploaded["url"])
    body = text_of(page)
    assert page.status_code == 200
    assert re.search(r'id="tile-matched".*?<span class="figure">1</span>', body, re.S)
    assert re.search(r'id="tile-open".*?<span class="figure">3</span>', body, re.S)
    assert 'id="line-2" class="line-mismatched"' in body and 'id="line-3" class="line-unmatched_external"' in body
    assert 'id="line-4" class="line-unmatched_internal"' in body and uploaded["missing"].public_id in body
    assert 'id="line-1"' not in body  # the exceptions tab is shown first
    assert "Amount differs" in body and "difference -¥1.00" in body
    matched = text_of(client.get(uploaded["url"] + "?state=matched"))
    assert 'id="line-1" class="line-matched"' in matched and 'id="line-2"' not in matched
    listing = text_of(client.get("/finance/reconciliations"))
    assert "statement.csv" in listing and 'id="upload-form"' in listing


def test_a_bad_file_is_answered_on_the_page(client, rworld):
    sign_in(client, rworld["users"]["maker"])
    resp = client.post("/finance/reconciliations", content_type="multipart/form-data", data={
        "csrf_token": csrf(client.get("/")), "method": "file", "source": "bank",
        "file": (bank_csv("2026-11-02,x,12.5,CNY,d"), "bad.csv")})
    assert resp.status_code == 422
    assert 'data-field="line 1.amount"' in text_of(resp)


def test_a_note_and_an_adjustment_approved_by_someone_else(client, session, rworld, uploaded):
    url = uploaded["url"]
    rec_id = url.rsplit("/", 1)[1]
    noted = post(client, f"/finance/reconciliations/{rec_id}/lines/3/resolve", kind="note", note="银行手续费")
    assert noted.status_code == 302
    adjusted = post(client, f"/finance/reconciliations/{rec_id}/lines/2/resolve", kind="adjustment", amount="-1.00",
                    note="银行少付")
    assert adjusted.status_code == 302
    body = text_of(client.get(url))
    assert 'id="pending"' in body and "approve-adjustment" not in body  # a maker cannot approve
    assert 'data-status="resolved"' in body and 'data-status="pending"' in body
    sign_in(client, rworld["users"]["approver"])
    body = text_of(client.get(url))
    adjustment_id = re.search(r'id="adjustment-(adj_\w+)"', body).group(1)
    bank = ledger.balance(session, accounts.BANK).posted
    approved = post(client, f"/finance/reconciliations/adjustments/{adjustment_id}/approve")
    assert approved.status_code == 302
    assert ledger.balance(session, accounts.BANK).posted == bank + 100
    assert ledger.verify(session).ok
    body = text_of(client.get(url))
    assert 'id="pending"' not in body
    assert re.search(r'id="tile-open".*?<span class="figure">1</span>', body, re.S)


def test_the_approver_who_entered_an_adjustment_cannot_approve_it(client, session, rworld, uploaded):
    rec_id = uploaded["url"].rsplit("/", 1)[1]
    sign_in(client, rworld["users"]["approver"])
    post(client, f"/finance/reconciliations/{rec_id}/lines/3/resolve", kind="adjustment", note="手续费")
    body = text_of(client.get(uploaded["url"]))
    adjustment_id = re.search(r'id="adjustment-(adj_\w+)"', body).group(1)
    assert "Another approver confirms it." in body and "approve-adjustment" not in body
    refused = post(client, f"/finance/reconciliations/adjustments/{adjustment_id}/approve")
    assert refused.status_code == 302
    assert "another approver must confirm it" in text_of(client.get(uploaded["url"]))
    assert ledger.balance(session, accounts.DIFFERENCES).posted == 0


def test_the_report_page_draws_the_differences(client, rworld, uploaded):
    page = client.get("/finance/reconciliations/report?since=2026-11-01&until=2026-11-03")
    body = text_of(page)
    assert page.status_code == 200
    assert re.search(r'<g class="chart-group" data-day="2026-11-02" data-account="union:bank">', body)
    # The books (posted today) moved nothing on the 2nd; the statement took ¥414 out: the books have ¥414 more.
    assert re.search(r'data-account="union:bank">.*?class="bar available".*?data-value="41400"', body, re.S)
    assert body.count('<tr data-account="union:bank"') == 3
    xlsx = client.get("/finance/reconciliations/report.xlsx?since=2026-11-01&until=2026-11-03&lang=en")
    sheet = list(openpyxl.load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert sheet[0][0] == "Account" and len(sheet) == 10
    bad = client.get("/finance/reconciliations/report?since=2026-11-03&until=2026-11-01")
    assert bad.status_code == 422 and 'id="report-error"' in text_of(bad)


def test_the_lines_download_from_the_page(client, rworld, uploaded):
    rec_id = uploaded["url"].rsplit("/", 1)[1]
    resp = client.get(f"/finance/reconciliations/{rec_id}/export.csv?state=exceptions")
    assert resp.status_code == 200
    rows = resp.data.decode("utf-8-sig").splitlines()
    assert rows[0].startswith("行号,") and len(rows) == 4


@pytest.mark.parametrize("role", [Role.MERCHANT_OWNER, Role.MERCHANT_CASHIER, Role.MEMBER, Role.UNION_ADMIN])
def test_the_workbench_is_for_finance_and_auditors(client, session, rworld, uploaded, role):
    kwargs = {}
    if role in (Role.MERCHANT_OWNER, Role.MERCHANT_CASHIER):
        kwargs["merchant_id"] = rworld["books"].merchant().id
    if role == Role.MEMBER:
        kwargs["member"] = rworld["member"]
    rec_id = uploaded["url"].rsplit("/", 1)[1]
    pages = ["/finance/reconciliations", uploaded["url"], "/finance/reconciliations/report",
             f"/finance/reconciliations/{rec_id}/export.csv", "/finance/reconciliations/report.csv"]
    sign_in(client, f.user(session, role, **kwargs))
    for url in pages:
        assert client.get(url).status_code == 403, url
    assert post(client, f"/finance/reconciliations/{rec_id}/lines/3/resolve", kind="note", note="x").status_code == 403
    sign_in(client, rworld["users"]["auditor"])
    for url in pages:
        assert client.get(url).status_code == 200, url
    body = text_of(client.get(uploaded["url"]))
    assert "resolve-form" not in body
    assert "upload-form" not in text_of(client.get("/finance/reconciliations"))
    assert post(client, f"/finance/reconciliations/{rec_id}/lines/3/resolve", kind="note", note="x").status_code == 403
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    assert client.get("/finance/reconciliations").status_code == 302


def test_the_stripe_api_form_says_when_stripe_is_not_configured(client, rworld, app, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")
    sign_in(client, rworld["users"]["maker"])
    resp = client.post("/finance/reconciliations", data={"csrf_token": csrf(client.get("/")), "method": "api",
                                                         "since": "2026-11-01", "until": "2026-11-02"})
    assert resp.status_code == 503 and "Stripe is not configured" in text_of(resp)
    bad = client.post("/finance/reconciliations", data={"csrf_token": csrf(client.get("/")), "method": "api",
                                                        "since": "yesterday", "until": "2026-11-02"})
    assert bad.status_code == 422 and 'data-field="since"' in text_of(bad)
