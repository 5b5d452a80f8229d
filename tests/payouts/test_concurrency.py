"""Payout races on PostgreSQL, committed for real: two makers generating bank files at once, several
senders of the same Stripe payouts, and one Stripe event delivered many times at once."""

import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.auth import SYSTEM, Actor
from core.errors import RuleViolation
from core.models import Role
from payments import ledger
from payments.ledger import Transaction
from payments.payouts import service
from payments.payouts.models import BankFile, ExceptionStatus, Payout, PayoutStatus
from payments.payouts.provider import payout_provider
from tests import factories as f
from tests.integration.test_concurrency import run_in_threads
from tests.payouts.conftest import (
    TODAY,
    WEBHOOK_URL,
    make_payout,
    make_stripe_merchant,
    stripe_account,
)

pytestmark = pytest.mark.usefixtures("postgres")


@pytest.fixture
def race(app, engine, cipher):
    """Merchants and finance makers of their own, committed. Afterwards their payouts leave nothing the shared
    database's other tests could meet: none stays due, in transit or an open exception, and no money of theirs
    passes through the union's bank or Stripe clearing accounts (what is left returns to their own payables)."""
    sess = Session(engine, expire_on_commit=False)
    tag = uuid.uuid4().hex[:6]
    merchants = [f.merchant(sess, cipher, f"并发商户{tag}{i}") for i in range(3)]
    makers = [Actor.of(f.user(sess, Role.FINANCE_MAKER)) for _ in range(2)]
    yield {"session": sess, "merchants": merchants, "makers": makers}
    race_maker = makers[0]
    sess.rollback()
    left = sess.scalars(select(Payout.public_id).where(
        Payout.merchant_id.in_([m.id for m in merchants]),
        Payout.status.in_([PayoutStatus.READY, PayoutStatus.SUBMITTED]))).all()
    for payout_id in left:
        service.mark_failed(sess, SYSTEM, payout_id, code="test_over", message="The test is over.")
        sess.commit()
    # Closed, and marked as carried already (into their own statements), so that no later settlement in the
    # shared database pays their returned money again.
    sess.execute(update(Payout).where(Payout.merchant_id.in_([m.id for m in merchants]),
                                      Payout.exception_status == ExceptionStatus.OPEN)
                 .values(exception_status=ExceptionStatus.RESOLVED, exception_note="The test is over.",
                         resolved_by_id=race_maker.user_id, carried_into_id=Payout.settlement_id))
    sess.commit()
    sess.close()


def ledger_ok(engine):
    with Session(engine) as sess:
        report = ledger.verify(sess)
    assert report.ok, report.problems


def test_two_makers_generating_at_once_never_put_a_payout_in_two_files(app, engine, cipher, race):
    sess = race["session"]
    payouts = [make_payout(sess, race["merchants"][i % 3], 1_000 + i) for i in range(30)]

    def generate(actor):
        def run():
            with Session(engine, expire_on_commit=False) as own:
                return service.create_bank_file(own, actor, today=TODAY, cipher=cipher)
        return run

    results = run_in_threads(*[generate(actor) for actor in race["makers"]])
    files = [r for r in results if isinstance(r, BankFile)]
    assert files and all(isinstance(r, BankFile) or (isinstance(r, RuleViolation) and r.code == "no_payouts_due")
                         for r in results), results
    with Session(engine) as check:
        ids = [p.id for p in payouts]
        rows = check.execute(select(Payout.bank_file_id, Payout.status).where(Payout.id.in_(ids))).all()
        assert {status for _, status in rows} == {PayoutStatus.SUBMITTED}
        taken = Counter(file_id for file_id, _ in rows)
        assert sorted(taken) == sorted(b.id for b in files)
        for made in files:
            assert taken[made.id] == made.payouts_count
            assert made.total == check.scalar(select(func.sum(Payout.amount)).where(Payout.bank_file_id == made.id))
            # Each file is made again exactly as recorded: nobody else's payouts slipped into it.
            service.bank_file_content(check, race["makers"][0], made.public_id, cipher=cipher)
        assert sum(b.payouts_count for b in files) == 30
    ledger_ok(engine)


def test_several_senders_of_the_same_stripe_payouts_pay_each_once(app, engine, cipher, race, stripe_server,
                                                                 stripe_app_config):
    sess = race["session"]
    account = stripe_account(app, stripe_server)
    merchant = make_stripe_merchant(sess, cipher, account, name=f"并发超市{uuid.uuid4().hex[:6]}")
    race["merchants"].append(merchant)
    payouts = [make_payout(sess, merchant, 500 + i) for i in range(5)]
    provider = payout_provider(app.config)

    def sender():
        with Session(engine, expire_on_commit=False) as own:
            return service.send_due(own, provider, today=TODAY)

    reports = run_in_threads(*[sender for _ in range(4)])
    assert not [r for r in reports if isinstance(r, Exception)], reports
    assert sum(r.failed for r in reports) == 0
    assert len(stripe_server.objects("transfers")) == 5 and len(stripe_server.objects("payouts")) == 5
    assert stripe_server.balance(account) == 0
    with Session(engine) as check:
        rows = check.execute(select(Payout.status, Payout.stripe_payout_id).where(
            Payout.id.in_([p.id for p in payouts]))).all()
    assert {status for status, _ in rows} == {PayoutStatus.SUBMITTED}
    assert {sp for _, sp in rows} == {p["id"] for p in stripe_server.objects("payouts")}


def test_one_event_delivered_many_times_at_once_moves_the_money_once(app, engine, cipher, race, stripe_server,
                                                                    stripe_app_config):
    sess = race["session"]
    merchant = make_stripe_merchant(sess, cipher, stripe_account(app, stripe_server),
                                    name=f"并发药房{uuid.uuid4().hex[:6]}")
    race["merchants"].append(merchant)
    payout = make_payout(sess, merchant, 6_600)
    assert service.send_due(sess, payout_provider(app.config), today=TODAY).sent == 1
    stripe_payout = sess.scalar(select(Payout.stripe_payout_id).where(Payout.id == payout.id))
    body, headers = stripe_server.delivery(stripe_server.fail_payout(stripe_payout))

    answers = run_in_threads(*[lambda: app.test_client().post(WEBHOOK_URL, data=body, headers=headers)
                               for _ in range(6)])
    assert [a.status_code for a in answers] == [200] * 6
    assert sorted(a.get_json()["handled"] for a in answers) == [False] * 5 + [True]
    with Session(engine) as check:
        assert check.scalar(select(Payout.status).where(Payout.id == payout.id)) == PayoutStatus.FAILED
        assert check.scalar(select(func.count()).select_from(Transaction).where(
            Transaction.reference == payout.public_id)) == 1
    ledger_ok(engine)
