"""Posting, refusals and idempotency, on whichever database the run uses."""

import pytest
from sqlalchemy import func, select

from core.errors import Conflict, NotFound, RuleViolation, ValidationFailed
from payments import ledger
from payments.ledger import credit, debit
from payments.ledger.models import Entry, Transaction
from tests.ledger.conftest import assert_verified, key


def entry_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Entry))


def txn_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Transaction))


def test_post_moves_money_and_keeps_the_books_balanced(session, books):
    card = books.purse("card:1:general", 10_000)
    shop = books.open("merchant:1:payable")
    txn = ledger.post(session, kind="payment", idempotency_key=key(), reference="pay_1",
                      entries=[debit(card, 1_250), credit(shop, 1_250)], metadata={"store": "sto_1"})
    assert txn.public_id.startswith("txn_") and len(txn.public_id) == 24
    assert txn.status is ledger.TransactionStatus.POSTED and txn.reference == "pay_1"
    assert sorted(e.amount for e in txn.entries) == [-1_250, 1_250]
    assert books.posted(card) == 8_750 and books.posted(shop) == 1_250
    assert books.posted(books.bank) == 10_000  # debit-normal: the bank holds what it paid in
    assert_verified(session)


def test_multi_leg_transaction_balances_per_currency(session, books):
    card = books.purse("card:1:general", 1_000)
    aid = books.purse("card:1:aid", 500)
    shop = books.open("merchant:1:payable")
    ledger.post(session, kind="payment", idempotency_key=key(),
                entries=[debit(aid, 500), debit(card, 300), credit(shop, 800)])
    assert (books.posted(aid), books.posted(card), books.posted(shop)) == (0, 700, 800)


@pytest.mark.parametrize("entries, word", [
    (lambda c, s: [debit(c, 100), credit(s, 99)], "unbalanced"),
    (lambda c, s: [debit(c, 100), credit(s, 100, "USD")], "currency_mismatch"),
])
def test_refuses_unbalanced_or_mixed_currency(session, books, entries, word):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    before = entry_count(session)
    with pytest.raises(RuleViolation) as err:
        ledger.post(session, kind="payment", idempotency_key=key(), entries=entries(card, shop))
    assert err.value.code == word
    assert entry_count(session) == before and books.posted(card) == 1_000


def test_refuses_a_transaction_in_two_currencies_that_does_not_balance_in_each(session, books):
    cny = books.purse("card:1:general", 1_000)
    usd_bank = books.open("union:usd-bank", normal_side="debit", currency="USD", allow_negative=True)
    usd = books.open("card:1:usd", currency="USD")
    with pytest.raises(RuleViolation) as err:
        ledger.post(session, kind="fx", idempotency_key=key(),
                    entries=[debit(cny, 700), credit(usd, 100), debit(usd_bank, 100), credit(books.bank, 600)])
    assert err.value.code == "unbalanced"
    ledger.post(session, kind="fx", idempotency_key=key(),
                entries=[debit(cny, 700), credit(books.bank, 700), debit(usd_bank, 100), credit(usd, 100)])
    assert books.posted(usd) == 100
    assert_verified(session)


@pytest.mark.parametrize("amount", [0, -5, 10**16, 1.5, True, "100"])
def test_refuses_amounts_that_are_not_positive_whole_minor_units(session, books, amount):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="payment", idempotency_key=key(),
                    entries=[debit(card, amount), credit(shop, amount)])


def test_refuses_a_single_leg_and_bad_headers(session, books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    legs = [debit(card, 1), credit(shop, 1)]
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1)])
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="Payment!", idempotency_key=key(), entries=legs)
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="payment", idempotency_key="", entries=legs)
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="payment", idempotency_key="k" * 201, entries=legs)
    with pytest.raises(ValidationFailed):
        ledger.post(session, kind="payment", idempotency_key=key(), entries=legs, metadata={"x": "y" * 5000})


def test_refuses_unknown_and_closed_accounts(session, books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    with pytest.raises(NotFound) as err:
        ledger.post(session, kind="payment", idempotency_key=key(),
                    entries=[debit(card, 1), credit(books.code("merchant:nope"), 1)])
    assert err.value.code == "unknown_account"
    ledger.close_account(session, shop)
    with pytest.raises(Conflict) as err:
        ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1), credit(shop, 1)])
    assert err.value.code == "account_closed"


def test_close_refuses_an_account_with_money_or_holds(session, books):
    card = books.purse("card:1:general", 100)
    with pytest.raises(RuleViolation) as err:
        ledger.close_account(session, card)
    assert err.value.code == "account_not_empty"
    ledger.post(session, kind="sweep", idempotency_key=key(), entries=[debit(card, 100), credit(books.bank, 100)])
    assert ledger.close_account(session, card).status is ledger.AccountStatus.CLOSED


def test_debit_beyond_the_balance_is_refused_and_leaves_nothing(session, books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    before = (entry_count(session), txn_count(session))
    with pytest.raises(RuleViolation) as err:
        ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1_001), credit(shop, 1_001)])
    assert err.value.code == "insufficient_funds"
    assert (entry_count(session), txn_count(session)) == before
    ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 1_000), credit(shop, 1_000)])
    assert books.available(card) == 0


def test_a_debit_normal_account_that_may_not_go_negative_refuses_credits_beyond_it(session, books):
    cash = books.open("union:cash", normal_side="debit")
    ledger.post(session, kind="deposit", idempotency_key=key(), entries=[debit(cash, 500), credit(books.open("union:equity", allow_negative=True), 500)])
    sink = books.open("union:sink", normal_side="debit", allow_negative=True)
    with pytest.raises(RuleViolation):
        ledger.post(session, kind="withdraw", idempotency_key=key(), entries=[debit(sink, 501), credit(cash, 501)])
    ledger.post(session, kind="withdraw", idempotency_key=key(), entries=[debit(sink, 500), credit(cash, 500)])
    assert books.posted(cash) == 0


