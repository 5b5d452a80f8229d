"""Check every invariant of the books and report each breach found."""

from __future__ import annotations

from sqlalchemy import and_, case, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from payments.ledger.models import (
    Account,
    AccountBalance,
    BalanceDelta,
    BalanceMode,
    Entry,
    Snapshot,
    Transaction,
    TransactionStatus,
    total,
)
from payments.ledger.types import VerifyReport

MAX_PROBLEMS = 100


def _positive(column):
    return total(case((column > 0, column), else_=0))


def _negative(column):
    return total(case((column < 0, -column), else_=0))


def verify(session: Session, *, max_problems: int = MAX_PROBLEMS) -> VerifyReport:
    """Check that the books balance, caches match entries and no balance broke its floor."""
    limit = max(1, min(int(max_problems), 10_000))
    report = VerifyReport(ok=True)

    def problem(check: str, **detail) -> None:
        report.ok = False
        if len(report.problems) < limit:
            report.problems.append({"check": check, **detail})

    report.checked = {
        "accounts": session.scalar(select(func.count()).select_from(Account)),
        "transactions": session.scalar(select(func.count()).select_from(Transaction)),
        "entries": session.scalar(select(func.count()).select_from(Entry)),
    }
    public_ids = select(Transaction.public_id).where(Transaction.id == Entry.transaction_id).scalar_subquery()

    # 1. Every transaction balances in every currency and has at least two entries.
    for txn, currency, difference in session.execute(
        select(public_ids, Entry.currency, total(Entry.amount))
        .group_by(Entry.transaction_id, Entry.currency)
        .having(func.sum(Entry.amount) != 0)
        .limit(limit)
    ):
        problem("unbalanced_transaction", transaction=txn, currency=currency, difference=difference)
    short = (
        select(Transaction.public_id, func.count(Entry.id))
        .outerjoin(Entry, Entry.transaction_id == Transaction.id)
        .group_by(Transaction.id, Transaction.public_id)
        .having(func.count(Entry.id) < 2)
        .limit(limit)
    )
    for txn, n in session.execute(short):
        problem("too_few_entries", transaction=txn, entries=n)

    # 2. All entries together sum to zero per currency.
    for currency, difference in session.execute(
        select(Entry.currency, total(Entry.amount)).group_by(Entry.currency).having(func.sum(Entry.amount) != 0)
    ):
        problem("books_do_not_balance", currency=currency, difference=difference)

    # 3. An entry is in its account's currency and on one of its slices.
    for entry_id, code in session.execute(
        select(Entry.id, Account.code)
        .join(Account, Account.id == Entry.account_id)
        .where(or_(Entry.currency != Account.currency, Entry.slice < 0, Entry.slice >= Account.slices))
        .limit(limit)
    ):
        problem("entry_mismatches_account", entry=entry_id, account=code)

    # 4. Every cached balance equals the sum of its entries.
    pending_hold = and_(Entry.is_hold.is_(True), Transaction.status == TransactionStatus.PENDING)
    expected = (
        select(
            Entry.account_id,
            Entry.slice,
            _positive(case((Entry.is_hold.is_(False), Entry.amount), else_=0)).label("dp"),
            _negative(case((Entry.is_hold.is_(False), Entry.amount), else_=0)).label("cp"),
            _positive(case((pending_hold, Entry.amount), else_=0)).label("dh"),
            _negative(case((pending_hold, Entry.amount), else_=0)).label("ch"),
        )
        .join(Transaction, Transaction.id == Entry.transaction_id)
        .group_by(Entry.account_id, Entry.slice)
        .subquery()
    )
    deltas = (
        select(
            BalanceDelta.account_id,
            total(BalanceDelta.debits_posted).label("dp"),
            total(BalanceDelta.credits_posted).label("cp"),
            total(BalanceDelta.debits_pending).label("dh"),
            total(BalanceDelta.credits_pending).label("ch"),
        )
        .group_by(BalanceDelta.account_id)
        .subquery()
    )
    cached = {}
    for name, column in (("dp", "debits_posted"), ("cp", "credits_posted"),
                         ("dh", "debits_pending"), ("ch", "credits_pending")):
        cached[name] = getattr(AccountBalance, column) + case(
            (AccountBalance.slice == 0, func.coalesce(getattr(deltas.c, name), 0)), else_=0
        )
    mismatched = (
        select(
            Account.code, AccountBalance.slice,
            *(cached[n] for n in ("dp", "cp", "dh", "ch")),
            *(func.coalesce(getattr(expected.c, n), 0) for n in ("dp", "cp", "dh", "ch")),
        )
        .join(Account, Account.id == AccountBalance.account_id)
        .outerjoin(expected, and_(expected.c.account_id == AccountBalance.account_id,
                                  expected.c.slice == AccountBalance.slice))
        .outerjoin(deltas, deltas.c.account_id == AccountBalance.account_id)
        .where(or_(*(cached[n] != func.coalesce(getattr(expected.c, n), 0) for n in ("dp", "cp", "dh", "ch"))))
        .limit(limit)
    )
    for code, slice_, *values in session.execute(mismatched):
        problem("cached_balance_differs", account=code, slice=slice_,
                cached=dict(zip(("dp", "cp", "dh", "ch"), values[:4])),
                entries=dict(zip(("dp", "cp", "dh", "ch"), values[4:])))
    orphans = select(BalanceDelta.account_id).join(Account, Account.id == BalanceDelta.account_id).where(
        Account.mode != BalanceMode.APPEND_ONLY
    ).limit(limit)
    for (account_id,) in session.execute(orphans):
        problem("delta_on_locked_account", account_id=account_id)

    # 5. No balance that may not go negative is negative (each slice, hence their sum).
    for code, slice_, available in session.execute(
        select(
            Account.code,
            AccountBalance.slice,
            case(
                (Account.normal_side == "credit",
                 AccountBalance.credits_posted - AccountBalance.debits_posted - AccountBalance.debits_pending),
                else_=AccountBalance.debits_posted - AccountBalance.credits_posted - AccountBalance.credits_pending,
            ).label("available"),
        )
        .join(Account, Account.id == AccountBalance.account_id)
        .where(Account.allow_negative.is_(False))
        .where(
            case(
                (Account.normal_side == "credit",
                 AccountBalance.credits_posted - AccountBalance.debits_posted - AccountBalance.debits_pending),
                else_=AccountBalance.debits_posted - AccountBalance.credits_posted - AccountBalance.credits_pending,
            ) < 0
        )
        .limit(limit)
    ):
        problem("negative_balance", account=code, slice=slice_, available=available)

    # 6. Reversals never exceed what they reverse, and captures never exceed their hold.
    for link, check in ((Transaction.reverses_id, "reversal_exceeds_original"),
                        (Transaction.pending_id, "capture_exceeds_hold")):
        child = aliased(Transaction)
        original = (
            select(Entry.transaction_id.label("txn_id"), Entry.account_id, total(Entry.amount).label("net"))
            .where(Entry.transaction_id.in_(select(link).where(link.is_not(None))))
            .group_by(Entry.transaction_id, Entry.account_id)
        )
        follow = (
            select(getattr(child, link.key).label("txn_id"), Entry.account_id, total(Entry.amount).label("net"))
            .join(child, child.id == Entry.transaction_id)
            .where(getattr(child, link.key).is_not(None))
            .group_by(getattr(child, link.key), Entry.account_id)
        )
        both = union_all(
            original.add_columns(literal(1).label("is_original")),
            follow.add_columns(literal(0).label("is_original")),
        ).subquery()
        orig_total = total(case((both.c.is_original == 1, both.c.net), else_=0))
        follow_total = total(case((both.c.is_original == 0, both.c.net), else_=0))
        if check == "reversal_exceeds_original":
            # A reversal moves the other way: what remains of the original is their sum.
            left_over = orig_total + follow_total
            bad = or_(orig_total * left_over < 0, func.abs(left_over) > func.abs(orig_total))
        else:
            bad = or_(orig_total * follow_total < 0, func.abs(follow_total) > func.abs(orig_total))
        for txn_id, account_id, o, f in session.execute(
            select(both.c.txn_id, both.c.account_id, orig_total, follow_total)
            .group_by(both.c.txn_id, both.c.account_id)
            .having(bad)
            .limit(limit)
        ):
            problem(check, transaction_id=txn_id, account_id=account_id, original=o, follow_up=f)

    # 7. A hold is posted exactly when it has a capture; other transactions are never holds' captures.
    capture = aliased(Transaction)
    captures = select(func.count(capture.id)).where(capture.pending_id == Transaction.id).scalar_subquery()
    for public_id, status, n in session.execute(
        select(Transaction.public_id, Transaction.status, captures)
        .where(
            or_(
                and_(Transaction.is_hold.is_(True), Transaction.status == TransactionStatus.POSTED, captures != 1),
                and_(Transaction.status != TransactionStatus.POSTED, captures != 0),
                and_(Transaction.is_hold.is_(False), captures != 0),
            )
        )
        .limit(limit)
    ):
        problem("hold_state", transaction=public_id, status=status.value, captures=n)

    # 8. The latest snapshot of each account still matches its entries.
    latest = select(Snapshot.account_id, func.max(Snapshot.as_of).label("as_of")).group_by(
        Snapshot.account_id
    ).subquery()
    snapshot_sums = (
        select(
            Snapshot.id,
            Snapshot.debits_posted,
            Snapshot.credits_posted,
            Snapshot.entry_count,
            _positive(Entry.amount),
            _negative(Entry.amount),
            func.count(Entry.id),
        )
        .join(latest, and_(latest.c.account_id == Snapshot.account_id, latest.c.as_of == Snapshot.as_of))
        .outerjoin(
            Entry,
            and_(Entry.account_id == Snapshot.account_id, Entry.is_hold.is_(False),
                 Entry.created_at <= Snapshot.as_of),
        )
        .group_by(Snapshot.id, Snapshot.debits_posted, Snapshot.credits_posted, Snapshot.entry_count)
    )
    for snap_id, sdp, scp, sn, edp, ecp, en in session.execute(snapshot_sums):
        if (sdp, scp, sn) != (edp, ecp, en):
            problem("snapshot_differs", snapshot_id=snap_id, snapshot=[sdp, scp, sn], entries=[edp, ecp, en])

    return report
