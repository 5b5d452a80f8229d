"""The finance pages of aid programs: a program funded by two people, a batch uploaded, previewed, refused to
its maker, approved by another, paid and downloaded; rules, claw-backs, resuming, and who may see and do what."""

import csv
import datetime as dt
import html
import io
import re

import pytest
from sqlalchemy import select, update

from cards import service as cards
from core.models import Role
from payments import ledger
from payments.disbursement import service, views
from payments.disbursement.models import (
    BatchStatus,
    Disbursement,
    Funding,
    Program,
    PursePolicy,
)
from tests import factories as f
from tests.payments.conftest import program

BAD_ID = "640104198506151230"  # wrong check digit


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
    """POST a page form with the session's CSRF token."""
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **data})


def text_of(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def id_of(cipher, member):
    return cipher.decrypt(member.id_number_enc, "member.id_number")


def balance(session, code):
    return ledger.balance(session, code).posted


def upload(client, program_id, lines, header="id_number,amount,note", note="2026 冬季送温暖", encoding="utf-8"):
    body = ("\n".join([header, *lines]) + "\n").encode(encoding)
    return client.post("/finance/disbursements/new", content_type="multipart/form-data", data={
        "csrf_token": csrf(client.get("/")), "source": "csv", "program_id": program_id, "note": note,
        "file": (io.BytesIO(body), "winter.csv")})


def batch_id_from(resp) -> str:
    assert resp.status_code == 302, text_of(resp)
    return re.search(r"/finance/disbursements/(dsb_\w+)$", resp.headers["Location"]).group(1)


def test_a_program_is_funded_a_batch_previewed_approved_by_another_person_and_paid(client, session, cipher, dworld):
    users, people, tree = dworld["users"], dworld["people"], dworld["tree"]
    sign_in(client, users["maker"])
    assert 'href="/finance/programs/"' in client.get("/").get_data(as_text=True)  # the top bar's Finance link
    listing = client.get("/finance/programs/")
    assert listing.status_code == 200 and "New program" in text_of(listing)

    # The maker creates a program and enters a funding in yuan.
    created = post(client, "/finance/programs/", name="冬季送温暖", kind="hardship_aid", purse="general",
                   union_id=tree["yc"].public_id, max_line_amount="800")
    assert created.status_code == 302, text_of(created)
    program_id = re.search(r"/finance/programs/(prg_\w+)$", created.headers["Location"]).group(1)
    prg = session.scalar(select(Program).where(Program.public_id == program_id))
    assert (prg.name, prg.union_id, prg.max_line_amount, prg.purse) == ("冬季送温暖", tree["yc"].id, 80_000,
                                                                        PursePolicy.GENERAL)
    assert post(client, f"/finance/programs/{program_id}/fundings", amount="1,500.50", reference="ICBC-20261125-01",
                note="第一笔").status_code == 302
    funding = session.scalar(select(Funding).where(Funding.program_id == prg.id))
    assert (funding.amount, funding.reference, funding.status.value) == (150_050, "ICBC-20261125-01", "pending")
    page = text_of(client.get(f"/finance/programs/{program_id}"))
    assert "Waiting for approval" in page and "ICBC-20261125-01" in page and "¥1,500.50" in page
    assert f"/fundings/{funding.public_id}/approve" not in page  # a maker has no approve button
    assert post(client, f"/finance/programs/{program_id}/fundings/{funding.public_id}/approve").status_code == 403

    # An approver confirms it: the money is in the budget.
    sign_in(client, users["approver"])
    page = text_of(client.get(f"/finance/programs/{program_id}"))
    assert f"/fundings/{funding.public_id}/approve" in page
    done = post(client, f"/finance/programs/{program_id}/fundings/{funding.public_id}/approve")
    assert done.status_code == 302
    page = text_of(client.get(f"/finance/programs/{program_id}"))
    assert "Funding approved: ¥1,500.50 is in the budget." in page
    assert re.search(r'id="funded">¥1,500.50<', page) and re.search(r'id="available">¥1,500.50<', page)
    assert balance(session, prg.budget_account) == 150_050
    listing = text_of(client.get("/finance/programs/"))
    assert "<svg" in listing and 'id="programs-chart"' in listing and 'data-value="150050"' in listing
    assert "冬季送温暖" in listing

    # The maker uploads a CSV with a bad line; the page shows the preview by union and the bad line's reason.
    sign_in(client, users["maker"])
    form = text_of(client.get(f"/finance/disbursements/new?program_id={program_id}"))
    assert "card_number,amount[,note]" in form and "id_number,amount[,note]" in form and "50000 is ¥500.00" in form
    lines = [f"{id_of(cipher, people[0])},30000,慰问", f"{id_of(cipher, people[1])},20000,",
             f"{BAD_ID},10000,typo", f"{id_of(cipher, people[2])},20000,"]
    batch_id = batch_id_from(upload(client, program_id, lines))
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert "4 lines checked: 3 can be paid, 1 cannot." in page
    by_union = page[page.index('id="by-union"'):]
    assert tree["yc_base"].name in by_union and "¥700.00" in by_union[:by_union.index("</table>")]
    assert 'id="union-chart"' in page and 'data-value="70000"' in page
    reasons = page[page.index('id="reasons"'):]
    assert 'data-reason="invalid_id_number"' in reasons and "Invalid ID number" in reasons
    line3 = page[page.index('id="line-3"'):]
    assert "Not a valid ID number." in line3[:line3.index("</tr>")]
    assert 'id="approve"' not in page and "Waiting for an approver" in page

    # The maker cannot approve; an approver who entered a batch cannot approve it either, and is told why.
    assert post(client, f"/finance/disbursements/{batch_id}/approve").status_code == 403
    sign_in(client, users["approver2"])
    own_id = batch_id_from(upload(client, program_id, [f"{id_of(cipher, people[3])},100,"]))
    refused = post(client, f"/finance/disbursements/{own_id}/approve")
    assert refused.status_code == 302
    assert "The batch was entered by you: another approver must confirm it." in text_of(client.get(
        refused.headers["Location"]))
    assert session.scalar(select(Disbursement.status).where(Disbursement.public_id == own_id)) == BatchStatus.DRAFT

    # Another approver approves; the run (inline in tests) pays every valid line.
    sign_in(client, users["approver"])
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert 'id="approve"' in page and "Approve and pay ¥700.00" in page
    approved = post(client, f"/finance/disbursements/{batch_id}/approve")
    assert approved.status_code == 302
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert "Approved: ¥700.00 is reserved" in page and 'id="bar"' in page and '<span id="percent">100</span>' in page
    assert client.get(f"/finance/disbursements/{batch_id}/progress").get_json() == {
        "status": "completed", "total": 3, "processed": 3, "done": 3, "failed": 0, "done_amount": 70_000,
        "failed_amount": 0, "percent": 100, "stalled": False}
    for person, card, amount in zip(people[:3], dworld["cards"][:3], (30_000, 20_000, 20_000)):
        assert balance(session, cards.general_account(card.public_id)) == amount, person.name
    assert balance(session, prg.budget_account) == 150_050 - 70_000

    result = client.get(f"/finance/disbursements/{batch_id}/result.csv")
    assert result.status_code == 200 and result.mimetype == "text/csv"
    assert f'filename="{batch_id}-result.csv"' in result.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(result.get_data().decode("utf-8-sig"))))
    assert rows[0] == service.RESULT_HEADER and len(rows) == 1 + len(lines)
    assert {int(r[0]): r[3] for r in rows[1:]} == {1: "done", 2: "done", 3: "invalid", 4: "done"}
    assert all(BAD_ID not in ",".join(r) and id_of(cipher, people[0]) not in ",".join(r) for r in rows)
    program_page = text_of(client.get(f"/finance/programs/{program_id}"))
    assert re.search(r'id="disbursed">¥700.00<', program_page) and batch_id in program_page
    assert ledger.verify(session).ok


