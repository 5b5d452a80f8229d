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

from sqlalchemy import bindparam, select, text, update
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
               "credits": list(credits), "reference": reference, "metadata": metadata}
    text_ = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text_.encode()).hexdigest()


def _check(kind: str, key: str, credits: Sequence[Credit], reference: str | None) -> None:
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValidationFailed({"kind": ["Lower-case words joined by . _ or -, at most 64 characters."]})
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed({"idempotency_key": [f"1 to {MAX_KEY_LENGTH} characters."]})
    if not 1 <= len(credits) <= MAX_CREDITS:
        raise ValidationFailed({"credits": [f"A bulk posting has 1 to {MAX_CREDITS} credits."]})
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
    # Each account is locked against closing (FOR KEY SHARE) and judged in SQL: its id, and what is wrong
    # with it if anything, come back as plain values. On PostgreSQL the codes go as one array literal,
    # joined so each is an index look-up (= ANY of thousands scans the table).
    postgres = session.get_bind().dialect.name == "postgresql"
    wanted = ("JOIN unnest(CAST(CAST(:codes AS text) AS text[])) AS w(code) ON w.code = a.code" if postgres
              else "WHERE a.code IN :codes")
    query = text(f"""
        SELECT a.code, a.id, CASE WHEN a.status <> 'open' THEN 'closed'
                                  WHEN a.currency <> :currency THEN 'currency'
                                  WHEN a.mode <> 'single' OR a.normal_side <> 'credit' THEN 'kind' END
        FROM ledger_accounts a {wanted}""" + (" FOR KEY SHARE OF a" if postgres else ""))
    if not postgres:
        query = query.bindparams(bindparam("codes", expanding=True))
    found = session.connection().execute(query, {"codes": _text_array(codes) if postgres else codes,
                                                 "currency": src.currency}).all()
    account_ids = {code: account_id for code, account_id, _problem in found}
    for code in codes:
        if code not in account_ids:
            check_code(code)  # a malformed code is refused as such; a well-formed one is unknown
            raise NotFound(f"No ledger account {code}.", code="unknown_account")
    for code, _account_id, problem in found:
        if problem == "closed":
            raise Conflict(f"Account {code} is closed.", code="account_closed")
        if problem == "currency":
            raise RuleViolation(f"Account {code} is not in {src.currency}.", code="currency_mismatch")
        if problem == "kind":
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
        per_account[account_ids[c.account]] += c.amount
    conn = session.connection()
    if postgres:
        conn.execute(_PG_BULK, {"txn": txn.id, "account_ids": _int_array(account_ids[c.account] for c in credits),
                                "amounts": _int_array(c.amount for c in credits), "currency": src.currency,
                                "now": now, "source_id": src.id, "total": total,
                                "per_ids": _int_array(per_account), "per_amounts": _int_array(per_account.values())})
    else:
        entries = [{"transaction_id": txn.id, "account_id": account_ids[c.account], "slice": 0, "amount": -c.amount,
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


def _int_array(values) -> str:
    """A PostgreSQL array literal of integers: '{1,2,3}'."""
    return "{" + ",".join(map(str, values)) + "}"


def _text_array(values) -> str:
    """A PostgreSQL array literal of strings, each quoted: '{"a","b"}'."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


_PG_BULK = text("""
WITH credit_entries AS (
    INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
    SELECT :txn, l.account_id, 0, -l.amount, :currency, false, :now
    FROM unnest(CAST(CAST(:account_ids AS text) AS bigint[]), CAST(CAST(:amounts AS text) AS bigint[])) AS l(account_id, amount)
), debit_entry AS (
    INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
    VALUES (:txn, :source_id, 0, :total, :currency, false, :now)
), credited AS (
    UPDATE ledger_balances b SET credits_posted = b.credits_posted + p.amount
    FROM unnest(CAST(CAST(:per_ids AS text) AS bigint[]), CAST(CAST(:per_amounts AS text) AS bigint[])) AS p(account_id, amount)
    WHERE b.account_id = p.account_id AND b.slice = 0
)
UPDATE ledger_balances SET debits_posted = debits_posted + :total WHERE account_id = :source_id AND slice = 0
""")
