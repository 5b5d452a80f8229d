"""Programs, fundings and batches: every kind of bad line, four eyes, budget, exactly once, expiry, claw-back."""

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import func, select, update

from cards import service as cards
from cards.numbers import new_card_number
from core.errors import Forbidden
from members.models import Member, MemberStatus
from payments import ledger
from payments.disbursement import service
from payments.disbursement.models import BatchStatus, Disbursement, DisbursementLine, LineStatus, PursePolicy
from tests import factories as f
from tests.payments.conftest import card_for, csv_file, program


def id_of(cipher, member):
    return cipher.decrypt(member.id_number_enc, "member.id_number")


def number_of(cipher, card):
    return cipher.decrypt(card.number_enc, cards.NUMBER_CONTEXT)


def balance(session, code):
    return ledger.balance(session, code).posted


def upload(client, dworld, prg, lines, header="id_number,amount,note", who="maker"):
    return client.post("/api/v1/disbursements", headers=dworld["h"][who], content_type="multipart/form-data",
                       data={"program_id": prg.public_id, "note": "2026 送温暖",
                             "file": (csv_file(lines, header), "batch.csv")})


def test_programs_and_fundings_need_two_people(client, session, dworld):
    resp = client.post("/api/v1/programs", headers=dworld["h"]["maker"], json={
        "name": "金秋助学", "kind": "student_aid", "purse": "restricted", "union_id": dworld["tree"]["yc"].public_id,
        "allowed_categories": ["education"], "expires_at": "2099-01-31T00:00:00+08:00"})
    assert resp.status_code == 201, resp.get_json()
    prg = resp.get_json()
    assert prg["id"].startswith("prg_") and prg["budget_account"] == f"program:{prg['id']}:budget"
    bad = client.post("/api/v1/programs", headers=dworld["h"]["maker"], json={
        "name": "x", "kind": "student_aid", "purse": "restricted", "union_id": dworld["tree"]["yc"].public_id})
    assert bad.status_code == 422 and {"allowed_categories", "expires_at"} <= set(bad.get_json()["errors"])
    fnd = client.post(f"/api/v1/programs/{prg['id']}/fundings", headers=dworld["h"]["maker"],
                      json={"amount": 500_000, "reference": "ICBC-20261125-01"})
    assert fnd.status_code == 201 and fnd.get_json()["status"] == "pending"
    fnd_id = fnd.get_json()["id"]
    assert client.post(f"/api/v1/fundings/{fnd_id}/approve", headers=dworld["h"]["maker"]).status_code == 403
    approved = client.post(f"/api/v1/fundings/{fnd_id}/approve", headers=dworld["h"]["approver"])
    assert approved.status_code == 200 and approved.get_json()["transaction_id"].startswith("txn_")
    assert client.post(f"/api/v1/fundings/{fnd_id}/approve", headers=dworld["h"]["approver2"]).status_code == 409
    detail = client.get(f"/api/v1/programs/{prg['id']}", headers=dworld["h"]["auditor"]).get_json()
    assert detail["figures"] == {"funded": 500_000, "available": 500_000, "reserved": 0, "disbursed": 0}
    assert balance(session, prg["budget_account"]) == 500_000


def test_an_approver_cannot_approve_a_funding_they_entered(session, dworld):
    prg = program(session, dworld, funds=0)
    funding = service.create_funding(session, dworld["a"]["approver"], prg.public_id, amount=10, currency="CNY",
                                     reference="r")
    with pytest.raises(Forbidden) as exc:
        service.approve_funding(session, dworld["a"]["approver"], funding.public_id)
    assert exc.value.code == "same_person"