def test_an_approver_is_told_they_cannot_confirm_a_funding_they_entered(client, session, dworld):
    prg = program(session, dworld, funds=0)
    sign_in(client, dworld["users"]["approver"])
    assert post(client, f"/finance/programs/{prg.public_id}/fundings", amount="100", reference="B-1").status_code == 302
    funding = session.scalar(select(Funding).where(Funding.program_id == prg.id))
    resp = post(client, f"/finance/programs/{prg.public_id}/fundings/{funding.public_id}/approve")
    page = text_of(client.get(resp.headers["Location"]))
    assert "The funding was entered by you: another approver must confirm it." in page
    assert session.scalar(select(Funding.status).where(Funding.id == funding.id)).value == "pending"
    sign_in(client, dworld["users"]["approver2"])
    post(client, f"/finance/programs/{prg.public_id}/fundings/{funding.public_id}/reject")
    page = text_of(client.get(f"/finance/programs/{prg.public_id}"))
    assert "Funding rejected: nothing moved." in page and balance(session, prg.budget_account) == 0


def test_forms_say_what_is_wrong_next_to_the_field(client, session, dworld):
    prg = program(session, dworld, funds=0)
    sign_in(client, dworld["users"]["maker"])
    no_categories = post(client, "/finance/programs/", name="医疗互助", kind="medical_aid", purse="restricted",
                         union_id=dworld["tree"]["yc"].public_id, expires_on="2020-01-01")
    page = text_of(no_categories)
    assert no_categories.status_code == 422
    assert "A restricted purse names the merchant categories it may be spent at." in page
    assert "The expiry date has passed." in page and 'value="医疗互助"' in page  # the form keeps what was typed
    bad_limit = post(client, "/finance/programs/", name="x", kind="medical_aid", purse="general",
                     union_id=dworld["tree"]["yc"].public_id, max_line_amount="12.345")
    assert bad_limit.status_code == 422 and "Between ¥0.01 and ¥1,000,000.00." in text_of(bad_limit)
    bad_amount = post(client, f"/finance/programs/{prg.public_id}/fundings", amount="lots", reference="B")
    assert bad_amount.status_code == 422 and "Enter an amount in yuan" in text_of(bad_amount)
    no_file = post(client, "/finance/disbursements/new", source="csv", program_id=prg.public_id)
    assert no_file.status_code == 422 and "Choose a CSV file to upload." in text_of(no_file)
    bad_header = upload(client, prg.public_id, ["1,2"], header="name,amount")
    assert bad_header.status_code == 422 and "The header must be id_number,amount[,note]" in text_of(bad_header)
    # A file saved as GBK (Excel's default here): refused as a whole, or at the first line that is not UTF-8.
    short = upload(client, prg.public_id, [f"{BAD_ID},1,冬季"], encoding="gbk")
    assert short.status_code == 422 and "The file is not UTF-8 CSV." in text_of(short)
    long = upload(client, prg.public_id, [f"{BAD_ID},1,"] * 500 + [f"{BAD_ID},1,冬季"], encoding="gbk")
    assert long.status_code == 422 and re.search(r"Line \d+ is not UTF-8 text: save the file as CSV UTF-8",
                                                 text_of(long))
    assert session.scalar(select(Disbursement.id).where(Disbursement.program_id == prg.id)) is None
    assert client.get("/finance/disbursements/new?program_id=prg_nope").status_code == 404


