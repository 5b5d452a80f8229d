"""The payouts API: who may call what, a merchant seeing only its own payouts in its own shape, approval
and resolution, sending Stripe payouts, the bank files with their download and the bank's answer,
Idempotency-Key, and account numbers masked everywhere but in the file."""

import csv
import io

import pytest
from sqlalchemy import func, select

from core.auth import SYSTEM
from payments.payouts import service
from payments.payouts.models import BankFile, PayoutStatus
from tests.payouts.conftest import (
    ACCOUNT_NUMBER,
    TODAY,
    assert_books_balance,
    make_payout,
    make_stripe_merchant,
    row,
    stripe_account,
)

ROLES = ("maker", "approver", "auditor", "owner", "manager", "cashier", "admin", "reviewer")
MERCHANT_FIELDS = {"id", "merchant_id", "settlement_id", "amount", "currency", "method", "status", "due_on",
                   "bank_account", "submitted_at", "paid_at", "failed_at", "failure_message", "carried_into_id",
                   "created_at"}


@pytest.fixture
def today(monkeypatch):
    monkeypatch.setattr(service, "business_today", lambda: TODAY)


@pytest.fixture
def payouts(session, world):
    return {"own": make_payout(session, world["shop"], 12_000, created_by=world["users"]["maker"]),
            "theirs": make_payout(session, world["other"], 3_000)}


def ours(body, *payouts) -> list[str]:
    wanted = {p.public_id for p in payouts}
    return [item["id"] for item in body["data"] if item["id"] in wanted]


@pytest.mark.parametrize("who, status", [("maker", 200), ("approver", 200), ("auditor", 200), ("owner", 200),
                                         ("manager", 200), ("cashier", 403), ("admin", 403), ("reviewer", 403)])
def test_who_lists_payouts(client, headers, payouts, who, status):
    assert client.get("/api/v1/payouts", headers=headers[who]).status_code == status
    assert client.get(f"/api/v1/payouts/{payouts['own'].public_id}", headers=headers[who]).status_code == status
    assert client.get("/api/v1/payouts").status_code == 401


def test_finance_sees_every_payout_with_its_details_and_the_account_masked(client, headers, payouts, world):
    resp = client.get("/api/v1/payouts?limit=200", headers=headers["auditor"])
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(ours(body, payouts["own"], payouts["theirs"])) == {payouts["own"].public_id,
                                                                   payouts["theirs"].public_id}
    item = next(i for i in body["data"] if i["id"] == payouts["own"].public_id)
    assert (item["amount"], item["currency"], item["method"], item["status"]) == (12_000, "CNY", "bank", "ready")
    assert item["merchant_id"] == world["shop"].public_id and item["merchant_name"] == "好味餐厅"
    assert item["settlement_id"].startswith("stl_") and item["due_on"] == TODAY.isoformat()
    assert item["created_by"] == world["users"]["maker"].public_id and item["attempts"] == 0
    assert item["bank_account"] == {"bank_name": "宁夏银行", "account_name": "好味餐厅",
                                    "account_number_masked": "************2233"}
    assert item["created_at"].endswith("+00:00")
    assert ACCOUNT_NUMBER not in resp.get_data(as_text=True)


def test_a_merchant_sees_only_its_own_payouts_in_its_own_shape(client, headers, payouts, world):
    for who in ("owner", "manager"):
        body = client.get("/api/v1/payouts", headers=headers[who]).get_json()
        assert [i["id"] for i in body["data"]] == [payouts["own"].public_id]
        assert set(body["data"][0]) == MERCHANT_FIELDS
        one = client.get(f"/api/v1/payouts/{payouts['own'].public_id}", headers=headers[who])
        assert one.status_code == 200 and set(one.get_json()) == MERCHANT_FIELDS
        theirs = client.get(f"/api/v1/payouts/{payouts['theirs'].public_id}", headers=headers[who])
        assert theirs.status_code == 404 and theirs.get_json()["error"] == "not_found"
        filtered = client.get(f"/api/v1/payouts?merchant_id={world['other'].public_id}", headers=headers[who])
        assert filtered.get_json()["data"] == []
    other = client.get(f"/api/v1/payouts/{payouts['own'].public_id}", headers=headers["other_owner"])
    assert other.status_code == 404


