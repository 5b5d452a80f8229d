"""Paying at a merchant: both ways in, offers applied, purses drawn in order, limits, budgets, idempotency."""

import datetime as dt

import pytest
from sqlalchemy import func, select

from cards import service as cards
from merchants.models import StoreStatus
from payments import ledger
from payments.checkout.models import Payment
from tests.checkout.conftest import PIN, balance, fund, funded_program, make_offer, payment_code


def pay_by_code(client, world, amount, *, who="cashier", store=None, key=None, card=None):
    code = payment_code(client, world, card=card, who="member" if card is None else "other_member")
    headers = dict(world["h"][who])
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/payments", headers=headers,
                       json={"store_id": (store or world["store"]).public_id, "amount": amount, "currency": "CNY",
                             "payment_code": code})


def pay_by_pin(client, world, amount, *, pin=PIN, store=None, key=None):
    headers = dict(world["h"]["member"])
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/payments", headers=headers,
                       json={"store_id": (store or world["store"]).public_id, "amount": amount,
                             "card_id": world["card"].public_id, "pin": pin})


def verify_ok(session):
    report = ledger.verify(session)
    assert report.ok, report.problems


def test_a_cashier_scanning_the_members_code_charges_the_card_and_credits_the_merchant(client, session, world):
    general = fund(session, world["card"], 10_000)
    resp = pay_by_code(client, world, 2_350)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["id"].startswith("pay_")
    assert (body["amount"], body["discount"], body["charged"], body["status"]) == (2_350, 0, 2_350, "completed")
    assert body["offer_id"] is None and body["funding"] == {"merchant": 0, "union": 0, "program_id": None}
    assert body["purses"] == [{"purse": "general", "program_id": None, "amount": 2_350, "refunded": 0}]
    assert body["store_id"] == world["store"].public_id and body["method"] == "payment_code"
    assert balance(session, general) == 7_650
    assert balance(session, world["shop"].payable_account) == 2_350
    verify_ok(session)


def test_the_member_pays_at_the_store_qr_with_the_pin_and_a_wrong_pin_charges_nothing(client, session, world):
    general = fund(session, world["card"], 5_000)
    wrong = pay_by_pin(client, world, 1_000, pin="111111")
    assert wrong.status_code == 422 and wrong.get_json()["error"] == "wrong_pin"
    assert balance(session, general) == 5_000
    ok = pay_by_pin(client, world, 1_000)
    assert ok.status_code == 201, ok.get_json()
    assert ok.get_json()["method"] == "pin" and ok.get_json()["charged"] == 1_000
    assert balance(session, general) == 4_000


def test_a_merchant_funded_percent_offer_is_applied_and_the_merchant_bears_it(client, session, world):
    general = fund(session, world["card"], 10_000)
    offer = make_offer(session, merchant=world["shop"], kind="percent_off", value=1200, max_discount=500)
    body = pay_by_code(client, world, 1_999).get_json()
    assert (body["discount"], body["charged"], body["offer_id"]) == (240, 1_759, offer.public_id)
    assert body["funding"] == {"merchant": 240, "union": 0, "program_id": None}
    assert balance(session, general) == 10_000 - 1_759
    assert balance(session, world["shop"].payable_account) == 1_759
    capped = pay_by_code(client, world, 6_000).get_json()
    assert (capped["discount"], capped["charged"]) == (500, 5_500)
    verify_ok(session)


def test_a_union_funded_offer_pays_the_merchant_its_discount_from_the_program_budget(client, session, world):
    fund(session, world["card"], 10_000)
    program = funded_program(session, world["users"], world["tree"]["yc"], amount=100_000)
    make_offer(session, merchant=world["shop"], kind="amount_off", value=1_000, min_spend=5_000, funding="union",
               program_id=program.public_id)
    small = pay_by_code(client, world, 4_999).get_json()
    assert small["discount"] == 0 and small["pricing_notes"][0]["reason"] == "below_min_spend"
    body = pay_by_code(client, world, 5_000).get_json()
    assert (body["discount"], body["charged"]) == (1_000, 4_000)
    assert body["funding"] == {"merchant": 0, "union": 1_000, "program_id": program.public_id}
    assert balance(session, program.budget_account) == 100_000 - 1_000
    assert balance(session, world["shop"].payable_account) == 4_999 + 5_000
    verify_ok(session)


def test_a_split_offer_shares_the_discount_half_up(client, session, world):
    fund(session, world["card"], 10_000)
    program = funded_program(session, world["users"], world["tree"]["yc"], amount=100_000)
    make_offer(session, merchant=world["shop"], kind="percent_off", value=1000, funding="split",
               union_share_bp=3333, program_id=program.public_id)
    body = pay_by_code(client, world, 3_005).get_json()
    assert body["discount"] == 301  # 10 % of 3,005 = 300.5 -> 301
    assert body["funding"]["union"] == 100 and body["funding"]["merchant"] == 201  # 33.33 % of 301 = 100.3
    assert balance(session, program.budget_account) == 100_000 - 100
    verify_ok(session)