def test_a_rule_batch_and_a_budget_too_small_for_it(client, session, cipher, dworld):
    prg = program(session, dworld, funds=50_000)
    from members import service as members

    for person in dworld["people"][:2]:
        members.set_hardship(session, f.PLATFORM, person.public_id, level=2, reason="因病致困",
                             valid_until=dt.date.today() + dt.timedelta(days=90))
    sign_in(client, dworld["users"]["maker"])
    resp = post(client, "/finance/disbursements/new", source="rule", program_id=prg.public_id,
                union_id=dworld["tree"]["yc_base"].public_id, hardship_min_level="2", amount="300")
    batch_id = batch_id_from(resp)
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert "every active member of 电力公司工会" in page and "hardship level 2 and above" in page
    assert "¥300.00 each" in page and "2 in all: 2 can be paid, 0 cannot" in page
    sign_in(client, dworld["users"]["approver"])
    post(client, f"/finance/disbursements/{batch_id}/approve")
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert "The program's budget holds ¥500.00, less than the batch's ¥600.00" in page
    assert 'id="batch-status">Draft</span>' in page
    too_much = post(client, "/finance/disbursements/new", source="rule", program_id=prg.public_id, amount="20000")
    assert too_much.status_code == 422 and "Between ¥0.01 and ¥10,000.00." in text_of(too_much)
    elsewhere = post(client, "/finance/disbursements/new", source="rule", program_id=prg.public_id, amount="1",
                     union_id=dworld["tree"]["gy"].public_id)
    assert elsewhere.status_code == 422 and "The union is outside the program's unions." in text_of(elsewhere)


