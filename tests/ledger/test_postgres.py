"""The ledger on real PostgreSQL: concurrent debits, hot accounts, and the database's own guards.

These tests commit for real, each thread on its own connection, with account codes unique to
the test so they never depend on other tests' rows.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import exc, select, text
from sqlalchemy.orm import Session

from core.db import make_engine
from core.errors import Conflict, RuleViolation
from payments import ledger
from payments.ledger import credit, debit
from payments.ledger.models import AccountBalance

THREADS = 50


@pytest.fixture(scope="module")
def pg(database_url):
    """An engine with a connection for every thread (the shared one has a smaller pool)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL")
    eng = make_engine(database_url, pool_size=THREADS + 5, max_overflow=0)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _needs_postgres(postgres):
    """Skip on SQLite, or fail under REQUIRE_SERVICES=1."""


class Chart:
    """Accounts with codes unique to one test, opened and funded in committed transactions."""

    def __init__(self, engine):
        self.engine = engine
        self.tag = uuid.uuid4().hex[:10]
        self.bank = self.open("union:bank", normal_side="debit", allow_negative=True)

    def open(self, name, **spec) -> str:
        spec.setdefault("normal_side", "credit")
        with Session(self.engine) as s:
            code = ledger.open_account(s, f"{name}:{self.tag}", **spec).code
            s.commit()
        return code

    def fund(self, code, amount) -> None:
        with Session(self.engine) as s:
            ledger.post(s, kind="funding", idempotency_key=uuid.uuid4().hex,
                        entries=[debit(self.bank, amount), credit(code, amount)])
            s.commit()

    def balance(self, code) -> ledger.Balance:
        with Session(self.engine) as s:
            return ledger.balance(s, code)


def verified(engine) -> None:
    with Session(engine) as s:
        report = ledger.verify(s)
    assert report.ok, report.problems


def all_at_once(n, fn):
    """Run fn(i) in n threads released together; return their results (exceptions included)."""
    gate = threading.Barrier(n)

    def run(i):
        gate.wait()
        try:
            return fn(i)
        except Exception as err:  # noqa: BLE001 - the caller inspects every outcome
            return err

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def debit_in_own_transaction(engine, source, target, amount, key=None):
    with Session(engine) as s:
        txn = ledger.post(s, kind="payment", idempotency_key=key or uuid.uuid4().hex,
                          entries=[debit(source, amount), credit(target, amount)])
        s.commit()
        return txn.public_id


def test_fifty_threads_debiting_ten_yuan_from_a_hundred(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable", mode="append_only", allow_negative=True)
    chart.fund(card, 10_000)
    results = all_at_once(THREADS, lambda i: debit_in_own_transaction(pg, card, shop, 1_000))
    succeeded = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, RuleViolation) and r.code == "insufficient_funds"]
    assert len(succeeded) == 10 and len(refused) == THREADS - 10, [r for r in results if isinstance(r, Exception)]
    assert chart.balance(card).posted == 0 and chart.balance(shop).posted == 10_000
    verified(pg)


def test_fifty_threads_against_one_hot_budget_split_in_slices(pg):
    chart = Chart(pg)
    budget = chart.open("program:budget", mode="sliced", slices=4)
    card = chart.open("card:general")
    for _ in range(4):
        chart.fund(budget, 2_500)
    with Session(pg) as s:
        account = ledger.get_account(s, budget)
        per_slice = s.scalars(select(AccountBalance.credits_posted).where(AccountBalance.account_id == account.id)).all()
    assert sorted(per_slice) == [2_500] * 4
    results = all_at_once(THREADS, lambda i: debit_in_own_transaction(pg, budget, card, 1_000))
    succeeded = [r for r in results if isinstance(r, str)]
    assert len(succeeded) == 10, [r for r in results if not isinstance(r, (str, RuleViolation))]
    assert all(isinstance(r, RuleViolation) and r.code == "insufficient_funds" for r in results if not isinstance(r, str))
    assert chart.balance(budget).posted == 0 and chart.balance(card).posted == 10_000
    verified(pg)


