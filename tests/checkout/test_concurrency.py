"""Races on PostgreSQL: payments and refunds from many tills at once, committed for real."""

import hashlib
import uuid
from collections import Counter

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from benefits.models import Offer, OfferBudget, OfferUsage
from cards import service as cards
from core.auth import Actor
from core.models import Role
from payments import ledger
from payments.checkout.models import Payment, PaymentOffer, Refund
from tests import factories as f
from tests.checkout.conftest import card_with_pin, fund, make_offer
from tests.integration.test_concurrency import run_in_threads

pytestmark = pytest.mark.usefixtures("postgres")


@pytest.fixture
def race(app, engine, cipher):
    """A union, a restaurant with a cashier and an owner, and a way to make members with funded cards."""
    sess = Session(engine, expire_on_commit=False)
    fed = f.union(sess, f"并发收银{uuid.uuid4().hex[:8]}", None, "640000")
    shop = f.merchant(sess, cipher, f"并发餐厅{uuid.uuid4().hex[:6]}")
    cashier = f.user(sess, Role.MERCHANT_CASHIER, merchant_id=shop.id)
    owner = f.user(sess, Role.MERCHANT_OWNER, merchant_id=shop.id)
    key = hashlib.sha256(b"payment-codes:" + str(app.config["SECRET_KEY"]).encode()).digest()
    codes = cards.PaymentCodes(app.extensions["kv"], key, ttl=300, per_minute=10_000)

    def member_card(funds: int):
        member = f.member(sess, cipher, fed, "并发会员")
        user = f.user(sess, Role.MEMBER, member=member)
        card = card_with_pin(sess, cipher, app, member, user)
        fund(sess, card, funds)
        return card, Actor.of(user)

    yield {"session": sess, "shop": shop, "store": shop.stores[0], "cashier": f.bearer(sess, cashier),
           "owner": f.bearer(sess, owner), "codes": codes, "member_card": member_card}
    # Its offers leave the shared database, as the other tests' catalogs expect (the payments stay).
    lineages = select(Offer.lineage).where(Offer.merchant_id == shop.id)
    sess.execute(delete(PaymentOffer).where(PaymentOffer.lineage.in_(lineages)))
    sess.execute(delete(OfferUsage).where(OfferUsage.lineage.in_(lineages)))
    sess.execute(delete(OfferBudget).where(OfferBudget.lineage.in_(lineages)))
    sess.execute(delete(Offer).where(Offer.merchant_id == shop.id))
    sess.commit()
    sess.close()


def till(app, race, code, amount, key=None):
    headers = dict(race["cashier"])
    if key:
        headers["Idempotency-Key"] = key
    return lambda: app.test_client().post("/api/v1/payments", headers=headers, json={
        "store_id": race["store"].public_id, "amount": amount, "payment_code": code})


def ledger_ok(engine):
    with Session(engine) as sess:
        report = ledger.verify(sess)
    assert report.ok, report.problems


def test_forty_payments_at_once_against_a_card_that_affords_ten(app, engine, race):
    card, member = race["member_card"](10_000)
    codes = [race["codes"].issue(race["session"], member, card.public_id).code for _ in range(40)]
    race["session"].commit()
    answers = run_in_threads(*[till(app, race, code, 1_000) for code in codes])
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 10, 422: 30}, statuses
    assert {a.get_json()["error"] for a in answers if a.status_code == 422} == {"insufficient_funds"}
    with Session(engine) as sess:
        assert ledger.balance(sess, cards.general_account(card.public_id)).posted == 0
        assert sess.scalar(select(func.count(Payment.id)).where(Payment.card_id == card.id)) == 10
    ledger_ok(engine)


def test_forty_payments_at_once_against_an_offer_with_budget_for_ten_discounts(app, engine, race):
    offer = make_offer(race["session"], merchant=race["shop"], kind="amount_off", value=300, budget=3_000)
    people = [race["member_card"](5_000) for _ in range(40)]
    codes = [race["codes"].issue(race["session"], member, card.public_id).code for card, member in people]
    race["session"].commit()
    answers = run_in_threads(*[till(app, race, code, 1_000) for code in codes])
    assert Counter(a.status_code for a in answers) == {201: 40}, [a.get_json() for a in answers]
    assert sorted(a.get_json()["discount"] for a in answers) == [0] * 30 + [300] * 10
    with Session(engine) as sess:
        assert sess.get(OfferBudget, offer.lineage).used == 3_000
        charged = sess.scalar(select(func.sum(Payment.charged)).where(Payment.merchant_id == race["shop"].id))
        assert charged == 40 * 1_000 - 3_000
    ledger_ok(engine)


def test_the_same_idempotency_key_from_two_tills_at_once_charges_once(app, engine, race):
    card, member = race["member_card"](10_000)
    code = race["codes"].issue(race["session"], member, card.public_id).code
    race["session"].commit()
    answers = run_in_threads(*[till(app, race, code, 2_500, key="till-1-42") for _ in range(4)])
    ok = [a for a in answers if a.status_code == 201]
    assert ok and len({a.get_json()["id"] for a in ok}) == 1, [a.get_json() for a in answers]
    assert all(a.status_code in (201, 409) for a in answers)
    with Session(engine) as sess:
        assert ledger.balance(sess, cards.general_account(card.public_id)).posted == 7_500
    ledger_ok(engine)


def test_ten_refunds_at_once_never_give_back_more_than_was_charged(app, engine, race):
    card, member = race["member_card"](10_000)
    code = race["codes"].issue(race["session"], member, card.public_id).code
    race["session"].commit()
    paid = till(app, race, code, 1_000)().get_json()
    answers = run_in_threads(*[lambda: app.test_client().post(
        f"/api/v1/payments/{paid['id']}/refunds", headers=race["owner"], json={"amount": 400})
        for _ in range(10)])
    assert Counter(a.status_code for a in answers) == {201: 2, 422: 8}
    with Session(engine) as sess:
        assert sess.scalar(select(func.sum(Refund.amount)).join(Payment).where(Payment.public_id == paid["id"])) == 800
        assert ledger.balance(sess, cards.general_account(card.public_id)).posted == 9_800
    ledger_ok(engine)