def test_restricted_aid_is_spent_first_where_allowed_and_never_elsewhere(client, session, world):
    program = funded_program(session, world["users"], world["tree"]["yc"], name="医疗互助")
    general = fund(session, world["card"], 5_000)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10)
    aid = fund(session, world["card"], 3_000, program_id=program.public_id, categories=["pharmacy", "medical"],
               expires_at=soon)
    at_restaurant = pay_by_code(client, world, 2_000).get_json()
    assert [p["purse"] for p in at_restaurant["purses"]] == ["general"]
    assert balance(session, aid) == 3_000 and balance(session, general) == 3_000
    at_pharmacy = pay_by_code(client, world, 4_000, who="pharmacy_cashier", store=world["pharmacy_store"]).get_json()
    assert [(p["purse"], p["amount"]) for p in at_pharmacy["purses"]] == [("restricted", 3_000), ("general", 1_000)]
    assert balance(session, aid) == 0 and balance(session, general) == 2_000
    # The restaurant cannot reach the aid even when the general purse falls short.
    fund(session, world["card"], 1_000, program_id=program.public_id, categories=["pharmacy"], key="more-aid")
    short = pay_by_code(client, world, 2_500)
    assert short.status_code == 422 and short.get_json()["error"] == "insufficient_funds"
    assert balance(session, aid) == 1_000 and balance(session, general) == 2_000
    verify_ok(session)


def test_the_soonest_expiring_aid_purse_pays_first(client, session, world):
    now = dt.datetime.now(dt.timezone.utc)
    late = funded_program(session, world["users"], world["tree"]["yc"], name="晚到期")
    early = funded_program(session, world["users"], world["tree"]["yc"], name="早到期")
    late_purse = fund(session, world["card"], 1_000, program_id=late.public_id, categories=["dining"],
                      expires_at=now + dt.timedelta(days=90))
    early_purse = fund(session, world["card"], 1_000, program_id=early.public_id, categories=["dining"],
                       expires_at=now + dt.timedelta(days=5))
    body = pay_by_code(client, world, 1_500).get_json()
    assert [(p["program_id"], p["amount"]) for p in body["purses"]] == [(early.public_id, 1_000),
                                                                         (late.public_id, 500)]
    assert balance(session, early_purse) == 0 and balance(session, late_purse) == 500


def test_not_enough_money_refuses_the_payment_and_writes_nothing(client, session, world):
    fund(session, world["card"], 999)
    resp = pay_by_code(client, world, 1_000)
    assert resp.status_code == 422 and resp.get_json()["error"] == "insufficient_funds"
    assert session.scalar(select(func.count(Payment.id)).where(Payment.card_id == world["card"].id)) == 0
    assert balance(session, world["shop"].payable_account) == 0


def test_a_replayed_idempotency_key_answers_the_same_and_charges_once(client, session, world):
    general = fund(session, world["card"], 10_000)
    code = payment_code(client, world)
    headers = {**world["h"]["cashier"], "Idempotency-Key": "till-7-0001"}
    body = {"store_id": world["store"].public_id, "amount": 1_200, "currency": "CNY", "payment_code": code}
    first = client.post("/api/v1/payments", headers=headers, json=body)
    again = client.post("/api/v1/payments", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.get_json()["id"] == again.get_json()["id"]
    assert balance(session, general) == 8_800
    other = client.post("/api/v1/payments", headers=headers, json={**body, "amount": 1_300})
    assert other.status_code == 409 and other.get_json()["error"] == "idempotency_key_reused"
    assert balance(session, general) == 8_800


def test_a_used_code_is_refused_to_another_request(client, session, world):
    fund(session, world["card"], 10_000)
    code = payment_code(client, world)
    body = {"store_id": world["store"].public_id, "amount": 100, "payment_code": code}
    assert client.post("/api/v1/payments", headers=world["h"]["cashier"], json=body).status_code == 201
    again = client.post("/api/v1/payments", headers=world["h"]["cashier"], json=body)
    assert again.status_code == 422 and again.get_json()["error"] == "payment_code_used"


@pytest.mark.parametrize("body, field", [
    ({"amount": 0}, "amount"), ({"amount": -5}, "amount"), ({"amount": 10**12}, "amount"),
    ({"amount": 100, "currency": "USD"}, "currency"), ({"amount": 100, "payment_code": None}, "payment_code"),
    ({"amount": "100"}, "amount"), ({"amount": 1.5}, "amount"),
])
def test_bad_payment_requests_get_field_errors(client, world, body, field):
    full = {"store_id": world["store"].public_id, "payment_code": "880000000000000000", **body}
    if full.get("payment_code") is None:
        full.pop("payment_code")
    resp = client.post("/api/v1/payments", headers=world["h"]["cashier"], json=full)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]