def test_lists_filter_and_page(client, session, headers, payouts, world):
    third = make_payout(session, world["shop"], 500)
    service.mark_failed(session, SYSTEM, third.public_id, code="x", message="y")
    session.commit()
    h = headers["maker"]
    shop = world["shop"].public_id
    assert ours(client.get(f"/api/v1/payouts?merchant_id={shop}", headers=h).get_json(), *payouts.values(), third) \
        == [third.public_id, payouts["own"].public_id]
    assert ours(client.get("/api/v1/payouts?status=failed&limit=200", headers=h).get_json(), third) == [third.public_id]
    assert ours(client.get("/api/v1/payouts?exception_status=open&limit=200", headers=h).get_json(),
                third) == [third.public_id]
    first = client.get(f"/api/v1/payouts?merchant_id={shop}&limit=1", headers=h).get_json()
    assert [i["id"] for i in first["data"]] == [third.public_id] and first["next_cursor"]
    second = client.get(f"/api/v1/payouts?merchant_id={shop}&limit=1&cursor={first['next_cursor']}", headers=h)
    assert [i["id"] for i in second.get_json()["data"]] == [payouts["own"].public_id]
    for bad in ("status=lost", "limit=0", "cursor=nonsense"):
        resp = client.get(f"/api/v1/payouts?{bad}", headers=h)
        assert resp.status_code == 422, bad


def test_approval_through_the_api(client, session, headers, world):
    payout = make_payout(session, world["shop"], 6_000_000, created_by=world["users"]["approver"],
                         approval_above=5_000_000)
    url = f"/api/v1/payouts/{payout.public_id}/approve"
    assert client.post(url, headers=headers["maker"]).status_code == 403
    same = client.post(url, headers=headers["approver"])
    assert same.status_code == 403 and same.get_json()["error"] == "same_person"
    ok = client.post(url, headers=headers["approver2"])
    assert ok.status_code == 200 and ok.get_json()["status"] == "ready"
    assert ok.get_json()["approved_by"] == world["users"]["approver2"].public_id
    assert client.post(url, headers=headers["approver2"]).status_code == 200  # idempotent
    ready = make_payout(session, world["shop"], 100)
    conflict = client.post(f"/api/v1/payouts/{ready.public_id}/approve", headers=headers["approver"])
    assert conflict.status_code == 409 and conflict.get_json()["error"] == "payout_not_pending_approval"
    assert client.post("/api/v1/payouts/po_unknown/approve", headers=headers["approver"]).status_code == 404


def test_resolving_an_exception_through_the_api(client, session, headers, world):
    payout = make_payout(session, world["shop"], 700)
    url = f"/api/v1/payouts/{payout.public_id}/resolve"
    assert client.post(url, json={"note": "x"}, headers=headers["maker"]).status_code == 409
    service.mark_failed(session, SYSTEM, payout.public_id, code="account_closed", message="账户已销户")
    session.commit()
    for body in ({}, {"note": ""}, {"note": "ok", "extra": 1}, {"note": "x" * 1001}):
        assert client.post(url, json=body, headers=headers["maker"]).status_code == 422, body
    for who in ("auditor", "owner"):
        assert client.post(url, json={"note": "x"}, headers=headers[who]).status_code == 403
    resp = client.post(url, json={"note": "商户更换了账户"}, headers=headers["approver"])
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["exception_status"], body["exception_note"], body["status"]) == ("resolved", "商户更换了账户",
                                                                                   "failed")
    assert body["resolved_by"] == world["users"]["approver"].public_id
    # The merchant sees the failure, not finance's note.
    mine = client.get(f"/api/v1/payouts/{payout.public_id}", headers=headers["owner"]).get_json()
    assert mine["failure_message"] == "账户已销户" and "exception_note" not in mine


def test_sending_stripe_payouts_through_the_api(client, session, cipher, app, headers, stripe_server,
                                                stripe_app_config, today):
    merchant = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server))
    payout = make_payout(session, merchant, 9_900)
    for who in ("auditor", "owner"):
        assert client.post("/api/v1/payouts/send", headers=headers[who]).status_code == 403
    resp = client.post("/api/v1/payouts/send", headers=headers["maker"])
    assert resp.status_code == 200
    assert resp.get_json() == {"sent": 1, "failed": 0,
                               "results": [{"payout_id": payout.public_id, "status": "submitted", "error": None}]}
    body = client.get(f"/api/v1/payouts/{payout.public_id}", headers=headers["auditor"]).get_json()
    assert body["stripe_transfer_id"].startswith("tr_") and body["stripe_payout_id"].startswith("po_")
    assert body["stripe_account_id"].startswith("acct_") and body["bank_account"] is None
    again = client.post("/api/v1/payouts/send", headers=headers["approver"])
    assert again.get_json() == {"sent": 0, "failed": 0, "results": []}


