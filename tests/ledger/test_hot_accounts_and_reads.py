"""Sliced and append-only accounts; balances at a moment, statements, snapshots."""

import datetime as dt

import pytest
from sqlalchemy import select

from core.db import utcnow
from core.errors import RuleViolation, ValidationFailed
from payments import ledger
from payments.ledger import credit, debit
from payments.ledger.models import AccountBalance, BalanceDelta, Entry, Snapshot
from tests.ledger.conftest import assert_verified, key


def slices(session, code):
    account = ledger.get_account(session, code)
    rows = session.execute(
        select(AccountBalance.slice, AccountBalance.credits_posted - AccountBalance.debits_posted)
        .where(AccountBalance.account_id == account.id)
        .order_by(AccountBalance.slice)
    ).all()
    return [amount for _, amount in rows]


def test_money_into_a_sliced_budget_fills_the_emptiest_slice(session, books):
    budget = books.purse("program:1:budget", mode="sliced", slices=4)
    for _ in range(8):
        books.fund(budget, 25)
    assert slices(session, budget) == [50, 50, 50, 50]
    assert books.posted(budget) == 200


def test_a_sliced_budget_is_never_overspent(session, books):
    budget = books.purse("program:1:budget", mode="sliced", slices=4)
    for _ in range(4):
        books.fund(budget, 25)
    card = books.open("card:1:general")
    paid = 0
    for _ in range(12):
        try:
            ledger.post(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 10), credit(card, 10)])
            paid += 1
        except RuleViolation as exc:
            assert exc.code == "insufficient_funds"
    assert paid == 10 and books.posted(budget) == 0 and books.posted(card) == 100
    assert all(amount == 0 for amount in slices(session, budget))
    assert_verified(session)


def test_a_debit_larger_than_any_slice_is_split_over_slices(session, books):
    budget = books.purse("program:1:budget", mode="sliced", slices=4)
    for _ in range(4):
        books.fund(budget, 25)
    card = books.open("card:1:general")
    txn = ledger.post(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 90), credit(card, 90)])
    budget_entries = [e for e in txn.entries if e.account.code == budget]
    assert len(budget_entries) == 4 and sum(e.amount for e in budget_entries) == 90
    assert books.posted(budget) == 10 and sorted(slices(session, budget)) == [2, 2, 3, 3]
    with pytest.raises(RuleViolation):
        ledger.post(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 11), credit(card, 11)])
    page = ledger.statement(session, budget, newest_first=True)
    assert page.lines[0].amount == -90 and page.lines[0].balance == 10
    assert_verified(session)


def test_holds_on_a_sliced_budget_release_the_slices_they_reserved(session, books):
    budget = books.purse("program:1:budget", mode="sliced", slices=2)
    books.fund(budget, 30)
    books.fund(budget, 30)
    card = books.open("card:1:general")
    held = ledger.hold(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 50), credit(card, 50)])
    assert books.available(budget) == 10
    ledger.post_pending(session, held, amount=20)
    assert books.available(budget) == 40 and books.posted(budget) == 40
    other = ledger.hold(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 40), credit(card, 40)])
    ledger.void_pending(session, other)
    assert books.available(budget) == 40
    assert_verified(session)


def test_an_append_only_account_takes_deltas_until_they_are_folded(session, books):
    card = books.purse("card:1:general", 1_000)
    payable = books.open("merchant:1:payable", mode="append_only", allow_negative=True)
    account = ledger.get_account(session, payable)
    for amount in (100, 200, 300):
        ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, amount), credit(payable, amount)])
    deltas = session.scalars(select(BalanceDelta).where(BalanceDelta.account_id == account.id)).all()
    assert len(deltas) == 3
    assert books.posted(payable) == 600
    assert_verified(session)
    assert ledger.fold_deltas(session) >= 1
    assert not session.scalars(select(BalanceDelta).where(BalanceDelta.account_id == account.id)).all()
    assert books.posted(payable) == 600 and slices(session, payable) == [600]
    ledger.post(session, kind="refund", idempotency_key=key(), entries=[debit(payable, 700), credit(card, 700)])
    assert books.posted(payable) == -100  # it may go negative: nothing locks it
    assert_verified(session)


