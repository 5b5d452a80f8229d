"""Many credits from one source account in one transaction, written set-based.

A disbursement pays hundreds of thousands of purses from one reserve. A chunk of them (up to
MAX_CREDITS) is one balanced transaction: one debit of the source for the chunk's total and one
credit per purse. Each purse's statement shows its own credit; a claw-back of one line is a
transaction of its own. It is written in a handful of statements instead of a round trip per line:

- the source's balance row is locked and checked to cover the chunk;
- the credited accounts must be open, single-balance, credit-normal accounts in the source's
  currency (card purses): a credit only raises them, so they need no check, only their row update;
- entries and balance changes go in from arrays (PostgreSQL) or executemany.

Beyond the 64 legs of `post()`, the usual invariants hold: the deferred trigger re-checks the
transaction at COMMIT and `verify()` finds nothing to report. The idempotency key works as in
`post()`: the same key and request return the first transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any, NamedTuple, Sequence

from sqlalchemy import String, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import Conflict, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from payments.ledger.accounts import check_code, check_metadata
from payments.ledger.models import (
    Account,
    AccountBalance,
    AccountStatus,
    BalanceMode,
    Entry,
    NormalSide,
    Transaction,
    TransactionStatus,
)
from payments.ledger.posting import KIND_RE
from payments.ledger.types import MAX_AMOUNT, MAX_KEY_LENGTH

MAX_CREDITS = 20_000


class Credit(NamedTuple):
    account: str
    amount: int


def _request_hash(kind: str, source: str, credits: Sequence[Credit], reference: str | None, metadata: dict) -> str:
    payload = {"op": "post_credits", "kind": kind, "source": source,
               "credits": [[c.account, c.amount] for c in credits], "reference": reference, "metadata": metadata}
    text_ = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text_.encode()).hexdigest()


def _check(kind: str, key: str, credits: Sequence[Credit], reference: str | None) -> None:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValidationFailed({"kind": ["Lower-case words joined by . _ or -, at most 64 characters."]})
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed({"idempotency_key": [f"1 to {MAX_KEY_LENGTH} characters."]})
    if not 1 <= len(credits) <= MAX_CREDITS:
        raise ValidationFailed({"credits": [f"A bulk posting has 1 to {MAX_CREDITS} credits."]})
    for code in {c.account for c in credits}:
        check_code(code)
    for n, c in enumerate(credits):
        if isinstance(c.amount, bool) or not isinstance(c.amount, int) or not 0 < c.amount <= MAX_AMOUNT:
            raise ValidationFailed({f"credits.{n}.amount": ["A positive integer of minor units."]})
    if reference is not None and len(reference) > 200:
        raise ValidationFailed({"reference": ["At most 200 characters."]})


def post_credits(session: Session, *, kind: str, idempotency_key: str, source: str, credits: Sequence[Credit],
                 reference: str | None = None, metadata: dict[str, Any] | None = None) -> Transaction:
    """Move each credit's amount from `source` to its account, all in one transaction.

    Refuses (writing nothing) if an account is unknown, closed, of another currency, or not a
    single-balance credit-normal account, or if the source cannot cover the total.
    """
    _check(kind, idempotency_key, credits, reference)
    metadata = check_metadata(metadata)
    request_hash = _request_hash(kind, source, credits, reference, metadata)
    session.flush()
    stored = session.scalar(select(Transaction).where(Transaction.idempotency_key == idempotency_key))
    if stored is not None:
        if stored.request_hash != request_hash:
            raise Conflict("This idempotency key was already used for a different request.",
                           code="idempotency_conflict")
        return stored
    src = session.execute(select(Account).where(Account.code == source).with_for_update(read=True, key_share=True)
                          ).scalar_one_or_none()
    if src is None:
        raise NotFound(f"No ledger account {source}.", code="unknown_account")
    if src.status != AccountStatus.OPEN:
        raise Conflict(f"Account {source} is closed.", code="account_closed")
    if src.mode != BalanceMode.SINGLE:
        raise ValidationFailed({"source": ["The source of a bulk posting is a single-balance account."]})

    codes = sorted({c.account for c in credits})
    if source in codes:
        raise ValidationFailed({"credits": ["The source cannot credit itself."]})
    columns = (Account.id, Account.code, Account.status, Account.currency, Account.mode, Account.normal_side)
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter, joined so each code is an index look-up (= ANY of thousands scans the table).
        wanted = select(func.unnest(bindparam("codes", type_=ARRAY(String()))).label("code")).subquery()
        query = select(*columns).join(wanted, wanted.c.code == Account.code).with_for_update(
            of=Account, read=True, key_share=True)
    else:
        query = select(*columns).where(Account.code.in_(bindparam("codes", expanding=True))).with_for_update(
            read=True, key_share=True)
    accounts = {a.code: a for a in session.execute(query, {"codes": codes}).all()}
    for code in codes:
        a = accounts.get(code)
        if a is None:
            raise NotFound(f"No ledger account {code}.", code="unknown_account")
        if a.status != AccountStatus.OPEN:
            raise Conflict(f"Account {code} is closed.", code="account_closed")
        if a.currency != src.currency:
            raise RuleViolation(f"Account {code} is in {a.currency}, not {src.currency}.", code="currency_mismatch")
        if a.mode != BalanceMode.SINGLE or a.normal_side != NormalSide.CREDIT:
            raise ValidationFailed({"credits": [f"{code} is not a single-balance credit-normal account."]})

    total = sum(c.amount for c in credits)
    balance = session.execute(select(AccountBalance).where(AccountBalance.account_id == src.id,
                                                           AccountBalance.slice == 0).with_for_update()).scalar_one()
    if src.normal_side == NormalSide.CREDIT and not src.allow_negative:
        available = balance.credits_posted - balance.debits_posted - balance.debits_pending
        if available < total:
            raise RuleViolation(f"{source} holds {available}, less than the {total} to pay out.",
                                code="insufficient_funds")
    session.expire(balance)  # changed behind the ORM's back below

    now = utcnow()
    values = {"public_id": new_public_id("txn"), "kind": kind, "status": TransactionStatus.POSTED,
              "is_hold": False, "idempotency_key": idempotency_key, "request_hash": request_hash,
              "reference": reference, "meta": metadata, "created_at": now}
    txn = Transaction(**values)
    session.add(txn)
    session.flush()
    per_account: dict[int, int] = defaultdict(int)
    for c in credits:
        per_account[accounts[c.account].id] += c.amount
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_PG_BULK, {"txn": txn.id, "account_ids": [accounts[c.account].id for c in credits],
                                "amounts": [c.amount for c in credits], "currency": src.currency, "now": now,
                                "source_id": src.id, "total": total, "per_ids": list(per_account),
                                "per_amounts": list(per_account.values())})
    else:
        entries = [{"transaction_id": txn.id, "account_id": accounts[c.account].id, "slice": 0, "amount": -c.amount,
                    "currency": src.currency, "is_hold": False, "created_at": now} for c in credits]
        entries.append({"transaction_id": txn.id, "account_id": src.id, "slice": 0, "amount": total,
                        "currency": src.currency, "is_hold": False, "created_at": now})
        session.execute(Entry.__table__.insert(), entries)
        b = AccountBalance.__table__.c
        session.execute(update(AccountBalance.__table__).where(b.account_id == bindparam("aid"), b.slice == 0)
                        .values(credits_posted=b.credits_posted + bindparam("amt")),
                        [{"aid": aid, "amt": amt} for aid, amt in per_account.items()])
        session.execute(update(AccountBalance.__table__).where(b.account_id == src.id, b.slice == 0)
                        .values(debits_posted=b.debits_posted + total))
    return txn


_PG_BULK = text("""
WITH credit_entries AS (
    INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
    SELECT :txn, l.account_id, 0, -l.amount, :currency, false, :now
    FROM unnest(CAST(:account_ids AS bigint[]), CAST(:amounts AS bigint[])) AS l(account_id, amount)
), debit_entry AS (
    INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
    VALUES (:txn, :source_id, 0, :total, :currency, false, :now)
), credited AS (
    UPDATE ledger_balances b SET credits_posted = b.credits_posted + p.amount
    FROM unnest(CAST(:per_ids AS bigint[]), CAST(:per_amounts AS bigint[])) AS p(account_id, amount)
    WHERE b.account_id = p.account_id AND b.slice = 0
)
UPDATE ledger_balances SET debits_posted = debits_posted + :total WHERE account_id = :source_id AND slice = 0
""")
