"""The reconciliation API: import, re-import, lines by state, resolutions with four eyes and the ledger,
downloads read back, and who may do what."""

import csv
import io

import openpyxl
import pytest

from core.models import Role
from payments import accounts, ledger
from tests import factories as f
from tests.reconciliation.conftest import bank_csv

RECS = "/api/v1/reconciliations"


def upload(client, headers, *lines, source="bank", name="statement.csv"):
    return client.post(RECS, headers=headers, content_type="multipart/form-data",
                       data={"source": source, "file": (bank_csv(*lines), name)})


@pytest.fixture
def statement(client, session, rworld):
    """A statement with one line of each state: matched, mismatched, extra, and a payout missing from it."""
    books = rworld["books"]
    paid, short, missing = (books.payout(10_000, post=True), books.payout(30_000, post=True),
                            books.payout(20_000, post=True))
    resp = upload(client, rworld["h"]["maker"],
                  f"2026-11-02,{paid.public_id},10000,CNY,ok",
                  f"2026-11-02,{short.public_id},29900,CNY,bank paid less",
                  "2026-11-02,FEE-1,1500,CNY,bank charge")
    assert resp.status_code == 201, resp.get_json()
    return {"body": resp.get_json(), "paid": paid, "short": short, "missing": missing}


def test_an_upload_answers_the_counts_and_the_first_lines(client, rworld, statement):
    body = statement["body"]
    assert body["id"].startswith("rec_")
    assert (body["matched"], body["unmatched_internal"], body["unmatched_external"], body["mismatched"]) == (1, 1, 1, 1)
    assert (body["lines_count"], body["open"], body["resolved"], body["total_out"]) == (3, 3, 0, 41_400)
    lines = {line["line"]: line for line in body["lines"]}
    assert lines[1]["state"] == "matched" and lines[1]["items"] == [
        {"kind": "payout", "id": statement["paid"].public_id, "amount": 10_000, "status": "paid"}]
    assert lines[2]["state"] == "mismatched" and lines[2]["difference"] == -100
    assert lines[2]["items"][0]["amount"] == 30_000
    assert lines[3]["state"] == "unmatched_external" and lines[3]["items"] == []
    assert lines[4]["origin"] == "internal" and lines[4]["reference"] == statement["missing"].public_id
    assert lines[4]["state"] == "unmatched_internal" and lines[4]["date"] == "2026-11-02"


def test_the_same_file_again_answers_200_with_the_first_reconciliation(client, rworld, statement):
    books = rworld["books"]
    again = upload(client, rworld["h"]["approver"], f"2026-11-02,{statement['paid'].public_id},10000,CNY,ok",
                   f"2026-11-02,{statement['short'].public_id},29900,CNY,bank paid less",
                   "2026-11-02,FEE-1,1500,CNY,bank charge", name="renamed.csv")
    assert again.status_code == 200 and again.get_json()["id"] == statement["body"]["id"]
    assert again.headers["Location"].endswith(statement["body"]["id"])
    assert books  # the books were not touched again: one reconciliation
    listed = client.get(RECS, headers=rworld["h"]["auditor"]).get_json()
    assert [r["id"] for r in listed["data"]] == [statement["body"]["id"]]


def test_lines_page_by_state(client, rworld, statement):
    rec_id = statement["body"]["id"]
    url = f"{RECS}/{rec_id}"
    exceptions = client.get(f"{url}?state=exceptions", headers=rworld["h"]["auditor"]).get_json()
    assert [line["line"] for line in exceptions["lines"]] == [2, 3, 4]
    first = client.get(f"{url}?limit=2", headers=rworld["h"]["auditor"]).get_json()
    assert [line["line"] for line in first["lines"]] == [1, 2] and first["lines_next_cursor"]
    rest = client.get(f"{url}?limit=2&cursor={first['lines_next_cursor']}", headers=rworld["h"]["auditor"]).get_json()
    assert [line["line"] for line in rest["lines"]] == [3, 4] and rest["lines_next_cursor"] is None
    internal = client.get(f"{url}?state=unmatched_internal", headers=rworld["h"]["auditor"]).get_json()
    assert [line["line"] for line in internal["lines"]] == [4]
    assert client.get(f"{url}?state=nonsense", headers=rworld["h"]["auditor"]).status_code == 422
    assert client.get(f"{RECS}/rec_nothing", headers=rworld["h"]["auditor"]).status_code == 404