def test_a_large_batch_needs_two_different_approvers_on_the_page(client, session, cipher, dworld, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISBURSEMENT_SECOND_APPROVAL_ABOVE", 10_000)
    prg = program(session, dworld)
    sign_in(client, dworld["users"]["maker"])
    batch_id = batch_id_from(upload(client, prg.public_id, [f"{id_of(cipher, dworld['people'][0])},20000,"]))
    sign_in(client, dworld["users"]["approver"])
    post(client, f"/finance/disbursements/{batch_id}/approve")
    page = text_of(client.get(f"/finance/disbursements/{batch_id}"))
    assert "First approval given" in page and "a second approver must approve too" in page
    assert 'id="batch-status">Draft</span>' in page
    post(client, f"/finance/disbursements/{batch_id}/approve")
    assert "a second, different approver must give the other" in text_of(client.get(f"/finance/disbursements/{batch_id}"))
    sign_in(client, dworld["users"]["approver2"])
    post(client, f"/finance/disbursements/{batch_id}/approve")
    assert client.get(f"/finance/disbursements/{batch_id}/progress").get_json()["status"] == "completed"


def test_a_draft_is_cancelled_and_a_stalled_run_is_resumed_from_its_page(client, session, cipher, dworld):
    prg = program(session, dworld)
    people = dworld["people"]
    sign_in(client, dworld["users"]["maker"])
    draft = batch_id_from(upload(client, prg.public_id, [f"{id_of(cipher, people[0])},100,"]))
    post(client, f"/finance/disbursements/{draft}/cancel")
    assert "The batch is cancelled" in text_of(client.get(f"/finance/disbursements/{draft}"))
    again = post(client, f"/finance/disbursements/{draft}/cancel")
    assert "The batch is no longer a draft." in text_of(client.get(again.headers["Location"]))

    stuck = batch_id_from(upload(client, prg.public_id, [f"{id_of(cipher, m)},100," for m in people]))
    service.approve_batch(session, dworld["a"]["approver"], stuck, second_approval_above=10**12)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    session.execute(update(Disbursement).where(Disbursement.public_id == stuck).values(approved_at=long_ago))
    session.commit()
    page = text_of(client.get(f"/finance/disbursements/{stuck}"))
    assert 'id="stalled"' in page and 'id="resume"' in page and 'data-stalled="yes"' in page
    assert client.get(f"/finance/disbursements/{stuck}/progress").get_json()["stalled"] is True
    post(client, f"/finance/disbursements/{stuck}/resume")
    page = text_of(client.get(f"/finance/disbursements/{stuck}"))
    assert "Paying goes on from the first line not paid yet." in page and 'id="stalled"' not in page
    assert client.get(f"/finance/disbursements/{stuck}/progress").get_json()["percent"] == 100
    post(client, f"/finance/disbursements/{stuck}/resume")
    assert "there is nothing to resume" in text_of(client.get(f"/finance/disbursements/{stuck}"))


def test_a_maker_asks_for_a_clawback_and_an_approver_carries_it_out(client, session, cipher, dworld):
    prg = program(session, dworld)
    member, card = dworld["people"][0], dworld["cards"][0]
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          io.BytesIO(f"id_number,amount\n{id_of(cipher, member)},10000\n".encode()),
                                          "b.csv", max_lines=10)
    service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
    service.run_batch(session, batch.public_id)
    sign_in(client, dworld["users"]["maker"])
    page = text_of(client.get(f"/finance/disbursements/{batch.public_id}"))
    assert "/lines/1/clawback" in page and "Paid (1)" in page
    empty = post(client, f"/finance/disbursements/{batch.public_id}/lines/1/clawback", reason=" ")
    assert "Say why the money is taken back" in text_of(client.get(empty.headers["Location"]))
    post(client, f"/finance/disbursements/{batch.public_id}/lines/1/clawback", reason="重复发放")
    page = text_of(client.get(f"/finance/disbursements/{batch.public_id}"))
    assert "重复发放" in page and "Claw-back of line 1 requested" in page and "approve-clawback" not in page
    twice = post(client, f"/finance/disbursements/{batch.public_id}/lines/1/clawback", reason="again")
    assert "already waiting for approval" in text_of(client.get(twice.headers["Location"]))
    clawback_id = re.search(r'id="clawback-(clb_\w+)"', page).group(1)
    sign_in(client, dworld["users"]["approver"])
    post(client, f"/finance/disbursements/{batch.public_id}/clawbacks/{clawback_id}/approve")
    page = text_of(client.get(f"/finance/disbursements/{batch.public_id}"))
    assert "Claw-back carried out: ¥100.00 went back" in page and "Carried out" in page
    assert balance(session, cards.general_account(card.public_id)) == 0
    assert balance(session, prg.budget_account) == 1_000_000
    assert ledger.verify(session).ok


