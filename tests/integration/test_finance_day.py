"""A finance day end to end, as finance and merchants meet it over the API: a day of payments and refunds
at three bank-paid merchants and one paid through Stripe Connect, settled; a settlement re-run that
changes nothing; payouts through both providers (Stripe against the local Stripe-shaped server, its
webhooks signed); a failed bank payout returned to the merchant and paid again with the next settlement;
then the bank statement reconciled (a clean match, a missing line, an extra line, an amount mismatch,
each found) and Stripe's balance transactions matched through the API; the books balance throughout."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from core.auth import Actor
from core.i18n import business_date
from core.models import Role
from payments import accounts, ledger
from payments.checkout import service as checkout
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from payments.ledger.models import Transaction
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, fund, guard
from tests.payouts.conftest import make_stripe_merchant, stripe_account
from tests.settlement.conftest import at

TODAY = business_date()
DAY = TODAY - dt.timedelta(days=2)  # settled, its payouts due yesterday
NEXT = TODAY - dt.timedelta(days=1)  # the day after: closed too


@pytest.fixture
def day(session, cipher, app, stripe_server, stripe_app_config):
    tree = f.org_tree(session)
    member = f.member(session, cipher, tree["yc_base"], "赵敏")
    member_user = f.user(session, Role.MEMBER, member=member)
    card = card_with_pin(session, cipher, app, member, member_user)
    fund(session, card, 1_000_000)
    shop = f.merchant(session, cipher, "好味餐厅")
    pharmacy = f.merchant(session, cipher, "仁心药房", category="pharmacy")
    books = f.merchant(session, cipher, "书香书店", category="culture_sport")
    market = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server), "金凤超市")
    users = {"maker": f.user(session, Role.FINANCE_MAKER), "approver": f.user(session, Role.FINANCE_APPROVER),
             "auditor": f.user(session, Role.AUDITOR),
             "shop_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id),
             "books_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=books.id)}
    member_actor = Actor.of(member_user)

    def pay(merchant, amount, when):
        payment, _ = checkout.pay(session, member_actor, checkout.PayRequest(
            store_id=merchant.stores[0].public_id, amount=amount, card_id=card.public_id, pin=PIN),
            codes=None, pins=guard(app), max_amount=10**7, now=when)
        return payment

    dinner = pay(shop, 10_000, at(DAY, 12))
    pay(shop, 5_000, at(DAY, 18))
    pay(shop, 2_500, at(DAY, 23, 50))
    checkout.refund(session, Actor.of(users["shop_owner"]), dinner.public_id, amount=1_500, now=at(DAY, 20))
    pay(pharmacy, 4_000, at(DAY, 9))
    pay(books, 6_000, at(DAY, 15))
    pay(market, 8_000, at(DAY, 10))
    pay(market, 2_000, at(DAY, 11))
    pay(books, 1_000, at(NEXT, 10))
    # A funding from the union's bank account, which the bank statement shows arriving.
    program = disbursement.create_program(session, Actor.of(users["maker"]), name="金秋助学",
                                          kind=ProgramKind.STUDENT_AID, purse=PursePolicy.GENERAL,
                                          union_id=tree["fed"].public_id)
    funding = disbursement.create_funding(session, Actor.of(users["maker"]), program.public_id, amount=300_000,
                                          currency="CNY", reference="BOC-20261124-0007")
    disbursement.approve_funding(session, Actor.of(users["approver"]), funding.public_id)
    return {"shop": shop, "pharmacy": pharmacy, "books": books, "market": market, "funding": funding,
            "h": {name: f.bearer(session, u) for name, u in users.items()}}


def transactions(session) -> int:
    return session.scalar(select(func.count()).select_from(Transaction))


def books_ok(client, h) -> None:
    report = client.get("/api/v1/ledger/verify", headers=h["auditor"]).get_json()
    assert report["ok"], report["problems"]


def upload(client, headers, url, text, **form):
    return client.post(url, headers=headers, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(text.encode()), "file.csv"), **form})


def test_a_day_settled_paid_out_through_both_providers_and_reconciled(client, session, stripe_server, day):
    h, w = day["h"], day
    by_merchant = {w[k].public_id: k for k in ("shop", "pharmacy", "books", "market")}

    # Settlement, and a re-run that changes nothing.
    settled = client.post("/api/v1/settlements", json={"business_date": DAY.isoformat()}, headers=h["maker"])
    assert settled.status_code == 201, settled.get_json()
    nets = {by_merchant[x["merchant_id"]]: x["net"] for x in settled.get_json()["data"]}
    assert nets == {"shop": 16_000, "pharmacy": 4_000, "books": 6_000, "market": 10_000}
    moved, in_transit = transactions(session), ledger.balance(session, accounts.IN_TRANSIT).posted
    again = client.post("/api/v1/settlements", json={"business_date": DAY.isoformat()}, headers=h["approver"])
    assert again.get_json()["created"] == 0 and transactions(session) == moved
    assert ledger.balance(session, accounts.IN_TRANSIT).posted == in_transit
    books_ok(client, h)

    # Payouts: finance sees them all, a merchant only its own.
    payouts = {by_merchant[p["merchant_id"]]: p for p in
               client.get("/api/v1/payouts?status=ready", headers=h["maker"]).get_json()["data"]
               if p["merchant_id"] in by_merchant}
    assert {k: p["amount"] for k, p in payouts.items()} == nets
    own = client.get("/api/v1/payouts", headers=h["shop_owner"]).get_json()["data"]
    assert [p["id"] for p in own] == [payouts["shop"]["id"]]
    assert client.get(f"/api/v1/payouts/{payouts['books']['id']}", headers=h["shop_owner"]).status_code == 404

    # Stripe: the transfer and the connected account's payout, then its signed payout.paid event.
    sent = client.post("/api/v1/payouts/send", headers=h["maker"])
    assert sent.status_code == 200 and sent.get_json()["sent"] == 1, sent.get_json()
    market = client.get(f"/api/v1/payouts/{payouts['market']['id']}", headers=h["maker"]).get_json()
    assert market["status"] == "submitted" and market["stripe_transfer_id"].startswith("tr_")
    event = stripe_server.pay_payout(market["stripe_payout_id"])
    payload, headers = stripe_server.delivery(event)
    for _ in range(2):  # delivered twice: processed once
        assert client.post("/api/v1/webhooks/stripe", data=payload, headers=headers).status_code == 200
    assert client.get(f"/api/v1/payouts/{payouts['market']['id']}", headers=h["maker"]).get_json()["status"] == "paid"

    # The bank file: full account numbers in the file, masked in the API; the bank's answer, one failure.
    made = client.post("/api/v1/payout-bank-files", headers=h["maker"])
    assert made.status_code == 201, made.get_json()
    bank_file = made.get_json()["id"]
    content = client.get(f"/api/v1/payout-bank-files/{bank_file}/file.csv", headers=h["approver"]).get_data(
        as_text=True)
    assert all(payouts[k]["id"] in content for k in ("shop", "pharmacy", "books"))
    assert "6222020200112233" in content and "6222020200112233" not in made.get_data(as_text=True)
    answer = (f"reference,status,reason\n{payouts['shop']['id']},paid,\n{payouts['pharmacy']['id']},paid,\n"
              f"{payouts['books']['id']},failed,账户已销户\n")
    answered = upload(client, h["maker"], f"/api/v1/payout-bank-files/{bank_file}/statuses", answer)
    assert answered.status_code == 200, answered.get_json()
    failed = client.get(f"/api/v1/payouts/{payouts['books']['id']}", headers=h["maker"]).get_json()
    assert failed["status"] == "failed" and failed["exception_status"] == "open"
    assert ledger.balance(session, w["books"].payable_account).posted == 6_000 + 1_000  # back, plus NEXT's sale
    books_ok(client, h)

    # Finance resolves the exception (new account details); the next settlement pays it again with NEXT's sale.
    resolved = client.post(f"/api/v1/payouts/{payouts['books']['id']}/resolve", headers=h["maker"],
                           json={"note": "商户已更新收款账户"})
    assert resolved.status_code == 200 and resolved.get_json()["exception_status"] == "resolved"
    nxt = client.post("/api/v1/settlements", json={"business_date": NEXT.isoformat()}, headers=h["maker"])
    books_next = next(x for x in nxt.get_json()["data"] if x["merchant_id"] == w["books"].public_id)
    assert (books_next["carried_in"], books_next["net"]) == (6_000, 7_000)
    second = client.post("/api/v1/payout-bank-files", headers=h["maker"]).get_json()
    assert [p["id"] for p in second["payouts"]] == [books_next["payout_id"]]
    upload(client, h["maker"], f"/api/v1/payout-bank-files/{second['id']}/statuses",
           f"reference,status,reason\n{books_next['payout_id']},paid,\n")

    # The bank statement: the shop's payout exact, the pharmacy's with another amount, the books' second
    # payout missing, a line nobody knows, and the funding arriving.
    statement = ("date,reference,amount,currency,description\n"
                 f"{TODAY},{payouts['shop']['id']},16000,CNY,好味餐厅结算\n"
                 f"{TODAY},{payouts['pharmacy']['id']},3990,CNY,仁心药房结算\n"
                 f"{TODAY},WIRE-UNKNOWN-88,777,CNY,unknown transfer\n"
                 f"{DAY},BOC-20261124-0007,-300000,CNY,金秋助学拨款\n")
    rec = upload(client, h["maker"], "/api/v1/reconciliations", statement, source="bank")
    assert rec.status_code == 201, rec.get_json()
    body = rec.get_json()
    assert body["id"].startswith("rec_")
    assert (body["matched"], body["mismatched"], body["unmatched_external"]) == (2, 1, 1)
    assert body["unmatched_internal"] == 1
    states = {line.get("reference"): line["state"] for line in body["lines"]}
    assert states[payouts["shop"]["id"]] == "matched" and states["BOC-20261124-0007"] == "matched"
    assert states[payouts["pharmacy"]["id"]] == "mismatched" and states["WIRE-UNKNOWN-88"] == "unmatched_external"
    missing = [item["id"] for line in body["lines"] if line["state"] == "unmatched_internal"
               for item in line["items"]]
    assert books_next["payout_id"] in missing
    # The failed payout is not expected on the statement: its money came back.
    assert payouts["books"]["id"] not in missing

    # Stripe's side through its API: the transfer to the market's account matches its payout.
    stripe_rec = client.post("/api/v1/reconciliations", headers=h["maker"], json={
        "source": "stripe", "since": DAY.isoformat(), "until": TODAY.isoformat()})
    assert stripe_rec.status_code == 201, stripe_rec.get_json()
    transfer_lines = [x for x in stripe_rec.get_json()["lines"] if x.get("type") == "transfer"]
    assert [x["state"] for x in transfer_lines] == ["matched"]
    assert [i["id"] for i in transfer_lines[0]["items"]] == [payouts["market"]["id"]]

    # Reconciliation is finance's: a merchant is refused.
    assert client.get(f"/api/v1/reconciliations/{body['id']}", headers=h["shop_owner"]).status_code == 403
    books_ok(client, h)
