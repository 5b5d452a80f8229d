"""Bulk credits: one transaction paying many purses from one source, written set-based."""

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, RuleViolation, ValidationFailed
from payments import ledger
from payments.ledger.bulk import Credit, post_credits
from tests.ledger.conftest import assert_verified, key


def test_credits_many_purses_in_one_balanced_transaction(session, books):
    reserve = books.purse("dsb:reserve", funds=10_000)
    purses = [books.open(f"card:{n}:general") for n in range(5)]
    credits = [Credit(code, 100 * (n + 1)) for n, code in enumerate(purses)] + [Credit(purses[0], 50)]
    txn = post_credits(session, kind="disbursement", idempotency_key=key(), source=reserve, credits=credits,
                       reference="dsb_test", metadata={"description": "送温暖"})
    session.commit()
    assert [books.posted(p) for p in purses] == [150, 200, 300, 400, 500]
    assert books.posted(reserve) == 10_000 - 1_550
    entries = session.scalars(select(ledger.Entry).where(ledger.Entry.transaction_id == txn.id)).all()
    assert len(entries) == 7 and sum(e.amount for e in entries) == 0
    # Each purse's statement shows its own credit.
    line = ledger.statement(session, purses[2]).lines[0]
    assert (line.kind, line.amount, line.reference) == ("disbursement", 300, "dsb_test")
    assert_verified(session)


def test_the_same_key_returns_the_first_transaction_and_another_request_is_refused(session, books):
    reserve = books.purse("dsb:reserve", funds=1_000)
    purse = books.open("card:general")
    k = key()
    first = post_credits(session, kind="disbursement", idempotency_key=k, source=reserve, credits=[Credit(purse, 10)])
    again = post_credits(session, kind="disbursement", idempotency_key=k, source=reserve, credits=[Credit(purse, 10)])
    assert again.id == first.id and books.posted(purse) == 10
    with pytest.raises(Conflict) as exc:
        post_credits(session, kind="disbursement", idempotency_key=k, source=reserve, credits=[Credit(purse, 11)])
    assert exc.value.code == "idempotency_conflict"


def test_refusals_write_nothing(session, books):
    reserve = books.purse("dsb:reserve", funds=100)
    purse = books.open("card:general")
    closed = books.open("card:closed")
    ledger.close_account(session, closed)
    hot = books.open("program:budget", mode="sliced", slices=4)
    debit_normal = books.open("other:asset", normal_side="debit")
    cases = [
        ([Credit(purse, 101)], RuleViolation, "insufficient_funds"),
        ([Credit(purse, 1), Credit(closed, 1)], Conflict, "account_closed"),
        ([Credit(purse, 1), Credit(books.code("card:nobody"), 1)], NotFound, "unknown_account"),
        ([Credit(hot, 1)], ValidationFailed, None),
        ([Credit(debit_normal, 1)], ValidationFailed, None),
        ([Credit(purse, 0)], ValidationFailed, None),
        ([Credit(purse, -5)], ValidationFailed, None),
        ([Credit(reserve, 5)], ValidationFailed, None),
        ([], ValidationFailed, None),
    ]
    before = session.scalar(select(func.count(ledger.Transaction.id)))
    for credits, error, code in cases:
        with pytest.raises(error) as exc:
            post_credits(session, kind="disbursement", idempotency_key=key(), source=reserve, credits=credits)
        if code:
            assert exc.value.code == code
    assert session.scalar(select(func.count(ledger.Transaction.id))) == before
    assert books.posted(purse) == 0 and books.posted(reserve) == 100
    assert_verified(session)


def test_a_large_chunk_commits_on_postgresql_with_the_checks_at_commit(postgres, engine):
    with Session(engine) as s:
        tag = uuid.uuid4().hex[:8]
        ledger.open_account(s, f"bank:{tag}", normal_side="debit", allow_negative=True)
        ledger.open_account(s, f"reserve:{tag}", normal_side="credit")
        codes = [f"card:{tag}:{n}:general" for n in range(5000)]
        ledger.open_accounts(s, codes, normal_side="credit")
        ledger.post(s, kind="funding", idempotency_key=f"fund:{tag}",
                    entries=[ledger.debit(f"bank:{tag}", 5000 * 500), ledger.credit(f"reserve:{tag}", 5000 * 500)])
        s.commit()
        post_credits(s, kind="disbursement", idempotency_key=f"bulk:{tag}", source=f"reserve:{tag}",
                     credits=[Credit(code, 500) for code in codes])
        s.commit()
        assert ledger.balance(s, codes[4321]).posted == 500
        assert ledger.balance(s, f"reserve:{tag}").posted == 0
        assert_verified(s)


def test_balances_of_several_accounts_match_each_balance(session, books):
    reserve = books.purse("dsb:reserve", funds=5_000)
    purses = [books.open(f"card:b{n}:general") for n in range(3)]
    post_credits(session, kind="disbursement", idempotency_key=key(), source=reserve,
                 credits=[Credit(purses[0], 700), Credit(purses[2], 20)])
    held = ledger.hold(session, kind="payment", idempotency_key=key(),
                       entries=[ledger.debit(purses[0], 200), ledger.credit(reserve, 200)])
    session.commit()
    assert held is not None
    read = ledger.balances(session, [*purses, reserve, "card:missing:general"])
    assert set(read) == {*purses, reserve}
    for code in (*purses, reserve):
        assert read[code] == ledger.balance(session, code)
    assert (read[purses[0]].posted, read[purses[0]].available) == (700, 500)
    assert ledger.balances(session, []) == {}