def test_a_till_cannot_charge_at_another_merchants_store_or_a_closed_one(client, session, world):
    fund(session, world["card"], 10_000)
    assert pay_by_code(client, world, 100, store=world["pharmacy_store"]).status_code == 404
    world["store"].status = StoreStatus.CLOSED
    session.commit()
    closed = pay_by_code(client, world, 100)
    assert closed.status_code == 409 and closed.get_json()["error"] == "store_not_accepting"


def test_a_frozen_card_cannot_pay(client, session, world):
    fund(session, world["card"], 10_000)
    code = payment_code(client, world)
    cards.change_state(session, world["a"]["member"], world["card"].public_id, "freeze")
    resp = client.post("/api/v1/payments", headers=world["h"]["cashier"],
                       json={"store_id": world["store"].public_id, "amount": 100, "payment_code": code})
    assert resp.status_code == 409 and resp.get_json()["error"] == "card_frozen"


def test_a_count_limit_per_member_holds_across_a_replaced_card(client, session, world, cipher):
    fund(session, world["card"], 50_000)
    make_offer(session, merchant=world["shop"], kind="amount_off", value=500, limit_count=2, limit_period="year")
    assert [pay_by_code(client, world, 2_000).get_json()["discount"] for _ in range(2)] == [500, 500]
    cards.change_state(session, world["a"]["member"], world["card"].public_id, "report_lost")
    new = cards.replace_card(session, cipher, world["a"]["admin"], world["card"].public_id, prefix="880064")
    cards.change_state(session, world["a"]["member"], new.public_id, "activate")
    code = client.post(f"/api/v1/cards/{new.public_id}/payment-codes", headers=world["h"]["member"]).get_json()["code"]
    third = client.post("/api/v1/payments", headers=world["h"]["cashier"],
                        json={"store_id": world["store"].public_id, "amount": 2_000, "payment_code": code}).get_json()
    assert third["discount"] == 0 and {"offer_id": third["pricing_notes"][0]["offer_id"],
                                       "reason": "limit_reached"} in third["pricing_notes"]
    verify_ok(session)


def test_an_offer_budget_stops_discounts_once_used_up(client, session, world):
    fund(session, world["card"], 50_000)
    make_offer(session, merchant=world["shop"], kind="amount_off", value=300, budget=700)
    discounts = [pay_by_code(client, world, 1_000).get_json()["discount"] for _ in range(4)]
    assert discounts == [300, 300, 100, 0]  # the last of the budget caps the third


def test_the_best_offer_wins_and_the_others_say_why(client, session, world):
    fund(session, world["card"], 50_000)
    small = make_offer(session, merchant=world["shop"], kind="amount_off", value=200)
    big = make_offer(session, merchant=world["shop"], kind="percent_off", value=2000)
    family = make_offer(session, category="everyday", kind="amount_off", value=100, stackable=True)
    body = pay_by_code(client, world, 3_000).get_json()
    assert body["offer_id"] == big.public_id and body["discount"] == 600
    reasons = {n["offer_id"]: n["reason"] for n in body["pricing_notes"]}
    assert reasons[small.public_id] == "not_best" and reasons[family.public_id] == "not_best"


def test_a_hardship_only_offer_needs_a_current_register_entry(client, session, world):
    fund(session, world["card"], 50_000)
    make_offer(session, merchant=world["shop"], kind="amount_off", value=300, hardship_only=True)
    assert pay_by_code(client, world, 1_000).get_json()["discount"] == 0
    from members import service as members
    members.set_hardship(session, world["a"]["admin"], world["own"].public_id, level=2, reason="重病",
                         valid_until=dt.date.today() + dt.timedelta(days=30))
    assert pay_by_code(client, world, 1_000).get_json()["discount"] == 300


def test_payments_are_seen_by_their_merchant_member_and_finance_only(client, session, world):
    fund(session, world["card"], 10_000)
    pid = pay_by_code(client, world, 500).get_json()["id"]
    for who, status in (("cashier", 200), ("owner", 200), ("member", 200), ("maker", 200), ("auditor", 200),
                        ("pharmacy_owner", 404), ("other_member", 404), ("admin", 403)):
        assert client.get(f"/api/v1/payments/{pid}", headers=world["h"][who]).status_code == status, who


def test_a_suspended_merchants_store_takes_no_payment(client, session, world):
    from merchants.models import MerchantStatus

    general = fund(session, world["card"], 10_000)
    world["shop"].status = MerchantStatus.SUSPENDED
    session.commit()
    resp = pay_by_code(client, world, 100)
    assert resp.status_code == 409 and resp.get_json()["error"] == "store_not_accepting"
    assert balance(session, general) == 10_000
