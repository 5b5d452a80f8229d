"""Two-phase transactions (hold, post, void, expiry) and reversals."""

import datetime as dt

import pytest

from core.db import utcnow
from core.errors import Conflict, RuleViolation, ValidationFailed
from payments import ledger
from payments.ledger import credit, debit
from tests.ledger.conftest import assert_verified, key


@pytest.fixture
def pay(books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    return card, shop


def test_hold_reserves_funds_that_later_debits_cannot_use(session, books, pay):
    card, shop = pay
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 700), credit(shop, 700)])
    assert held.status is ledger.TransactionStatus.PENDING and held.is_hold
    bal = ledger.balance(session, card)
    assert (bal.posted, bal.pending_debits, bal.available) == (1_000, 700, 300)
    assert ledger.balance(session, shop).pending_credits == 700
    assert ledger.balance(session, shop).available == 0  # incoming holds are not spendable yet
    with pytest.raises(RuleViolation) as err:
        ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 301), credit(shop, 301)])
    assert err.value.code == "insufficient_funds"
    with pytest.raises(RuleViolation):
        ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 301), credit(shop, 301)])
    assert_verified(session)


def test_full_capture_posts_the_hold(session, books, pay):
    card, shop = pay
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 700), credit(shop, 700)])
    posted = ledger.post_pending(session, held)
    assert posted.pending_id == held.id and posted.status is ledger.TransactionStatus.POSTED
    assert held.status is ledger.TransactionStatus.POSTED and held.resolved_at is not None
    card_bal, shop_bal = ledger.balance(session, card), ledger.balance(session, shop)
    assert (card_bal.posted, card_bal.pending_debits, card_bal.available) == (300, 0, 300)
    assert (shop_bal.posted, shop_bal.pending_credits) == (700, 0)
    assert ledger.post_pending(session, held).id == posted.id  # a replay answers the same
    assert_verified(session)


def test_partial_capture_releases_the_rest(session, books, pay):
    card, shop = pay
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 700), credit(shop, 700)])
    with pytest.raises(RuleViolation) as err:
        ledger.post_pending(session, held, amount=701)
    assert err.value.code == "exceeds_original"
    ledger.post_pending(session, held, amount=450)
    bal = ledger.balance(session, card)
    assert (bal.posted, bal.pending_debits, bal.available) == (550, 0, 550)
    assert books.posted(shop) == 450
    with pytest.raises(Conflict) as err:
        ledger.post_pending(session, held, amount=100, idempotency_key=key())
    assert err.value.code == "hold_posted"
    with pytest.raises(Conflict):
        ledger.void_pending(session, held)
    assert_verified(session)


def test_partial_capture_of_a_multi_leg_hold_names_its_legs(session, books, pay):
    card, shop = pay
    aid = books.purse("card:1:aid", 200)
    held = ledger.hold(session, kind="payment", idempotency_key=key(),
                       entries=[debit(card, 300), debit(aid, 200), credit(shop, 500)])
    with pytest.raises(ValidationFailed):
        ledger.post_pending(session, held, amount=100)
    with pytest.raises(RuleViolation):
        ledger.post_pending(session, held, entries=[debit(card, 301), credit(shop, 301)])
    ledger.post_pending(session, held, entries=[debit(card, 100), debit(aid, 200), credit(shop, 300)])
    assert (books.posted(card), books.posted(aid), books.posted(shop)) == (900, 0, 300)
    assert books.available(card) == 900
    assert_verified(session)


def test_void_releases_the_hold_and_is_final(session, books, pay):
    card, shop = pay
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 700), credit(shop, 700)])
    voided = ledger.void_pending(session, held.public_id)
    assert voided.id == held.id and voided.status is ledger.TransactionStatus.VOIDED
    assert books.available(card) == 1_000 and ledger.balance(session, shop).pending_credits == 0
    assert ledger.void_pending(session, held).status is ledger.TransactionStatus.VOIDED
    with pytest.raises(Conflict) as err:
        ledger.post_pending(session, held)
    assert err.value.code == "hold_voided"
    assert_verified(session)


