"""Refunds: to the purses the money came from, the subsidy back to the program, never more than charged."""

import datetime as dt

from sqlalchemy import select

from benefits.models import OfferBudget, OfferUsage
from cards import service as cards
from payments import ledger
from payments.checkout import service
from tests.checkout.conftest import balance, fund, funded_program, make_offer, payment_code


def pay(client, world, amount, *, who="cashier", store=None):
    code = payment_code(client, world)
    resp = client.post("/api/v1/payments", headers=world["h"][who],
                       json={"store_id": (store or world["store"]).public_id, "amount": amount, "payment_code": code})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def refund(client, world, payment_id, amount, who="owner", key=None, reason="退货"):
    headers = dict(world["h"][who])
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/api/v1/payments/{payment_id}/refunds", headers=headers,
                       json={"amount": amount, "reason": reason})


def verify_ok(session):
    report = ledger.verify(session)
    assert report.ok, report.problems


def test_partial_refunds_until_the_charged_total_and_never_more(client, session, world):
    general = fund(session, world["card"], 10_000)
    paid = pay(client, world, 3_000)
    first = refund(client, world, paid["id"], 1_000)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["id"].startswith("ref_") and first.get_json()["amount"] == 1_000
    assert balance(session, general) == 8_000
    over = refund(client, world, paid["id"], 2_001)
    assert over.status_code == 422 and over.get_json()["error"] == "refund_exceeds_charged"
    assert refund(client, world, paid["id"], 2_000, who="manager").status_code == 201
    assert balance(session, general) == 10_000
    assert balance(session, world["shop"].payable_account) == 0
    done = refund(client, world, paid["id"], 1)
    assert done.status_code == 409 and done.get_json()["error"] == "fully_refunded"
    got = client.get(f"/api/v1/payments/{paid['id']}", headers=world["h"]["member"]).get_json()
    assert got["status"] == "refunded" and got["refunded"] == 3_000 and len(got["refunds"]) == 2
    verify_ok(session)


def test_a_refund_goes_back_to_the_purses_it_came_from_last_drawn_first(client, session, world):
    program = funded_program(session, world["users"], world["tree"]["yc"], name="医疗互助")
    general = fund(session, world["card"], 5_000)
    aid = fund(session, world["card"], 2_000, program_id=program.public_id, categories=["pharmacy"],
               expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30))
    paid = pay(client, world, 3_000, who="pharmacy_cashier", store=world["pharmacy_store"])
    assert balance(session, aid) == 0 and balance(session, general) == 4_000
    assert refund(client, world, paid["id"], 500, who="pharmacy_owner").status_code == 201
    assert balance(session, general) == 4_500 and balance(session, aid) == 0
    assert refund(client, world, paid["id"], 2_500, who="pharmacy_owner").status_code == 201
    assert balance(session, general) == 5_000 and balance(session, aid) == 2_000
    verify_ok(session)


def test_aid_that_expired_since_goes_back_to_its_program(client, session, world):
    program = funded_program(session, world["users"], world["tree"]["yc"], name="医疗互助")
    aid = fund(session, world["card"], 2_000, program_id=program.public_id, categories=["pharmacy"],
               expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    paid = pay(client, world, 1_500, who="pharmacy_cashier", store=world["pharmacy_store"])
    budget_before = balance(session, program.budget_account)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    rf, _ = service.refund(session, world["a"]["pharmacy_owner"], paid["id"], amount=1_500, now=later)
    assert rf.legs[0]["to"] == "program"
    assert balance(session, program.budget_account) == budget_before + 1_500
    assert balance(session, aid) == 500
    verify_ok(session)


def test_the_union_subsidy_goes_back_to_the_program_in_proportion(client, session, world):
    fund(session, world["card"], 20_000)
    program = funded_program(session, world["users"], world["tree"]["yc"], amount=100_000)
    make_offer(session, merchant=world["shop"], kind="percent_off", value=2500, funding="union",
               program_id=program.public_id)
    paid = pay(client, world, 4_000)  # discount 1,000 from the program, card charged 3,000
    assert balance(session, program.budget_account) == 99_000
    first = refund(client, world, paid["id"], 1_000).get_json()
    assert first["union_back"] == 333  # 1,000 x 1,000 / 3,000, half-up
    assert balance(session, program.budget_account) == 99_333
    second = refund(client, world, paid["id"], 2_000).get_json()
    assert second["union_back"] == 667  # the rest, exactly
    assert balance(session, program.budget_account) == 100_000
    assert balance(session, world["shop"].payable_account) == 0
    verify_ok(session)


def test_a_full_refund_gives_back_the_members_limit_and_the_offers_budget(client, session, world):
    fund(session, world["card"], 20_000)
    offer = make_offer(session, merchant=world["shop"], kind="amount_off", value=500, limit_count=1,
                       limit_period="month", budget=1_000)
    paid = pay(client, world, 2_000)
    assert paid["discount"] == 500
    assert pay(client, world, 2_000)["discount"] == 0  # once a month
    refund(client, world, paid["id"], 1_500)
    usage = session.scalar(select(OfferUsage).where(OfferUsage.lineage == offer.lineage))
    session.refresh(usage)
    assert (usage.count, usage.amount) == (0, 0)
    assert session.get(OfferBudget, offer.lineage).used == 0
    assert pay(client, world, 2_000)["discount"] == 500


def test_a_refund_of_a_replaced_card_reaches_the_new_card(client, session, world, cipher):
    fund(session, world["card"], 5_000)
    paid = pay(client, world, 2_000)
    cards.change_state(session, world["a"]["member"], world["card"].public_id, "report_lost")
    new = cards.replace_card(session, cipher, world["a"]["admin"], world["card"].public_id, prefix="880064")
    assert refund(client, world, paid["id"], 2_000).status_code == 201
    assert balance(session, cards.general_account(new.public_id)) == 5_000
    verify_ok(session)


def test_only_the_merchants_owner_or_manager_refunds_and_only_its_own_payments(client, session, world):
    fund(session, world["card"], 5_000)
    paid = pay(client, world, 1_000)
    assert refund(client, world, paid["id"], 100, who="cashier").status_code == 403
    assert refund(client, world, paid["id"], 100, who="member").status_code == 403
    assert refund(client, world, paid["id"], 100, who="pharmacy_owner").status_code == 404
    assert refund(client, world, paid["id"], 100, who="maker").status_code == 403
    assert refund(client, world, "pay_nonexistent", 100).status_code == 404
    for bad in (0, -1, "10", 1.5, None):
        resp = refund(client, world, paid["id"], bad)
        assert resp.status_code == 422, (bad, resp.get_json())


def test_a_replayed_refund_key_refunds_once(client, session, world):
    general = fund(session, world["card"], 5_000)
    paid = pay(client, world, 1_000)
    a = refund(client, world, paid["id"], 400, key="rf-1")
    b = refund(client, world, paid["id"], 400, key="rf-1")
    assert a.status_code == b.status_code == 201 and a.get_json()["id"] == b.get_json()["id"]
    assert balance(session, general) == 4_400
    c = refund(client, world, paid["id"], 500, key="rf-1")
    assert c.status_code == 409 and c.get_json()["error"] == "idempotency_key_reused"