def test_a_batch_reports_every_kind_of_bad_line_before_anything_moves(client, session, cipher, dworld):
    prg = program(session, dworld, max_line_amount=100_000)
    people, tree = dworld["people"], dworld["tree"]
    no_card = f.member(session, cipher, tree["yc_base"], "无卡")
    lost = f.member(session, cipher, tree["yc_base"], "挂失")
    card_for(session, cipher, lost, "lost")
    left = f.member(session, cipher, tree["yc_base"], "离会")
    card_for(session, cipher, left)
    session.execute(update(Member).where(Member.id == left.id).values(status=MemberStatus.LEFT))
    outsider = f.member(session, cipher, tree["gy_base"], "外地")
    card_for(session, cipher, outsider)
    session.commit()
    lines = [
        f"{id_of(cipher, people[0])},50000,ok",
        f"{id_of(cipher, people[1])},20000,",
        "640104198506151230,100,bad check digit",
        f"{id_of(cipher, people[2])},12.5,fraction",
        f"{id_of(cipher, people[3])},100001,over the limit",
        f"{id_of(cipher, people[3])},0,zero",
        f.unique_id_number() + ",100,nobody",
        f"{id_of(cipher, people[0])},100,again",
        f"{id_of(cipher, left)},100,left the union",
        f"{id_of(cipher, outsider)},100,another city",
        f"{id_of(cipher, no_card)},100,no card",
        f"{id_of(cipher, lost)},100,lost card",
    ]
    resp = upload(client, dworld, prg, lines)
    assert resp.status_code == 201, resp.get_json()
    batch = resp.get_json()
    assert batch["status"] == "draft" and batch["total_lines"] == 12
    assert (batch["valid_lines"], batch["invalid_lines"], batch["amount"]) == (2, 10, 70_000)
    assert batch["errors"] == {"invalid_id_number": 1, "invalid_amount": 1, "amount_out_of_range": 2,
                               "unknown_member": 1, "duplicate_line": 1, "not_eligible": 2, "no_active_card": 2}
    assert batch["by_union"] == [{"union_id": tree["yc_base"].public_id, "name": tree["yc_base"].name, "lines": 2,
                                  "amount": 70_000}]
    invalid = client.get(f"/api/v1/disbursements/{batch['id']}/lines?status=invalid",
                         headers=dworld["h"]["maker"]).get_json()["data"]
    by_line = {line["line"]: line["error"] for line in invalid}
    assert by_line == {3: "invalid_id_number", 4: "invalid_amount", 5: "amount_out_of_range",
                       6: "amount_out_of_range", 7: "unknown_member", 8: "duplicate_line", 9: "not_eligible",
                       10: "not_eligible", 11: "no_active_card", 12: "no_active_card"}
    assert all(line["message"] for line in invalid)
    # Nothing has moved yet.
    assert balance(session, cards.general_account(dworld["cards"][0].public_id)) == 0
    assert balance(session, prg.budget_account) == 1_000_000


def test_card_numbers_work_and_a_replaced_cards_number_pays_the_new_card(client, session, cipher, dworld):
    prg = program(session, dworld)
    old = dworld["cards"][0]
    number = number_of(cipher, old)
    new = cards.replace_card(session, cipher, f.PLATFORM, old.public_id, prefix="880064")
    unknown = new_card_number("880064")
    typo = unknown[:-1] + str((int(unknown[-1]) + 1) % 10)
    lines = [f"{number},3000,", f"{number_of(cipher, dworld['cards'][1])},4000,", f"{unknown},1,", f"{typo},1,"]
    batch = upload(client, dworld, prg, lines, header="card_number,amount,note").get_json()
    assert (batch["valid_lines"], batch["errors"]) == (2, {"invalid_card_number": 1, "unknown_card": 1})
    resp = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver"])
    assert resp.status_code == 200 and resp.get_json()["status"] == "completed", resp.get_json()
    assert balance(session, cards.general_account(new.public_id)) == 3000
    assert balance(session, cards.general_account(dworld["cards"][1].public_id)) == 4000