def test_a_note_resolves_an_exception(client, session, rworld, statement):
    rec_id = statement["body"]["id"]
    resp = client.post(f"{RECS}/{rec_id}/lines/3/resolve", headers=rworld["h"]["maker"],
                       json={"kind": "note", "note": "银行手续费,已入账"})
    assert resp.status_code == 200, resp.get_json()
    resolution = resp.get_json()["resolution"]
    assert resolution["kind"] == "note" and resolution["status"] == "resolved" and resolution["id"].startswith("res_")
    again = client.post(f"{RECS}/{rec_id}/lines/3/resolve", headers=rworld["h"]["approver"],
                        json={"kind": "note", "note": "again"})
    assert again.status_code == 409 and again.get_json()["error"] == "already_resolved"
    matched = client.post(f"{RECS}/{rec_id}/lines/1/resolve", headers=rworld["h"]["maker"],
                          json={"kind": "note", "note": "x"})
    assert matched.status_code == 409 and matched.get_json()["error"] == "line_matched"
    assert client.post(f"{RECS}/{rec_id}/lines/99/resolve", headers=rworld["h"]["maker"],
                       json={"kind": "note", "note": "x"}).status_code == 404
    empty = client.post(f"{RECS}/{rec_id}/lines/2/resolve", headers=rworld["h"]["maker"], json={"kind": "note",
                                                                                              "note": ""})
    assert empty.status_code == 422 and "note" in empty.get_json()["errors"]
    detail = client.get(f"{RECS}/{rec_id}", headers=rworld["h"]["auditor"]).get_json()
    assert (detail["resolved"], detail["open"]) == (1, 2)


def test_an_adjustment_needs_a_second_person_and_balances_the_books(client, session, rworld, statement):
    rec_id = statement["body"]["id"]
    bank_before = ledger.balance(session, accounts.BANK).posted
    entered = client.post(f"{RECS}/{rec_id}/lines/3/resolve", headers=rworld["h"]["approver"],
                          json={"kind": "adjustment", "note": "银行手续费"})
    assert entered.status_code == 200, entered.get_json()
    adjustment = entered.get_json()["resolution"]
    assert (adjustment["kind"], adjustment["status"], adjustment["amount"], adjustment["account"]) == (
        "adjustment", "pending", 1500, "union:bank")
    queue = client.get("/api/v1/reconciliation-adjustments?status=pending", headers=rworld["h"]["auditor"]).get_json()
    assert [a["id"] for a in queue["data"]] == [adjustment["id"]]
    own = client.post(f"/api/v1/reconciliation-adjustments/{adjustment['id']}/approve",
                      headers=rworld["h"]["approver"])
    assert own.status_code == 403 and own.get_json()["error"] == "same_person"
    assert client.post(f"/api/v1/reconciliation-adjustments/{adjustment['id']}/approve",
                       headers=rworld["h"]["maker"]).status_code == 403
    approved = client.post(f"/api/v1/reconciliation-adjustments/{adjustment['id']}/approve",
                           headers=rworld["h"]["approver2"])
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "resolved" and approved.get_json()["transaction_id"].startswith("txn_")
    assert ledger.balance(session, accounts.BANK).posted == bank_before - 1500
    assert ledger.balance(session, accounts.DIFFERENCES).posted == 1500
    assert ledger.verify(session).ok
    twice = client.post(f"/api/v1/reconciliation-adjustments/{adjustment['id']}/approve",
                        headers=rworld["h"]["approver2"])
    assert twice.status_code == 409 and twice.get_json()["error"] == "adjustment_decided"
    detail = client.get(f"{RECS}/{rec_id}?state=unmatched_external", headers=rworld["h"]["auditor"]).get_json()
    assert detail["resolved"] == 1 and detail["lines"][0]["resolution"]["status"] == "resolved"


def test_an_adjustment_of_ours_missing_debits_the_bank_back(client, session, rworld, statement):
    rec_id = statement["body"]["id"]
    bank_before = ledger.balance(session, accounts.BANK).posted
    entered = client.post(f"{RECS}/{rec_id}/lines/4/resolve", headers=rworld["h"]["maker"],
                          json={"kind": "adjustment", "note": "银行退回,未出账"}).get_json()["resolution"]
    assert entered["amount"] == -20_000
    client.post(f"/api/v1/reconciliation-adjustments/{entered['id']}/approve", headers=rworld["h"]["approver"])
    assert ledger.balance(session, accounts.BANK).posted == bank_before + 20_000
    assert ledger.balance(session, accounts.DIFFERENCES).posted == -20_000
    assert ledger.verify(session).ok


def test_a_rejected_adjustment_reopens_the_exception(client, session, rworld, statement):
    rec_id = statement["body"]["id"]
    entered = client.post(f"{RECS}/{rec_id}/lines/2/resolve", headers=rworld["h"]["maker"],
                          json={"kind": "adjustment", "note": "少付", "amount": -100}).get_json()["resolution"]
    rejected = client.post(f"/api/v1/reconciliation-adjustments/{entered['id']}/reject",
                           headers=rworld["h"]["approver"])
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "rejected"
    line = client.get(f"{RECS}/{rec_id}?state=mismatched", headers=rworld["h"]["auditor"]).get_json()["lines"][0]
    assert line["resolution"] is None
    noted = client.post(f"{RECS}/{rec_id}/lines/2/resolve", headers=rworld["h"]["maker"],
                        json={"kind": "note", "note": "下期补付"})
    assert noted.status_code == 200
    zero = client.post(f"{RECS}/{rec_id}/lines/3/resolve", headers=rworld["h"]["maker"],
                       json={"kind": "adjustment", "note": "x", "amount": 0})
    assert zero.status_code == 422 and "amount" in zero.get_json()["errors"]