def test_idempotent_replay_returns_the_first_transaction_and_changes_nothing(session, books):
    card = books.purse("card:1:general", 1_000)
    shop = books.open("merchant:1:payable")
    k = key()
    first = ledger.post(session, kind="payment", idempotency_key=k, entries=[debit(card, 300), credit(shop, 300)])
    counts = (entry_count(session), txn_count(session))
    again = ledger.post(session, kind="payment", idempotency_key=k, entries=[debit(card, 300), credit(shop, 300)])
    assert again.id == first.id and again.public_id == first.public_id
    assert (entry_count(session), txn_count(session)) == counts
    assert books.posted(card) == 700
    with pytest.raises(Conflict) as err:
        ledger.post(session, kind="payment", idempotency_key=k, entries=[debit(card, 301), credit(shop, 301)])
    assert err.value.code == "idempotency_conflict"
    with pytest.raises(Conflict):
        ledger.post(session, kind="payment", idempotency_key=k, entries=[debit(card, 300), credit(shop, 300)],
                    reference="other")


def test_replay_is_answered_even_when_the_funds_are_gone(session, books):
    card = books.purse("card:1:general", 300)
    shop = books.open("merchant:1:payable")
    k = key()
    first = ledger.post(session, kind="payment", idempotency_key=k, entries=[debit(card, 300), credit(shop, 300)])
    assert ledger.post(session, kind="payment", idempotency_key=k,
                       entries=[debit(card, 300), credit(shop, 300)]).id == first.id


def test_post_many_answers_each_transfer(session, books):
    a = books.purse("card:a", 100)
    b = books.purse("card:b", 0)
    dup = key()
    answers = ledger.post_many(session, [
        ledger.Transfer("move", dup, [debit(a, 60), credit(b, 60)]),
        ledger.Transfer("move", key(), [debit(a, 60), credit(b, 60)]),  # only 40 left
        ledger.Transfer("move", key(), [debit(b, 50), credit(a, 50)]),  # b got 60 above
        ledger.Transfer("move", dup, [debit(a, 60), credit(b, 60)]),  # same key, same request
        ledger.Transfer("move", dup, [debit(a, 61), credit(b, 61)]),  # same key, other request
        ledger.Transfer("move", key(), [debit(a, 0), credit(b, 0)]),
    ])
    assert isinstance(answers[0], ledger.Transaction)
    assert isinstance(answers[1], RuleViolation) and answers[1].code == "insufficient_funds"
    assert isinstance(answers[2], ledger.Transaction)
    assert answers[3].id == answers[0].id
    assert isinstance(answers[4], Conflict)
    assert isinstance(answers[5], ValidationFailed)
    assert books.posted(a) == 90 and books.posted(b) == 10
    assert_verified(session)


def test_get_or_create_account_returns_the_same_and_refuses_a_different_spec(session, books):
    code = books.code("card:7:general")
    first = ledger.get_or_create_account(session, code, normal_side="credit")
    assert ledger.get_or_create_account(session, code, normal_side="credit").id == first.id
    with pytest.raises(Conflict):
        ledger.get_or_create_account(session, code, normal_side="debit")
    with pytest.raises(Conflict):
        ledger.open_account(session, code, normal_side="credit")
    with pytest.raises(ValidationFailed):
        ledger.open_account(session, "bad code", normal_side="credit")
    with pytest.raises(ValidationFailed):
        ledger.open_account(session, books.code("x:1"), normal_side="credit", currency="cny")
    with pytest.raises(ValidationFailed):
        ledger.open_account(session, books.code("x:2"), normal_side="credit", mode="append_only")


def test_verify_reports_a_cached_balance_that_drifted(session, books):
    from payments.ledger.models import AccountBalance

    card = books.purse("card:1:general", 1_000)
    account = ledger.get_account(session, card)
    session.execute(
        AccountBalance.__table__.update()
        .where(AccountBalance.account_id == account.id)
        .values(credits_posted=AccountBalance.credits_posted + 1)
    )
    report = ledger.verify(session)
    assert not report.ok
    assert any(p["check"] == "cached_balance_differs" and p["account"] == card for p in report.problems)


def test_trial_balance_groups_by_code_and_balances(session, books):
    card = books.purse("card:1:general", 1_000)
    ledger.post(session, kind="payment", idempotency_key=key(),
                entries=[debit(card, 400), credit(books.open("merchant:1:payable"), 400)])
    tb = ledger.trial_balance(session)
    assert tb.balanced
    groups = {(r.group, r.currency) for r in tb.rows}
    assert ("card", "CNY") in groups and ("merchant", "CNY") in groups and ("union", "CNY") in groups
    assert sum(r.balance for r in tb.rows if r.currency == "CNY") == 0


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = :t",
    "DELETE FROM ledger_entries WHERE transaction_id = :t",
    "DELETE FROM ledger_transactions WHERE id = :t",
    "UPDATE ledger_transactions SET reference = 'x' WHERE id = :t",
])
def test_the_database_itself_refuses_to_change_what_was_posted(session, books, statement):
    from sqlalchemy import exc, text

    card = books.purse("card:1:general", 1_000)
    txn = ledger.post(session, kind="payment", idempotency_key=key(),
                      entries=[debit(card, 10), credit(books.open("merchant:1:payable"), 10)])
    with pytest.raises(exc.DBAPIError):
        with session.begin_nested():
            session.execute(text(statement), {"t": txn.id})
    assert books.posted(card) == 990