def test_approval_is_four_eyes_refuses_over_budget_and_runs_once(client, session, cipher, dworld):
    prg = program(session, dworld, funds=60_000)
    people = dworld["people"]
    batch = upload(client, dworld, prg, [f"{id_of(cipher, m)},20000,冬季慰问" for m in people]).get_json()
    assert batch["amount"] == 80_000
    assert client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["maker"]).status_code == 403
    over = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver"])
    assert over.status_code == 422 and over.get_json()["error"] == "insufficient_budget"
    assert balance(session, prg.budget_account) == 60_000
    assert session.scalar(select(Disbursement.status).where(Disbursement.public_id == batch["id"])) == BatchStatus.DRAFT
    funding = service.create_funding(session, dworld["a"]["maker"], prg.public_id, amount=40_000, currency="CNY",
                                     reference="top-up")
    service.approve_funding(session, dworld["a"]["approver"], funding.public_id)
    done = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver"])
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert (body["status"], body["done_lines"], body["failed_lines"], body["done_amount"]) == ("completed", 4, 0,
                                                                                               80_000)
    again = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver2"])
    assert again.status_code == 409
    for card in dworld["cards"]:
        assert balance(session, cards.general_account(card.public_id)) == 20_000
    assert balance(session, prg.budget_account) == 20_000
    assert balance(session, service.reserve_account(batch["id"])) == 0
    line = client.get(f"/api/v1/cards/{dworld['cards'][0].public_id}/transactions",
                      headers=dworld["h"]["auditor"]).get_json()["data"][0]
    assert (line["kind"], line["amount"], line["description"]) == ("disbursement", 20_000, "送温暖")
    detail = client.get(f"/api/v1/programs/{prg.public_id}", headers=dworld["h"]["auditor"]).get_json()["figures"]
    assert detail == {"funded": 100_000, "available": 20_000, "reserved": 0, "disbursed": 80_000}
    result = client.get(f"/api/v1/disbursements/{batch['id']}/result.csv", headers=dworld["h"]["auditor"])
    rows = list(csv.reader(io.StringIO(result.data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["line", "reference", "amount", "status"] and len(rows) == 5
    assert {r[3] for r in rows[1:]} == {"done"} and all("*" in r[1] for r in rows[1:])
    assert ledger.verify(session).ok


def test_large_batches_need_a_second_different_approver(client, session, cipher, dworld, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISBURSEMENT_SECOND_APPROVAL_ABOVE", 10_000)
    prg = program(session, dworld)
    batch = upload(client, dworld, prg, [f"{id_of(cipher, dworld['people'][0])},20000,"]).get_json()
    first = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver"]).get_json()
    assert (first["status"], first["approvals"], first["approvals_needed"]) == ("draft", 1, 2)
    same = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver"])
    assert same.status_code == 403 and same.get_json()["error"] == "same_person"
    second = client.post(f"/api/v1/disbursements/{batch['id']}/approve", headers=dworld["h"]["approver2"])
    assert second.get_json()["status"] == "completed"


def test_a_card_cancelled_after_approval_fails_its_line_and_the_money_stays_in_the_budget(session, cipher, dworld):
    prg = program(session, dworld)
    people, card_list = dworld["people"], dworld["cards"]
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          csv_file([f"{id_of(cipher, m)},1000," for m in people[:3]]), "b.csv",
                                          max_lines=100)
    service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
    assert balance(session, prg.budget_account) == 1_000_000 - 3000
    cards.change_state(session, f.PLATFORM, card_list[1].public_id, "cancel")
    done = service.run_batch(session, batch.public_id, chunk=2)
    assert (done.status, done.done_lines, done.failed_lines, done.returned_amount) == (BatchStatus.COMPLETED, 2, 1, 1000)
    assert balance(session, prg.budget_account) == 1_000_000 - 2000
    failed = session.scalar(select(DisbursementLine).where(DisbursementLine.disbursement_id == done.id,
                                                           DisbursementLine.status == LineStatus.FAILED))
    assert failed.line_no == 2 and failed.error_code == "card_not_usable"
    assert ledger.verify(session).ok


def test_a_run_that_crashes_midway_resumes_and_pays_each_line_once(session, cipher, dworld, monkeypatch):
    prg = program(session, dworld)
    more = [f.member(session, cipher, dworld["tree"]["yc_base"], f"补充{i}") for i in range(5)]
    for m in more:
        card_for(session, cipher, m)
    everyone = dworld["people"] + more
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          csv_file([f"{id_of(cipher, m)},{100 + n}," for n, m in enumerate(everyone)]),
                                          "b.csv", max_lines=100)
    service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
    real, calls = service.post_credits, []

    def crash_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("worker lost its database")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "post_credits", crash_on_third_chunk)
    with pytest.raises(ConnectionError):
        service.run_batch(session, batch.public_id, chunk=2)
    stopped = service.get_batch(session, batch.public_id)
    assert (stopped.status, stopped.done_lines) == (BatchStatus.FAILED, 4) and service.stalled(stopped)
    monkeypatch.setattr(service, "post_credits", real)
    service.run_batch(session, batch.public_id, chunk=2)
    service.run_batch(session, batch.public_id, chunk=2)  # run twice: nothing more happens
    done = service.get_batch(session, batch.public_id)
    assert (done.status, done.done_lines, done.done_amount) == (BatchStatus.COMPLETED, 9,
                                                                 sum(100 + n for n in range(9)))
    for n, m in enumerate(everyone):
        card = cards.live_card_of(session, m.id)
        entries = session.scalar(select(func.count(ledger.Entry.id)).join(ledger.Account).where(
            ledger.Account.code == cards.general_account(card.public_id)))
        assert entries == 1 and balance(session, cards.general_account(card.public_id)) == 100 + n
    assert ledger.verify(session).ok


def test_a_rule_pays_the_hardship_register_of_a_city(client, session, cipher, dworld):
    prg = program(session, dworld, union="fed")
    people = dworld["people"]
    from members import service as members

    today = dt.date.today()
    for m, level in ((people[0], 3), (people[1], 2), (people[2], 1)):
        members.set_hardship(session, f.PLATFORM, m.public_id, level=level, reason="因病致困",
                             valid_until=today + dt.timedelta(days=90))
    gy = f.member(session, cipher, dworld["tree"]["gy_base"], "固原困难职工")
    card_for(session, cipher, gy)
    members.set_hardship(session, f.PLATFORM, gy.public_id, level=3, reason="因灾致困",
                         valid_until=today + dt.timedelta(days=90))
    resp = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"], json={
        "program_id": prg.public_id, "rule": {"amount": 50_000, "union_id": dworld["tree"]["yc"].public_id,
                                              "hardship_min_level": 2}})
    assert resp.status_code == 201, resp.get_json()
    batch = resp.get_json()
    assert (batch["source"], batch["total_lines"], batch["valid_lines"], batch["amount"]) == ("rule", 2, 2, 100_000)
    bad = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"],
                      json={"program_id": prg.public_id, "rule": {"amount": -5}})
    assert bad.status_code == 422