def test_statement_pages_with_running_balance(session, books):
    card = books.purse("card:1:general")
    amounts = [500, -120, 300, -80, -50, 1_000, -400]
    for amount in amounts:
        legs = [debit(books.bank, amount), credit(card, amount)] if amount > 0 else [
            debit(card, -amount), credit(books.bank, -amount)]
        ledger.post(session, kind="move", idempotency_key=key(), entries=legs)
    running, expected = 0, []
    for amount in amounts:
        running += amount
        expected.append((amount, running))

    seen, cursor = [], None
    while True:
        page = ledger.statement(session, card, limit=3, cursor=cursor)
        seen += [(line.amount, line.balance) for line in page.lines]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == expected

    seen, cursor = [], None
    while True:
        page = ledger.statement(session, card, limit=2, cursor=cursor, newest_first=True)
        seen += [(line.amount, line.balance) for line in page.lines]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == expected[::-1]
    assert ledger.statement(session, card, limit=10_000).lines == ledger.statement(session, card, limit=500).lines
    with pytest.raises(ValidationFailed):
        ledger.statement(session, card, cursor="not-a-cursor")


def test_statement_shows_only_posted_money(session, books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 300), credit(shop, 300)])
    assert [line.amount for line in ledger.statement(session, card).lines] == [1_000]
    ledger.post_pending(session, held, amount=200)
    page = ledger.statement(session, card)
    assert [(line.amount, line.balance, line.kind) for line in page.lines] == [
        (1_000, 1_000, "funding"), (-200, 800, "payment")]


def test_balance_as_of_a_moment_with_and_without_snapshots(session, books):
    card = books.purse("card:1:general")
    moments, balances = [], []
    total = 0
    for amount in (100, 250, 40, 610, 5):
        books.fund(card, amount)
        total += amount
        moments.append(utcnow())
        balances.append(total)
    before_all = moments[0] - dt.timedelta(hours=1)

    def check():
        assert ledger.balance_as_of(session, card, before_all) == 0
        for moment, expected in zip(moments, balances):
            assert ledger.balance_as_of(session, card, moment) == expected

    check()
    # Other tests' accounts may be snapshotted too, a batch at a time: go on until none is left.
    assert ledger.take_snapshots(session, as_of=moments[2], min_entries=1) >= 1
    while ledger.take_snapshots(session, as_of=moments[2], min_entries=1):
        pass
    account = ledger.get_account(session, card)
    snap = session.scalars(select(Snapshot).where(Snapshot.account_id == account.id)).one()
    assert (snap.credits_posted, snap.entry_count) == (390, 3)
    check()
    while ledger.take_snapshots(session, as_of=moments[4], min_entries=1):
        pass
    check()
    assert_verified(session)
    with pytest.raises(ValidationFailed):
        ledger.balance_as_of(session, card, dt.datetime(2020, 1, 1))


def test_verify_catches_a_snapshot_that_no_longer_matches(session, books):
    card = books.purse("card:1:general", 100)
    account = ledger.get_account(session, card)
    session.add(Snapshot(account_id=account.id, as_of=utcnow(), debits_posted=0, credits_posted=99, entry_count=1))
    session.flush()
    report = ledger.verify(session)
    assert any(p["check"] == "snapshot_differs" for p in report.problems)


def test_verify_catches_an_entry_slipped_in_beside_the_ledger(session, books):
    card = books.purse("card:1:general", 100)
    txn = ledger.post(session, kind="payment", idempotency_key=key(),
                      entries=[debit(card, 40), credit(books.open("merchant:1:payable"), 40)])
    account = ledger.get_account(session, card)
    # Uncommitted, so PostgreSQL's deferred balance check has not run yet; verify must see it.
    session.execute(Entry.__table__.insert().values(
        transaction_id=txn.id, account_id=account.id, slice=0, amount=200, currency="CNY",
        is_hold=False, created_at=utcnow()))
    checks = {p["check"] for p in ledger.verify(session).problems}
    assert {"unbalanced_transaction", "books_do_not_balance", "cached_balance_differs"} <= checks


def test_a_large_funding_is_spread_evenly_over_the_slices(session, books):
    budget = books.purse("program:1:budget", mode="sliced", slices=4)
    books.fund(budget, 1_000_003)
    assert sorted(slices(session, budget)) == [250_000, 250_001, 250_001, 250_001]
    card = books.open("card:1:general")
    ledger.post(session, kind="aid", idempotency_key=key(), entries=[debit(budget, 300_000), credit(card, 300_000)])
    # More than any one slice holds: drawn from the fullest down, so they stay level.
    assert max(slices(session, budget)) - min(slices(session, budget)) <= 1
    assert sum(slices(session, budget)) == 700_003
    before = slices(session, budget)
    books.fund(budget, 20_000)  # two slices' worth: it refills the two emptiest
    after = slices(session, budget)
    added = sorted(a - b for a, b in zip(after, before))
    assert added[:2] == [0, 0] and sum(added) == 20_000 and abs(added[2] - added[3]) <= 2
    assert sorted(b for a, b in zip(after, before) if a != b) == sorted(before)[:2]
    assert_verified(session)
