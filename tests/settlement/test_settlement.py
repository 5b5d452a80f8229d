"""Settling business days: the statement's figures, the ledger move, carried nets, re-runs, payouts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core.errors import RuleViolation, ValidationFailed
from payments import ledger
from payments.accounts import FEES, IN_TRANSIT, open_platform_accounts
from payments.checkout.models import Payment, Refund
from payments.ledger import credit, debit
from payments.payouts.models import ExceptionStatus, Payout, PayoutStatus
from payments.settlement import service as settlement
from payments.settlement.models import Settlement, SettlementStatus
from tests.settlement.conftest import DAY, TERMS, at, fund, funded_program, make_offer, settle, transaction_count


def posted(session, code: str) -> int:
    open_platform_accounts(session)
    return ledger.balance(session, code).posted


@pytest.fixture
def funded(session, world):
    fund(session, world["card"], 100_000)
    fund(session, world["other_card"], 100_000)
    return world


def test_a_day_of_payments_and_refunds_is_one_statement_with_the_net_in_transit(session, funded, till):
    w = funded
    program = funded_program(session, w["users"], w["tree"]["fed"])
    # 10% off, half of the discount paid by the union's program.
    make_offer(session, merchant=w["shop"], value=1000, funding="split", union_share_bp=5000,
               program_id=program.public_id)
    first = till.pay(10_000, at(DAY, 9))  # ¥100: discount 1000, union 500, charged 9000
    second = till.pay(5_000, at(DAY, 23, 59))  # ¥50: discount 500, union 250, charged 4500
    till.pay(2_000, at(DAY + dt.timedelta(days=1), 0, 0))  # the next business day
    till.pay(3_000, at(DAY, 12), store=w["pharmacy_store"])  # another merchant
    till.refund(first, 1_800, at(DAY, 15))  # 1800 back to the card, 100 of subsidy back to the program
    payable = w["shop"].payable_account
    in_transit = posted(session, IN_TRANSIT)  # other tests' committed settlements share the account

    run = settle(session, DAY)

    ours = next(s for s in run.created if s.merchant_id == w["shop"].id)
    assert (ours.payments_count, ours.amount, ours.discount, ours.charged, ours.union_subsidy) == (
        2, 15_000, 1_500, 13_500, 750)
    assert (ours.refunds_count, ours.refunded, ours.union_refunded, ours.fee, ours.carried_in) == (1, 1_800, 100, 0, 0)
    assert ours.net == 13_500 + 750 - 1_800 - 100 == 12_350
    assert ours.status == SettlementStatus.SETTLED and ours.payout_due_on == DAY + dt.timedelta(days=1)
    assert {p.public_id for p in session.scalars(select(Payment).where(Payment.settlement_id == ours.id))} == {
        first.public_id, second.public_id}
    # The payable keeps only the next day's payment (¥20 less 10 %, plus the union's half of the discount).
    assert posted(session, payable) == 1_800 + 100
    assert posted(session, IN_TRANSIT) - in_transit == 12_350 + 3_000  # the pharmacy has no offer: ¥30 in full
    payout = session.scalar(select(Payout).where(Payout.settlement_id == ours.id))
    assert (payout.amount, payout.status, payout.method.value, payout.due_on) == (
        12_350, PayoutStatus.READY, w["shop"].settlement_method.value, DAY + dt.timedelta(days=1))
    assert len(run.created) == 2 and run.existing == []
    assert ledger.verify(session).ok


def test_running_a_day_again_changes_nothing(session, funded, till):
    till.pay(4_000, at(DAY, 10))
    first = settle(session, DAY)
    before = (transaction_count(session), session.scalar(select(Payout.id).order_by(Payout.id.desc()).limit(1)))

    again = settle(session, DAY)

    assert again.created == [] and [s.id for s in again.existing] == [s.id for s in first.created]
    assert (transaction_count(session), session.scalar(select(Payout.id).order_by(Payout.id.desc()).limit(1))) == before
    assert session.query(Settlement).filter(Settlement.merchant_id == funded["shop"].id).count() == 1


def test_a_payment_is_counted_once_and_a_late_one_joins_the_next_day(session, funded, till):
    early = till.pay(1_000, at(DAY, 10))
    settle(session, DAY)
    # A refund of yesterday's payment today, and a payment made yesterday that no settlement counted.
    till.refund(early, 400, at(DAY + dt.timedelta(days=1), 11))
    late = till.pay(2_500, at(DAY, 22))
    late_settled = settle(session, DAY)  # the merchant is settled for DAY: the late one waits
    assert late_settled.created == []

    nxt = settle(session, DAY + dt.timedelta(days=1)).created[0]

    assert (nxt.payments_count, nxt.charged, nxt.refunds_count, nxt.refunded, nxt.net) == (1, 2_500, 1, 400, 2_100)
    assert session.get(Payment, late.id).settlement_id == nxt.id
    assert session.get(Payment, early.id).settlement_id != nxt.id
    assert session.scalar(select(Refund.settlement_id).where(Refund.payment_id == early.id)) == nxt.id
    assert posted(session, funded["shop"].payable_account) == 0


def test_a_negative_net_is_carried_into_the_next_settlement(session, funded, till):
    in_transit = posted(session, IN_TRANSIT)
    payment = till.pay(5_000, at(DAY, 10))
    settle(session, DAY)
    till.refund(payment, 3_000, at(DAY + dt.timedelta(days=1), 10))  # nothing else sold that day
    short = settle(session, DAY + dt.timedelta(days=1)).created[0]
    assert (short.net, short.status, short.transaction_id) == (-3_000, SettlementStatus.CARRIED_FORWARD, None)
    assert session.scalar(select(Payout).where(Payout.settlement_id == short.id)) is None
    assert posted(session, funded["shop"].payable_account) == -3_000

    till.pay(8_000, at(DAY + dt.timedelta(days=2), 10))
    back = settle(session, DAY + dt.timedelta(days=2)).created[0]

    assert (back.carried_in, back.net) == (-3_000, 5_000)
    assert session.get(Settlement, short.id).carried_into_id == back.id
    assert posted(session, funded["shop"].payable_account) == 0
    assert posted(session, IN_TRANSIT) - in_transit == 5_000 + 5_000
    # Carried once: a later settlement does not take it in again.
    till.pay(1_000, at(DAY + dt.timedelta(days=3), 10))
    assert settle(session, DAY + dt.timedelta(days=3)).created[0].carried_in == 0
    assert ledger.verify(session).ok


def test_a_fee_is_kept_and_a_large_payout_waits_for_approval(session, funded, till):
    till.pay(33_333, at(DAY, 10))
    fees = posted(session, FEES)
    terms = settlement.Terms(delay_days=2, fee_bp=60, approval_above=20_000)

    s = settle(session, DAY, terms=terms).created[0]

    assert s.fee == 200  # 0.6 % of 333.33 is 1.99998: 2.00 half-up
    assert s.net == 33_133 and posted(session, FEES) - fees == 200
    payout = session.scalar(select(Payout).where(Payout.settlement_id == s.id))
    assert payout.status == PayoutStatus.PENDING_APPROVAL and payout.requires_approval
    assert payout.due_on == DAY + dt.timedelta(days=2)
    assert ledger.verify(session).ok


def test_a_failed_payout_is_paid_again_once_its_exception_is_resolved(session, funded, till):
    till.pay(6_000, at(DAY, 10))
    s = settle(session, DAY).created[0]
    payout = session.scalar(select(Payout).where(Payout.settlement_id == s.id))
    # The bank sent the money back: it is on the payable again, and finance has looked into it.
    ledger.post(session, kind="payout_failed", idempotency_key=f"test:{payout.public_id}:failed",
                entries=[debit(IN_TRANSIT, 6_000), credit(funded["shop"].payable_account, 6_000)])
    payout.status, payout.exception_status = PayoutStatus.FAILED, ExceptionStatus.OPEN
    session.commit()
    assert settle(session, DAY + dt.timedelta(days=1)).created == []  # still open: not paid again blindly

    payout.exception_status = ExceptionStatus.RESOLVED
    session.commit()
    again = settle(session, DAY + dt.timedelta(days=1)).created[0]

    assert (again.payments_count, again.carried_in, again.net, again.status) == (0, 6_000, 6_000,
                                                                                SettlementStatus.SETTLED)
    assert session.get(Payout, payout.id).carried_into_id == again.id
    assert session.scalar(select(Payout).where(Payout.settlement_id == again.id)).amount == 6_000
    assert posted(session, funded["shop"].payable_account) == 0
    assert ledger.verify(session).ok


def test_an_open_day_cannot_be_settled(session, funded):
    with pytest.raises(RuleViolation) as refused:
        settle(session, DAY, now=at(DAY, 23, 59))
    assert refused.value.code == "business_day_open"
    assert settle(session, DAY, now=at(DAY + dt.timedelta(days=1), 0, 0)).created == []


def test_settlement_terms_and_dates_are_checked(session):
    with pytest.raises(ValidationFailed):
        settle(session, DAY, terms=settlement.Terms(delay_days=-1))
    with pytest.raises(ValidationFailed):
        settle(session, DAY, terms=settlement.Terms(fee_bp=10_000))
    with pytest.raises(ValidationFailed):
        settle(session, DAY - dt.timedelta(days=400), now=at(DAY, 12))


def test_fee_rounding():
    assert [settlement.fee_of(a, bp) for a, bp in ((0, 60), (100, 0), (83, 60), (84, 60), (1_000_000, 9_999))] == [
        0, 0, 0, 1, 999_900]


def test_the_statement_lists_payments_and_refunds_in_order(session, funded, till):
    payment = till.pay(1_000, at(DAY, 10))
    till.refund(payment, 300, at(DAY, 11))
    s = settle(session, DAY).created[0]
    lines = settlement.statement_lines(session, s)
    assert [(x.kind, x.to_merchant) for x in lines] == [("payment", 1_000), ("refund", -300)]
    assert sum(x.to_merchant for x in lines) == s.net
    assert TERMS.delay_days == 1


def test_a_negative_day_still_pays_its_fee_and_carries_the_rest(session, funded, till):
    first = till.pay(1_000, at(DAY, 10))
    terms = settlement.Terms(fee_bp=60)
    settle(session, DAY, terms=terms)
    fees = posted(session, FEES)
    till.pay(100, at(DAY + dt.timedelta(days=1), 9))
    till.refund(first, 900, at(DAY + dt.timedelta(days=1), 10))

    s = settle(session, DAY + dt.timedelta(days=1), terms=terms).created[0]

    assert (s.fee, s.net, s.status) == (1, 100 - 900 - 1, SettlementStatus.CARRIED_FORWARD)
    assert posted(session, FEES) - fees == 1  # only the fee moved
    assert posted(session, funded["shop"].payable_account) == -801
    assert session.scalar(select(Payout).where(Payout.settlement_id == s.id)) is None
    assert ledger.verify(session).ok