def test_a_rule_with_invalid_fields_is_refused_with_one_list_of_texts_per_field(client, session, dworld):
    prg = program(session, dworld)
    resp = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"], json={
        "program_id": prg.public_id, "rule": {"amount": 5, "hardship_min_level": -1, "union_id": ""}})
    assert resp.status_code == 422
    errors = resp.get_json()["errors"]
    assert list(errors) == ["rule"] and isinstance(errors["rule"], list) and len(errors["rule"]) == 2
    assert all(isinstance(text, str) for text in errors["rule"])
    assert any(text.startswith("hardship_min_level: ") for text in errors["rule"])


def test_restricted_aid_lands_in_its_own_purse_and_expires_back_to_the_budget(client, session, cipher, dworld):
    prg = program(session, dworld, purse=PursePolicy.RESTRICTED, name="医疗互助")
    member, card = dworld["people"][0], dworld["cards"][0]
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          csv_file([f"{id_of(cipher, member)},12000,"]), "b.csv", max_lines=10)
    service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
    service.run_batch(session, batch.public_id)
    purses = client.get(f"/api/v1/cards/{card.public_id}/balances", headers=dworld["h"]["auditor"]).get_json()["data"]
    aid = next(p for p in purses if p["program_id"] == prg.public_id)
    assert (aid["purse"], aid["amount"], aid["allowed_categories"]) == ("restricted", 12000, ["medical", "pharmacy"])
    assert aid["expires_at"] is not None
    soon = service.expiring_soon(session, member.id, within=dt.timedelta(days=90))
    assert soon == [("医疗互助", 12000, prg.expires_at)]
    # Nothing expires before its day; after it, the sweep returns the money and closes the purse.
    assert service.sweep_expired(session) == 0
    assert service.sweep_expired(session, now=prg.expires_at + dt.timedelta(seconds=1)) == 1
    code = cards.aid_account(card.public_id, prg.public_id)
    assert balance(session, code) == 0 and ledger.get_account(session, code).status == ledger.AccountStatus.CLOSED
    swept = ledger.statement(session, [code], limit=1, cursor=None, newest_first=True).lines[0]
    assert (swept.kind, swept.metadata["description"]) == ("purse_expiry", "医疗互助")  # the member's statement says which aid
    assert balance(session, prg.budget_account) == 1_000_000
    assert service.sweep_expired(session, now=prg.expires_at + dt.timedelta(days=1)) == 0
    assert ledger.verify(session).ok