def test_expired_holds_are_voided_by_the_job_and_cannot_be_captured(session, books, pay):
    card, shop = pay
    soon = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 100), credit(shop, 100)],
                       timeout=dt.timedelta(seconds=30))
    later = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 200), credit(shop, 200)],
                        timeout=dt.timedelta(hours=1))
    assert books.available(card) == 700
    now = utcnow() + dt.timedelta(minutes=1)
    voided = 0
    while batch := ledger.void_expired_holds(session, now=now):
        voided += batch
    assert voided >= 1
    assert soon.status is ledger.TransactionStatus.VOIDED
    assert later.status is ledger.TransactionStatus.PENDING
    assert books.available(card) == 800
    expired = ledger.hold(session, kind="payment", idempotency_key=key(),
                          entries=[debit(card, 100), credit(shop, 100)],
                          expires_at=utcnow() + dt.timedelta(milliseconds=1))
    while utcnow() <= expired.expires_at:
        pass
    with pytest.raises(RuleViolation) as err:
        ledger.post_pending(session, expired)
    assert err.value.code == "hold_expired"
    assert_verified(session)


def test_hold_time_outs_are_bounded(session, pay):
    card, shop = pay
    for timeout in (dt.timedelta(0), dt.timedelta(days=31)):
        with pytest.raises(ValidationFailed):
            ledger.hold(session, kind="payment", idempotency_key=key(),
                        entries=[debit(card, 1), credit(shop, 1)], timeout=timeout)


def test_a_posted_transaction_cannot_be_captured_or_voided(session, pay):
    card, shop = pay
    txn = ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1), credit(shop, 1)])
    for op in (ledger.post_pending, ledger.void_pending):
        with pytest.raises(RuleViolation) as err:
            op(session, txn)
        assert err.value.code == "not_a_hold"


def test_reverse_undoes_a_transaction_once(session, books, pay):
    card, shop = pay
    txn = ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 600), credit(shop, 600)])
    rev = ledger.reverse(session, txn)
    assert rev.reverses_id == txn.id and rev.kind == "reversal"
    assert books.posted(card) == 1_000 and books.posted(shop) == 0
    assert ledger.reverse(session, txn).id == rev.id  # the replay of the same request
    with pytest.raises(Conflict) as err:
        ledger.reverse(session, txn, idempotency_key=key())
    assert err.value.code == "already_reversed"
    with pytest.raises(RuleViolation):
        ledger.reverse(session, rev)
    assert_verified(session)


def test_partial_reversals_never_exceed_the_original(session, books, pay):
    card, shop = pay
    txn = ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 600), credit(shop, 600)])
    with pytest.raises(ValidationFailed):
        ledger.reverse(session, txn, amount=100)  # a partial reversal needs its own key
    ledger.reverse(session, txn, amount=250, idempotency_key=key(), kind="refund")
    ledger.reverse(session, txn, idempotency_key=key(), kind="refund",
                   entries=[debit(shop, 300), credit(card, 300)])
    with pytest.raises(RuleViolation) as err:
        ledger.reverse(session, txn, amount=51, idempotency_key=key(), kind="refund")
    assert err.value.code == "exceeds_original"
    with pytest.raises(RuleViolation):
        ledger.reverse(session, txn, idempotency_key=key(), entries=[debit(card, 10), credit(shop, 10)])
    last = ledger.reverse(session, txn)  # whatever is left: 50
    assert sorted(e.amount for e in last.entries) == [-50, 50]
    assert books.posted(card) == 1_000 and books.posted(shop) == 0
    with pytest.raises(Conflict):
        ledger.reverse(session, txn, amount=1, idempotency_key=key())
    assert_verified(session)


def test_a_reversal_that_would_overdraw_is_refused(session, books, pay):
    card, shop = pay
    topup = ledger.post(session, kind="aid", idempotency_key=key(),
                        entries=[debit(books.bank, 500), credit(card, 500)])
    ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1_200), credit(shop, 1_200)])
    with pytest.raises(RuleViolation) as err:
        ledger.reverse(session, topup)
    assert err.value.code == "insufficient_funds"


def test_reversing_a_hold_is_refused_but_its_capture_can_be_reversed(session, books, pay):
    card, shop = pay
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 400), credit(shop, 400)])
    with pytest.raises(RuleViolation):
        ledger.reverse(session, held)
    capture = ledger.post_pending(session, held)
    ledger.reverse(session, capture, amount=100, idempotency_key=key(), kind="refund")
    assert books.posted(card) == 700
    assert_verified(session)