def test_an_auditor_reads_every_page_but_changes_nothing(client, session, cipher, dworld):
    prg = program(session, dworld)
    batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                          io.BytesIO(f"id_number,amount\n{id_of(cipher, dworld['people'][0])},10\n"
                                                     .encode()), "b.csv", max_lines=10)
    sign_in(client, dworld["users"]["auditor"])
    assert 'href="/finance/programs/"' in client.get("/").get_data(as_text=True)
    reads = ["/finance/programs/", f"/finance/programs/{prg.public_id}", f"/finance/disbursements/{batch.public_id}",
             f"/finance/disbursements/{batch.public_id}/progress", f"/finance/disbursements/{batch.public_id}/result.csv"]
    for url in reads:
        assert client.get(url).status_code == 200, url
    page = text_of(client.get(f"/finance/disbursements/{batch.public_id}"))
    assert 'id="approve"' not in page and 'id="cancel"' not in page
    assert "New program" not in text_of(client.get("/finance/programs/"))
    assert client.get("/finance/disbursements/new").status_code == 403
    writes = ["/finance/programs/", f"/finance/programs/{prg.public_id}/fundings", "/finance/disbursements/new",
              f"/finance/disbursements/{batch.public_id}/approve", f"/finance/disbursements/{batch.public_id}/cancel",
              f"/finance/disbursements/{batch.public_id}/resume",
              f"/finance/disbursements/{batch.public_id}/lines/1/clawback",
              f"/finance/disbursements/{batch.public_id}/clawbacks/clb_x/approve",
              f"/finance/programs/{prg.public_id}/fundings/fnd_x/approve"]
    for url in writes:
        assert post(client, url, name="x", amount="1", reference="r").status_code == 403, url
    assert session.scalar(select(Disbursement.status).where(Disbursement.id == batch.id)) == BatchStatus.DRAFT


@pytest.mark.parametrize("who", ["admin", "member"])
def test_union_admins_and_members_get_403(client, session, cipher, dworld, who):
    prg = program(session, dworld, funds=0)
    user = dworld["users"]["admin"] if who == "admin" else f.user(session, Role.MEMBER, member=dworld["people"][0])
    sign_in(client, user)
    assert 'href="/finance/programs/"' not in client.get("/").get_data(as_text=True)
    for url in ("/finance/programs/", f"/finance/programs/{prg.public_id}", "/finance/disbursements/new"):
        assert client.get(url).status_code == 403, url
    assert post(client, "/finance/programs/", name="x").status_code == 403


def test_every_reason_and_refusal_of_the_service_has_words_on_the_page():
    assert set(views.REASONS) == set(service.ERRORS)
    assert set(service.ERRORS.values()) <= set(views.SERVICE_MESSAGES)
    assert views.parse_yuan("１,２００.５") == 120_050 and views.parse_yuan("0.07") == 7
    assert views.parse_yuan("1.234") is None and views.parse_yuan("-5") is None and views.parse_yuan("") is None


def test_my_card_names_the_aid_that_expires_within_thirty_days(client, session, cipher, dworld):
    member = dworld["people"][0]
    soon = program(session, dworld, purse=PursePolicy.RESTRICTED, name="医疗互助",
                          expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=20))
    later = program(session, dworld, purse=PursePolicy.RESTRICTED, name="金秋助学",
                           allowed_categories=["education"],
                           expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=60))
    spent = program(session, dworld, purse=PursePolicy.RESTRICTED, name="已花完",
                           expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    for prg, amount in ((soon, 12_000), (later, 5_000), (spent, 300)):
        batch = service.create_batch_from_csv(session, cipher, dworld["a"]["maker"], prg.public_id,
                                              io.BytesIO(f"id_number,amount\n{id_of(cipher, member)},{amount}\n"
                                                         .encode()), "b.csv", max_lines=10)
        service.approve_batch(session, dworld["a"]["approver"], batch.public_id, second_approval_above=10**12)
        service.run_batch(session, batch.public_id)
    spent_purse = cards.aid_account(dworld["cards"][0].public_id, spent.public_id)
    ledger.get_or_create_account(session, "test:shop", normal_side="credit", allow_negative=True)
    ledger.post(session, kind="payment", idempotency_key="spent-all",
                entries=[ledger.debit(spent_purse, 300), ledger.credit("test:shop", 300)])
    session.commit()
    sign_in(client, f.user(session, Role.MEMBER, member=member))
    page = text_of(client.get("/card/"))
    notice = page[page.index('id="expiring"'):page.index('id="card"')]
    day = soon.expires_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d")
    assert f"¥120.00 of 医疗互助 expires on {day}" in notice
    assert "金秋助学" not in notice and "已花完" not in notice
    assert page.index('id="expiring"') < page.index('id="card"')


def test_a_member_without_expiring_aid_sees_no_notice(client, session, cipher, dworld):
    member = dworld["people"][1]
    sign_in(client, f.user(session, Role.MEMBER, member=member))
    assert 'id="expiring"' not in client.get("/card/").get_data(as_text=True)