def test_a_clawback_takes_back_only_what_is_unspent(client, session, cipher, dworld):
    prg = program(session, dworld)
    member, card = dworld["people"][0], dworld["cards"][0]
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          csv_file([f"{id_of(cipher, member)},10000,"]), "b.csv", max_lines=10)
    service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
    service.run_batch(session, batch.public_id)
    purse = cards.general_account(card.public_id)
    ledger.get_or_create_account(session, "test:shop", normal_side="credit", allow_negative=True)
    ledger.post(session, kind="payment", idempotency_key="spent-some",
                entries=[ledger.debit(purse, 3500), ledger.credit("test:shop", 3500)])
    session.commit()
    asked = client.post(f"/api/v1/disbursements/{batch.public_id}/lines/1/clawbacks", headers=dworld["h"]["maker"],
                        json={"reason": "重复发放"})
    assert asked.status_code == 201, asked.get_json()
    clb = asked.get_json()["id"]
    assert client.post(f"/api/v1/disbursements/{batch.public_id}/lines/1/clawbacks", headers=dworld["h"]["maker"],
                       json={"reason": "again"}).status_code == 409
    assert client.post(f"/api/v1/clawbacks/{clb}/approve", headers=dworld["h"]["maker"]).status_code == 403
    done = client.post(f"/api/v1/clawbacks/{clb}/approve", headers=dworld["h"]["approver"]).get_json()
    assert (done["status"], done["amount_taken"]) == ("approved", 6500)
    assert balance(session, purse) == 0
    assert balance(session, prg.budget_account) == 1_000_000 - 10000 + 6500
    assert client.post(f"/api/v1/clawbacks/{clb}/approve", headers=dworld["h"]["approver2"]).status_code == 409
    assert ledger.verify(session).ok


def test_bad_uploads_are_refused_clearly(client, session, dworld):
    prg = program(session, dworld, funds=0)
    for data, expect in ((b"", "empty"), (b"name,amount\nx,1\n", "header"), (b"\xff\xfe\x00bad", "UTF-8")):
        resp = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"], content_type="multipart/form-data",
                           data={"program_id": prg.public_id, "file": (io.BytesIO(data), "b.csv")})
        assert resp.status_code == 422 and expect in str(resp.get_json()["errors"]), resp.get_json()
    missing = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"], content_type="multipart/form-data",
                          data={"program_id": prg.public_id})
    assert missing.status_code == 422
    assert client.post("/api/v1/disbursements", headers=dworld["h"]["maker"], data="x",
                       content_type="text/plain").status_code == 400
    unknown = client.post("/api/v1/disbursements", headers=dworld["h"]["maker"],
                          json={"program_id": "prg_nope", "rule": {"amount": 5}})
    assert unknown.status_code == 404
    assert session.scalar(select(func.count(Disbursement.id)).where(Disbursement.program_id == prg.id)) == 0


def test_only_finance_sees_and_runs_disbursements(client, session, dworld):
    prg = program(session, dworld, funds=0)
    assert client.get("/api/v1/programs", headers=dworld["h"]["admin"]).status_code == 403
    assert client.get(f"/api/v1/programs/{prg.public_id}", headers=dworld["h"]["auditor"]).status_code == 200
    assert client.post("/api/v1/programs", headers=dworld["h"]["auditor"], json={}).status_code == 403