def test_the_bank_file_through_the_api(client, session, headers, world, today):
    own, theirs = make_payout(session, world["shop"], 12_000), make_payout(session, world["other"], 3_000)
    for who in ("approver", "auditor", "owner"):
        assert client.post("/api/v1/payout-bank-files", headers=headers[who]).status_code == 403
    made = client.post("/api/v1/payout-bank-files", headers={**headers["maker"], "Idempotency-Key": "file-1"})
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["id"].startswith("pbf_") and (body["payouts_count"], body["total"]) == (2, 15_000)
    assert made.headers["Location"].endswith(f"/api/v1/payout-bank-files/{body['id']}")
    assert {p["id"] for p in body["payouts"]} == {own.public_id, theirs.public_id}
    assert all(p["status"] == "submitted" and p["bank_account"]["account_number_masked"] == "************2233"
               for p in body["payouts"])
    assert ACCOUNT_NUMBER not in made.get_data(as_text=True)
    replay = client.post("/api/v1/payout-bank-files", headers={**headers["maker"], "Idempotency-Key": "file-1"})
    assert replay.status_code == 201 and replay.get_json() == body and replay.headers["Idempotent-Replayed"]
    empty = client.post("/api/v1/payout-bank-files", headers=headers["maker"])
    assert empty.status_code == 422 and empty.get_json()["error"] == "no_payouts_due"
    assert session.scalar(select(func.count()).select_from(BankFile).where(
        BankFile.created_by_id == world["users"]["maker"].id)) == 1

    url = f"/api/v1/payout-bank-files/{body['id']}"
    for who in ("auditor", "owner", "cashier"):
        assert client.get(url, headers=headers[who]).status_code == 403
        assert client.get(f"{url}/file.csv", headers=headers[who]).status_code == 403
    got = client.get(url, headers=headers["approver"])
    assert got.status_code == 200 and got.get_json() == body
    listed = client.get("/api/v1/payout-bank-files", headers=headers["approver"]).get_json()
    assert body["id"] in [f["id"] for f in listed["data"]] and "payouts" not in listed["data"][0]
    assert client.get("/api/v1/payout-bank-files/pbf_unknown", headers=headers["maker"]).status_code == 404

    download = client.get(f"{url}/file.csv", headers=headers["approver"])
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == f'attachment; filename="{body["id"]}.csv"'
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert {r[2] for r in rows[1:]} == {ACCOUNT_NUMBER} and {r[5] for r in rows[1:]} == {own.public_id,
                                                                                        theirs.public_id}


def test_the_banks_answer_through_the_api(client, session, headers, world, today):
    own, theirs = make_payout(session, world["shop"], 12_000), make_payout(session, world["other"], 3_000)
    bank_file = client.post("/api/v1/payout-bank-files", headers=headers["maker"]).get_json()
    url = f"/api/v1/payout-bank-files/{bank_file['id']}/statuses"
    text = f"reference,status,reason\n{own.public_id},paid,\n{theirs.public_id},failed,户名不符\npo_x,paid,\n"

    def upload(who, content=text, **extra):
        return client.post(url, data={"file": (io.BytesIO(content.encode()), "answer.csv")},
                           content_type="multipart/form-data", headers={**headers[who], **extra})

    assert upload("auditor").status_code == 403
    assert client.post(url, data={}, content_type="multipart/form-data", headers=headers["maker"]).status_code == 422
    bad = upload("maker", "nothing,like,this\n")
    assert bad.status_code == 422
    assert bad.get_json()["errors"] == {"file": ["The header must be reference,status,reason."]}
    resp = upload("approver", **{"Idempotency-Key": "answer-1"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["paid"], body["failed"], body["returned"], body["unchanged"], body["errors"]) == (1, 1, 0, 0, 1)
    assert body["lines"][2] == {"line": 4, "reference": "po_x", "status": "paid", "outcome": "error",
                                "error": "not_in_file", "message": "No payout of this bank file has this reference."}
    assert row(session, own).status == PayoutStatus.PAID and row(session, theirs).status == PayoutStatus.FAILED
    replay = upload("approver", **{"Idempotency-Key": "answer-1"})
    assert replay.get_json() == body and replay.headers["Idempotent-Replayed"] == "true"
    again = upload("maker").get_json()
    assert (again["paid"], again["failed"], again["unchanged"]) == (0, 0, 2)
    assert client.post("/api/v1/payout-bank-files/pbf_unknown/statuses",
                       data={"file": (io.BytesIO(text.encode()), "a.csv")}, content_type="multipart/form-data",
                       headers=headers["maker"]).status_code == 404
    theirs_now = client.get(f"/api/v1/payouts/{theirs.public_id}", headers=headers["maker"]).get_json()
    assert (theirs_now["exception_status"], theirs_now["failure_message"]) == ("open", "户名不符")
    assert_books_balance(session)


def test_the_openapi_document_lists_the_payout_endpoints(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in ("/api/v1/payouts", "/api/v1/payouts/{payout_id}", "/api/v1/payouts/{payout_id}/approve",
                 "/api/v1/payouts/{payout_id}/resolve", "/api/v1/payouts/send", "/api/v1/payout-bank-files",
                 "/api/v1/payout-bank-files/{bank_file_id}", "/api/v1/payout-bank-files/{bank_file_id}/file.csv",
                 "/api/v1/payout-bank-files/{bank_file_id}/statuses"):
        assert path in paths, path