def test_hot_accounts_take_concurrent_postings_without_losing_any(pg):
    chart = Chart(pg)
    budget = chart.open("program:budget", mode="sliced", slices=8)
    payable = chart.open("merchant:payable", mode="append_only", allow_negative=True)
    cards = [chart.open(f"card:{n}") for n in range(20)]
    chart.fund(budget, 1_000_000)

    def member(i):
        # Aid from the hot budget to the card, then a payment from the card to the hot payable.
        for _ in range(10):
            debit_in_own_transaction(pg, budget, cards[i], 300)
            debit_in_own_transaction(pg, cards[i], payable, 200)
        return True

    assert all(r is True for r in all_at_once(len(cards), member))
    assert chart.balance(budget).posted == 1_000_000 - 20 * 10 * 300
    assert chart.balance(payable).posted == 20 * 10 * 200
    assert {chart.balance(c).posted for c in cards} == {10 * 100}
    with Session(pg) as s:
        ledger.fold_deltas(s)
        s.commit()
    assert chart.balance(payable).posted == 20 * 10 * 200
    verified(pg)


def test_crossing_transfers_never_deadlock(pg):
    chart = Chart(pg)
    accounts = [chart.open(f"card:{n}") for n in range(3)]
    for code in accounts:
        chart.fund(code, 100_000)

    def shuffle(i):
        for n in range(15):
            a, b = accounts[(i + n) % 3], accounts[(i + n + 1 + i % 2) % 3]
            if a != b:
                with Session(pg) as s:
                    ledger.post_many(s, [
                        ledger.Transfer("move", uuid.uuid4().hex, [debit(a, 7), credit(b, 7)]),
                        ledger.Transfer("move", uuid.uuid4().hex, [debit(b, 5), credit(a, 5)]),
                    ])
                    s.commit()
        return True

    results = all_at_once(16, shuffle)
    assert all(r is True for r in results), [r for r in results if r is not True][:3]
    assert sum(chart.balance(c).posted for c in accounts) == 300_000
    verified(pg)


