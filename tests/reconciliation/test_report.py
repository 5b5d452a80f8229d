"""The daily report against a small example worked out by hand."""

import datetime as dt
import io

import openpyxl
import pytest

from payments import ledger
from payments.ledger import posting
from payments.reconciliation import matching, service
from payments.reconciliation.models import Source
from tests.reconciliation.conftest import DAY, at, bank_csv
from tests.reconciliation.test_pages import sign_in

BEFORE, AFTER = DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=1)


@pytest.fixture
def books_of_two_days(session, rworld, monkeypatch):
    """1 Nov: a funding of ¥10,000 arrives. 2 Nov: payouts of ¥100 and ¥200 leave, a funding of ¥500 arrives.
    The bank's statement of 2 Nov: the payouts (the second as ¥205), the funding, and a ¥3 bank charge: the
    books moved ¥8 more into the account than the bank did."""
    books = rworld["books"]
    monkeypatch.setattr(posting, "utcnow", lambda: at(BEFORE, 15))
    books.funding(1_000_000, BEFORE, reference="F-1", post=True, hour=15)
    monkeypatch.setattr(posting, "utcnow", lambda: at(DAY, 9))
    a = books.payout(10_000, DAY, post=True, hour=9)
    b = books.payout(20_000, DAY, post=True, hour=9)
    books.funding(50_000, DAY, reference="F-2", post=True, hour=9)
    monkeypatch.setattr(posting, "utcnow", lambda: at(DAY, 23) + dt.timedelta(minutes=59))  # still the 2nd
    books.funding(1, DAY, reference="F-late", post=True, hour=23)
    monkeypatch.undo()
    rec, _ = service.import_file(session, rworld["a"]["maker"], source=Source.BANK, window_days=3, filename="s.csv",
                                 fileobj=bank_csv(f"2026-11-02,{a.public_id},10000,CNY,a",
                                                  f"2026-11-02,{b.public_id},20500,CNY,b",
                                                  "2026-11-02,F-2,-50000,CNY,funding",
                                                  "2026-11-02,F-late,-1,CNY,funding",
                                                  "2026-11-02,FEE,300,CNY,charge"))
    return rec


def test_the_daily_report_adds_up(session, books_of_two_days):
    rows = {(r.account, r.day): r for r in service.daily_report(session, since=BEFORE, until=AFTER)}
    assert len(rows) == 9
    bank = rows[("union:bank", DAY)]
    assert (bank.opening, bank.inflow, bank.outflow, bank.closing) == (1_000_000, 50_001, 30_000, 1_020_001)
    assert (bank.statement_in, bank.statement_out, bank.statement_net) == (50_001, 30_800, 19_201)
    assert bank.difference == 800 and bank.reconciliation_id == books_of_two_days.public_id
    first = rows[("union:bank", BEFORE)]
    assert (first.opening, first.inflow, first.outflow, first.closing) == (0, 1_000_000, 0, 1_000_000)
    assert first.statement_in is None and first.difference is None  # no statement covers the 1st
    after = rows[("union:bank", AFTER)]
    assert (after.opening, after.inflow, after.outflow, after.closing) == (1_020_001, 0, 0, 1_020_001)
    transit = rows[("payout:in-transit", DAY)]
    assert (transit.opening, transit.inflow, transit.outflow, transit.closing) == (0, 30_000, 30_000, 0)
    assert transit.statement_in is None
    clearing = rows[("stripe:clearing", DAY)]
    assert (clearing.opening, clearing.inflow, clearing.outflow, clearing.closing) == (0, 0, 0, 0)
    # Each day closes at the ledger's balance at the end of the day.
    for (code, day), row in rows.items():
        end = matching.start_of(day + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)
        assert row.closing == ledger.balance_as_of(session, code, end), (code, day)


def test_the_latest_statement_covering_a_day_counts(session, rworld, books_of_two_days):
    later, _ = service.import_file(session, rworld["a"]["maker"], source=Source.BANK, window_days=3,
                                   filename="again.csv", fileobj=bank_csv("2026-11-02,F-2,-50000,CNY,funding"))
    bank = service.daily_report(session, since=DAY, until=DAY, accounts_=("union:bank",))[0]
    assert (bank.statement_in, bank.statement_out, bank.reconciliation_id) == (50_000, 0, later.public_id)


def test_the_report_over_the_api_and_as_a_spreadsheet(client, rworld, books_of_two_days):
    resp = client.get("/api/v1/reconciliations/report?date=2026-11-02&account=union:bank",
                      headers=rworld["h"]["auditor"])
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["since"], body["until"]) == ("2026-11-02", "2026-11-02")
    assert body["rows"] == [{"account": "union:bank", "date": "2026-11-02", "currency": "CNY", "opening": 1_000_000,
                             "in": 50_001, "out": 30_000, "closing": 1_020_001, "statement_in": 50_001,
                             "statement_out": 30_800, "statement_net": 19_201, "difference": 800,
                             "reconciliation_id": books_of_two_days.public_id}]
    everything = client.get("/api/v1/reconciliations/report?since=2026-11-01&until=2026-11-03",
                            headers=rworld["h"]["maker"]).get_json()
    assert len(everything["rows"]) == 9
    xlsx = client.get("/api/v1/reconciliations/report.xlsx?date=2026-11-02", headers=rworld["h"]["maker"])
    assert xlsx.status_code == 200
    sheet = list(openpyxl.load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert sheet[0][:4] == ("账户", "日期", "币种", "期初余额(分)")
    assert sheet[1] == ("union:bank", "2026-11-02", "CNY", 1_000_000, 50_001, 30_000, 1_020_001, 50_001, 30_800,
                        19_201, 800, books_of_two_days.public_id)
    english = client.get("/api/v1/reconciliations/report.csv?date=2026-11-02&lang=en", headers=rworld["h"]["maker"])
    assert english.data.decode("utf-8-sig").splitlines()[0].startswith("Account,Date,Currency,Opening (fen)")
    assert client.get("/api/v1/reconciliations/report?since=2026-11-03&until=2026-11-01",
                      headers=rworld["h"]["maker"]).status_code == 422
    assert client.get("/api/v1/reconciliations/report?date=2026-11-02&since=2026-11-01",
                      headers=rworld["h"]["maker"]).status_code == 422
    assert client.get("/api/v1/reconciliations/report?account=union:elsewhere",
                      headers=rworld["h"]["maker"]).status_code == 422


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_dates_the_day_bounds_cannot_hold_are_refused_not_a_crash(client, rworld, day):
    maker = rworld["h"]["maker"]
    for path in (f"/api/v1/reconciliations/report?date={day}", f"/api/v1/reconciliations/report.csv?since={day}"):
        resp = client.get(path, headers=maker)
        assert resp.status_code == 422 and resp.get_json()["error"] == "validation_error", path
    imported = client.post("/api/v1/reconciliations", headers=maker,
                           json={"source": "stripe", "since": day, "until": day})
    assert imported.status_code == 422 and "since" in imported.get_json()["errors"]
    sign_in(client, rworld["users"]["maker"])
    assert client.get(f"/finance/reconciliations/report?until={day}").status_code == 422
