"""Settlement runs at once on PostgreSQL: each merchant and day settled once, each payment counted once."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.auth import SYSTEM, Actor
from core.models import Role
from payments import ledger
from payments.checkout import service as checkout
from payments.checkout.models import Payment
from payments.payouts import service as payouts
from payments.payouts.models import ExceptionStatus, Payout
from payments.settlement import service as settlement
from payments.settlement.models import Settlement
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, fund, guard
from tests.integration.test_concurrency import run_in_threads
from tests.settlement.conftest import TERMS, at

pytestmark = pytest.mark.usefixtures("postgres")
# A day of its own: the other settlement tests settle a later one inside rolled-back transactions.
RACE_DAY = dt.date(2026, 11, 9)


def test_four_runs_of_one_day_at_once_settle_each_merchant_once(app, engine, cipher):
    sess = Session(engine, expire_on_commit=False)
    fed = f.union(sess, f"并发结算{uuid.uuid4().hex[:8]}", None, "640000")
    member = f.member(sess, cipher, fed, "结算会员")
    user = f.user(sess, Role.MEMBER, member=member)
    card = card_with_pin(sess, cipher, app, member, user)
    fund(sess, card, 1_000_000)
    shops = [f.merchant(sess, cipher, f"并发商户{n}{uuid.uuid4().hex[:6]}") for n in range(5)]
    for n, shop in enumerate(shops):
        for k in range(3):
            checkout.pay(sess, Actor.of(user), checkout.PayRequest(
                store_id=shop.stores[0].public_id, amount=1_000 * (n + 1) + k, card_id=card.public_id, pin=PIN),
                codes=None, pins=guard(app), max_amount=10**7, now=at(RACE_DAY, 9 + k))
    sess.commit()
    ids = [s.id for s in shops]

    def run():
        with Session(engine, expire_on_commit=False) as s:
            made = settlement.settle_day(s, Actor(None, "race", None), RACE_DAY, terms=TERMS,
                                         now=at(RACE_DAY + dt.timedelta(days=1), 1))
            return [x.merchant_id for x in made.created if x.merchant_id in ids]

    answers = run_in_threads(run, run, run, run)

    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert sorted(m for a in answers for m in a) == sorted(ids)  # each merchant made once, by one of the runs
    with Session(engine) as s:
        rows = s.execute(select(Settlement.merchant_id, Settlement.payments_count, Settlement.charged)
                         .where(Settlement.merchant_id.in_(ids))).all()
        assert sorted(rows) == sorted((shop.id, 3, 3 * 1_000 * (n + 1) + 3) for n, shop in enumerate(shops))
        assert s.scalar(select(func.count()).select_from(Payout).where(Payout.merchant_id.in_(ids))) == 5
        assert s.scalar(select(func.count()).select_from(Payment).where(
            Payment.merchant_id.in_(ids), Payment.settlement_id.is_(None))) == 0
        for shop in shops:
            assert ledger.balance(s, shop.payable_account).posted == 0
        assert ledger.verify(s).ok
    # Its payouts leave the shared database's bank files alone: failed back to the payables, closed, carried.
    for payout_id in sess.scalars(select(Payout.public_id).where(Payout.merchant_id.in_(ids))).all():
        payouts.mark_failed(sess, SYSTEM, payout_id, code="test_over", message="The test is over.")
        sess.commit()
    sess.execute(update(Payout).where(Payout.merchant_id.in_(ids))
                 .values(exception_status=ExceptionStatus.RESOLVED, exception_note="The test is over.",
                         carried_into_id=Payout.settlement_id))
    sess.commit()
    sess.close()