def test_concurrent_requests_with_one_key_post_once(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable")
    chart.fund(card, 5_000)
    key = uuid.uuid4().hex
    results = all_at_once(12, lambda i: debit_in_own_transaction(pg, card, shop, 700, key=key))
    assert len(set(results)) == 1 and isinstance(results[0], str), results
    assert chart.balance(card).posted == 4_300
    verified(pg)


def test_concurrent_reversals_reverse_once(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable")
    chart.fund(card, 5_000)
    public_id = debit_in_own_transaction(pg, card, shop, 1_000)

    def reverse(i):
        with Session(pg) as s:
            rev = ledger.reverse(s, public_id, idempotency_key=uuid.uuid4().hex)
            s.commit()
            return rev.public_id

    results = all_at_once(10, reverse)
    assert len([r for r in results if isinstance(r, str)]) == 1
    assert all(isinstance(r, Conflict) and r.code == "already_reversed" for r in results if not isinstance(r, str))
    assert chart.balance(card).posted == 5_000

    public_id = debit_in_own_transaction(pg, card, shop, 1_000)

    def refund(i):
        with Session(pg) as s:
            ledger.reverse(s, public_id, amount=300, idempotency_key=uuid.uuid4().hex, kind="refund")
            s.commit()
            return True

    results = all_at_once(10, refund)
    assert results.count(True) == 3  # 3 x 300 fits in 1000, a fourth would not
    assert chart.balance(card).posted == 4_900
    verified(pg)


def test_identical_concurrent_captures_and_reversals_answer_the_same(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable")
    chart.fund(card, 5_000)
    with Session(pg) as s:
        held = ledger.hold(s, kind="payment", idempotency_key=uuid.uuid4().hex,
                           entries=[debit(card, 2_000), credit(shop, 2_000)]).public_id
        s.commit()

    def capture(i):
        with Session(pg) as s:
            txn = ledger.post_pending(s, held, amount=1_500)
            s.commit()
            return txn.public_id

    captures = all_at_once(8, capture)
    assert len(set(captures)) == 1 and captures[0].startswith("txn_"), captures

    def reverse(i):
        with Session(pg) as s:
            txn = ledger.reverse(s, captures[0])
            s.commit()
            return txn.public_id

    reversals = all_at_once(8, reverse)
    assert len(set(reversals)) == 1 and reversals[0].startswith("txn_"), reversals
    assert chart.balance(card).posted == 5_000 and chart.balance(card).available == 5_000
    verified(pg)


def test_capture_and_void_race_for_a_hold(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable")
    chart.fund(card, 5_000)
    with Session(pg) as s:
        held = ledger.hold(s, kind="payment", idempotency_key=uuid.uuid4().hex,
                           entries=[debit(card, 2_000), credit(shop, 2_000)]).public_id
        s.commit()

    def resolve(i):
        with Session(pg) as s:
            result = ledger.post_pending(s, held) if i % 2 else ledger.void_pending(s, held)
            s.commit()
            return result.status.value

    results = all_at_once(10, resolve)
    outcomes = {r for r in results if isinstance(r, str)}
    assert outcomes in ({"posted"}, {"voided"}), results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, str))
    bal = chart.balance(card)
    assert bal.pending_debits == 0
    assert bal.posted == (3_000 if outcomes == {"posted"} else 5_000)
    verified(pg)


def committed_payment(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    shop = chart.open("merchant:payable")
    chart.fund(card, 5_000)
    public_id = debit_in_own_transaction(pg, card, shop, 1_000)
    with pg.connect() as conn:
        return conn.execute(text("SELECT id FROM ledger_transactions WHERE public_id = :p"), {"p": public_id}).scalar_one()


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount * 2 WHERE transaction_id = :t",
    "DELETE FROM ledger_entries WHERE transaction_id = :t",
    "UPDATE ledger_transactions SET kind = 'other' WHERE id = :t",
    "UPDATE ledger_transactions SET status = 'voided' WHERE id = :t",
    "DELETE FROM ledger_transactions WHERE id = :t",
    "TRUNCATE ledger_entries CASCADE",
])
def test_raw_sql_cannot_change_what_was_posted(pg, statement):
    txn_id = committed_payment(pg)
    with pg.connect() as conn:
        with pytest.raises(exc.DBAPIError) as err:
            conn.execute(text(statement), {"t": txn_id})
        assert "ledger" in str(err.value.orig)
        conn.rollback()


def test_raw_unbalanced_writes_fail_at_commit(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    with Session(pg) as s:
        account_id = ledger.get_account(s, card).id
        bank_id = ledger.get_account(s, chart.bank).id
    insert_txn = text(
        "INSERT INTO ledger_transactions (public_id, kind, status, is_hold, idempotency_key, request_hash,"
        " metadata, created_at) VALUES (:p, 'raw', 'posted', false, :p, 'x', '{}', now()) RETURNING id")
    insert_entry = text(
        "INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)"
        " VALUES (:t, :a, 0, :amount, 'CNY', false, now())")

    def attempt(entries):
        with pg.connect() as conn:
            txn_id = conn.execute(insert_txn, {"p": "txn_raw" + uuid.uuid4().hex[:16]}).scalar_one()
            for account, amount in entries:
                conn.execute(insert_entry, {"t": txn_id, "a": account, "amount": amount})
            conn.commit()
            return txn_id

    for entries in ([(bank_id, 500), (account_id, -499)], [(bank_id, 500)], []):
        with pytest.raises(exc.IntegrityError) as err:
            attempt(entries)
        assert "ledger transaction" in str(err.value.orig)
    balanced = attempt([(bank_id, 500), (account_id, -500)])
    with pg.connect() as conn:  # keep the cached totals true, as the ledger would have
        for account, column in ((bank_id, "debits_posted"), (account_id, "credits_posted")):
            conn.execute(text(f"UPDATE ledger_balances SET {column} = {column} + 500 WHERE account_id = :a"),
                         {"a": account})
        conn.commit()
    verified(pg)
    # Even one more entry on a committed, balanced transaction is refused at commit.
    with pg.connect() as conn:
        conn.execute(insert_entry, {"t": balanced, "a": account_id, "amount": 1})
        with pytest.raises(exc.IntegrityError):
            conn.commit()


def test_the_database_refuses_a_negative_purse_even_without_the_ledger_code(pg):
    chart = Chart(pg)
    card = chart.open("card:general")
    chart.fund(card, 100)
    with pg.connect() as conn:
        with pytest.raises(exc.IntegrityError) as err:
            conn.execute(text(
                "UPDATE ledger_balances SET debits_posted = debits_posted + 101 "
                "WHERE account_id = (SELECT id FROM ledger_accounts WHERE code = :c)"), {"c": card})
        assert "no_negative" in str(err.value.orig)
        conn.rollback()