def test_lines_download_as_csv_and_xlsx_with_chinese_or_english_headers(client, rworld, statement):
    rec_id = statement["body"]["id"]
    resp = client.get(f"{RECS}/{rec_id}/export.csv", headers=rworld["h"]["auditor"])
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"))))
    assert rows[0][:5] == ["行号", "来源", "日期", "参考号", "金额(分)"] and len(rows) == 5
    assert rows[2][10] == "mismatched" and rows[2][13] == "-100"
    xlsx = client.get(f"{RECS}/{rec_id}/export.xlsx?lang=en&state=exceptions", headers=rworld["h"]["maker"])
    assert xlsx.status_code == 200
    sheet = list(openpyxl.load_workbook(io.BytesIO(xlsx.data)).active.iter_rows(values_only=True))
    assert sheet[0][:5] == ("Line", "Origin", "Date", "Reference", "Amount (fen)")
    assert [row[0] for row in sheet[1:]] == [2, 3, 4]
    assert sheet[3][3] == statement["missing"].public_id and sheet[3][4] == 20_000 and sheet[3][10] == (
        "unmatched_internal")


def test_bad_uploads_are_refused_with_the_line_and_field(client, rworld):
    bad = upload(client, rworld["h"]["maker"], "2026-11-02,x,12.5,CNY,d", "2026/11/02,y,1,CNY,d")
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"line 1.amount", "line 2.date"}
    wrong_source = client.post(RECS, headers=rworld["h"]["maker"], content_type="multipart/form-data",
                               data={"source": "paypal", "file": (bank_csv("2026-11-02,x,1,CNY,d"), "s.csv")})
    assert wrong_source.status_code == 422 and "source" in wrong_source.get_json()["errors"]
    no_file = client.post(RECS, headers=rworld["h"]["maker"], content_type="multipart/form-data",
                          data={"source": "bank"})
    assert no_file.status_code == 422 and "file" in no_file.get_json()["errors"]
    as_text = client.post(RECS, headers=rworld["h"]["maker"], data="x", content_type="text/plain")
    assert as_text.status_code == 400
    bank_by_api = client.post(RECS, headers=rworld["h"]["maker"],
                              json={"source": "bank", "since": "2026-11-01", "until": "2026-11-02"})
    assert bank_by_api.status_code == 422 and "source" in bank_by_api.get_json()["errors"]
    assert client.get(RECS, headers=rworld["h"]["maker"]).get_json()["data"] == []


@pytest.mark.parametrize("role", [Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER, Role.MEMBER,
                                  Role.UNION_ADMIN, Role.MERCHANT_REVIEWER, Role.APPLICANT])
def test_only_finance_reconciles_and_auditors_read(client, session, cipher, rworld, statement, role):
    kwargs = {}
    if role in (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER):
        kwargs["merchant_id"] = rworld["books"].merchant().id
    if role == Role.MEMBER:
        kwargs["member"] = rworld["member"]
    headers = f.bearer(session, f.user(session, role, **kwargs))
    rec_id = statement["body"]["id"]
    for method, url in (("get", RECS), ("get", f"{RECS}/{rec_id}"), ("get", f"{RECS}/{rec_id}/export.csv"),
                        ("get", f"{RECS}/report?date=2026-11-02"), ("get", "/api/v1/reconciliation-adjustments"),
                        ("post", f"{RECS}/{rec_id}/lines/3/resolve")):
        assert getattr(client, method)(url, headers=headers, json={} if method == "post" else None).status_code == 403
        assert getattr(client, method)(url).status_code == 401
    assert upload(client, headers, "2026-11-02,x,1,CNY,d").status_code == 403
    auditor = rworld["h"]["auditor"]
    assert client.get(f"{RECS}/{rec_id}", headers=auditor).status_code == 200
    assert upload(client, auditor, "2026-11-02,x,1,CNY,d").status_code == 403
    assert client.post(f"{RECS}/{rec_id}/lines/3/resolve", headers=auditor,
                       json={"kind": "note", "note": "x"}).status_code == 403


def test_an_export_too_big_is_refused_and_one_state_still_downloads(client, rworld, statement, monkeypatch):
    from payments.reconciliation import service

    monkeypatch.setattr(service, "EXPORT_MAX_LINES", 2)
    rec_id = statement["body"]["id"]
    too_big = client.get(f"{RECS}/{rec_id}/export.csv", headers=rworld["h"]["maker"])
    assert too_big.status_code == 422 and "state" in too_big.get_json()["errors"]
    one_state = client.get(f"{RECS}/{rec_id}/export.csv?state=mismatched", headers=rworld["h"]["maker"])
    assert one_state.status_code == 200 and len(one_state.data.decode("utf-8-sig").splitlines()) == 2
