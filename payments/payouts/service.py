"""Payout use cases: approval, sending (Stripe Connect or the bank transfer file), what became of the
money, failures as exceptions for finance, and who may see which payout.

A payout is created by settlement, its amount already moved from the merchant's payable to
`payout:in-transit`. From there:

    pending_approval --approve--> ready --send_due / create_bank_file--> submitted --> paid
                                      \\                                    \\           |
                                       '----------------------------------> failed <---'

  paid                      payout:in-transit -> union:bank (bank) or stripe:clearing (Stripe)
  failed before paid        payout:in-transit -> the merchant's payable
  returned after paid       union:bank or stripe:clearing -> the merchant's payable

Each move carries the ledger key `<payout>:paid`, `<payout>:failed` or `<payout>:returned`, and the
payout row is locked while it changes, so however often and in whatever order Stripe or the bank
report an outcome, the money moves once. What the provider reports carries its time; news older than
the payout's `status_at` never overrides a newer state. A failed payout is an open exception until
finance resolves it; its money joins the merchant's next settlement.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from core import audit
from core.auth import SYSTEM, Actor
from core.crypto import FieldCipher
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ServiceUnavailable, ValidationFailed
from core.i18n import business_date
from core.ids import new_public_id
from core.models import FINANCE_ROLES, Role, User
from core.pagination import Page, paginate
from merchants.models import Merchant, SettlementMethod
from payments import accounts, ledger
from payments.ledger import credit, debit
from payments.payouts import bankfile
from payments.payouts.models import BankFile, ExceptionStatus, Payout, PayoutStatus
from payments.payouts.provider import PayoutProvider, SendFailed, Sent
from payments.settlement.models import Settlement

log = logging.getLogger(__name__)

READERS = frozenset({*FINANCE_ROLES, Role.AUDITOR})
MERCHANT_READERS = frozenset({Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER})
STRIPE = Actor(None, "stripe", None)
BANK = Actor(None, "bank", None)
# The merchants' bank account numbers, as merchant onboarding encrypts them.
BANK_ACCOUNT_CONTEXT = "merchant.bank_account"
SEND_BATCH = 200  # Stripe payouts sent by one call of send_due
BANK_FILE_MAX_PAYOUTS = 5000
ANSWER_MAX_BYTES = 2 * 1024 * 1024
ANSWER_MAX_LINES = BANK_FILE_MAX_PAYOUTS
NOTE_MAX = 1000
MESSAGE_MAX = 500
CODE_MAX = 100
EXCEPTIONS_ON_PAGE = 100

# What can be wrong with a line of the bank's answer, beyond its own text (bankfile.LINE_ERRORS).
ANSWER_ERRORS = {
    **bankfile.LINE_ERRORS,
    "not_in_file": "No payout of this bank file has this reference.",
    "already_failed": "The payout has already failed; its money is back on the merchant's payable.",
}


def business_today() -> dt.date:
    """Return today's date in the union's time zone (payouts fall due on business days); tests replace it."""
    return business_date()


def snapshot(payout: Payout) -> dict:
    """Return the fields the audit log keeps for a payout (nothing of the bank account but its mask)."""
    return {"status": payout.status.value, "amount": payout.amount, "currency": payout.currency,
            "method": payout.method.value, "due_on": payout.due_on, "approved_by_id": payout.approved_by_id,
            "stripe_transfer_id": payout.stripe_transfer_id, "stripe_payout_id": payout.stripe_payout_id,
            "bank_file_id": payout.bank_file_id, "attempts": payout.attempts, "last_error": payout.last_error,
            "failure_code": payout.failure_code, "paid_transaction_id": payout.paid_transaction_id,
            "returned_transaction_id": payout.returned_transaction_id,
            "exception_status": payout.exception_status.value if payout.exception_status else None}


def _locked(session: Session, condition) -> Payout | None:
    return session.scalar(select(Payout).where(condition).with_for_update(of=Payout)
                          .execution_options(populate_existing=True))


def _locked_payout(session: Session, payout_id: str) -> Payout:
    payout = _locked(session, Payout.public_id == payout_id)
    if payout is None:
        raise NotFound("No such payout.")
    return payout


# --- who sees what ---------------------------------------------------------------------------------

def _visible(actor: Actor, query: Select) -> Select:
    """Limit a payout query to what the actor may see: finance and auditors all, a merchant's owner and
    managers their own merchant's, nobody else anything."""
    if actor.role in READERS:
        return query
    if actor.role in MERCHANT_READERS and actor.merchant_id is not None:
        return query.where(Payout.merchant_id == actor.merchant_id)
    raise Forbidden("Your role may not see payouts.")


def get_payout(session: Session, actor: Actor, payout_id: str) -> Payout:
    """Return a payout the actor may see; another merchant's is NotFound."""
    payout = session.scalar(_visible(actor, select(Payout).where(Payout.public_id == payout_id)))
    if payout is None:
        raise NotFound("No such payout.")
    return payout


def list_payouts(session: Session, actor: Actor, *, status: PayoutStatus | None = None,
                 merchant_id: str | None = None, exception_status: ExceptionStatus | None = None,
                 limit: int, cursor: str | None) -> Page:
    """Return the payouts the actor may see, newest first, filtered."""
    query = _visible(actor, select(Payout))
    if status is not None:
        query = query.where(Payout.status == status)
    if exception_status is not None:
        query = query.where(Payout.exception_status == exception_status)
    if merchant_id:
        query = query.where(Payout.merchant_id == select(Merchant.id).where(Merchant.public_id == merchant_id)
                            .scalar_subquery())
    return paginate(session, query, Payout.id, limit=limit, cursor=cursor, descending=True)


def open_exceptions(session: Session, actor: Actor, *, limit: int = EXCEPTIONS_ON_PAGE) -> list[Payout]:
    """Return the failed payouts finance has not resolved yet, oldest failure first."""
    query = _visible(actor, select(Payout).where(Payout.exception_status == ExceptionStatus.OPEN))
    return list(session.scalars(query.order_by(Payout.failed_at, Payout.id).limit(limit)))


def status_counts(session: Session, actor: Actor) -> dict[str, int]:
    """Count the payouts the actor may see by status, and the open exceptions."""
    query = _visible(actor, select(Payout.status, func.count()).group_by(Payout.status))
    counts = {status.value: n for status, n in session.execute(query)}
    exceptions = _visible(actor, select(func.count()).select_from(Payout)
                          .where(Payout.exception_status == ExceptionStatus.OPEN))
    counts["exceptions"] = session.scalar(exceptions)
    return counts


@dataclass
class Refs:
    """The public ids a payout's row only holds as keys: its settlements, bank file and people."""

    settlement_id: str | None = None
    carried_into_id: str | None = None
    bank_file_id: str | None = None
    created_by: str | None = None
    approved_by: str | None = None
    resolved_by: str | None = None


def with_refs(session: Session, payouts: list[Payout]) -> list[Payout]:
    """Attach each payout's `refs` (public ids of what it points at), read in three queries for all."""
    settlements = {p.settlement_id for p in payouts} | {p.carried_into_id for p in payouts if p.carried_into_id}
    files = {p.bank_file_id for p in payouts if p.bank_file_id}
    people = {i for p in payouts for i in (p.created_by_id, p.approved_by_id, p.resolved_by_id) if i}
    stl = dict(session.execute(select(Settlement.id, Settlement.public_id).where(Settlement.id.in_(settlements))
                               ).all()) if settlements else {}
    bfs = dict(session.execute(select(BankFile.id, BankFile.public_id).where(BankFile.id.in_(files))).all()) \
        if files else {}
    users = dict(session.execute(select(User.id, User.public_id).where(User.id.in_(people))).all()) if people else {}
    for p in payouts:
        p.refs = Refs(stl.get(p.settlement_id), stl.get(p.carried_into_id), bfs.get(p.bank_file_id),
                      users.get(p.created_by_id), users.get(p.approved_by_id), users.get(p.resolved_by_id))
    return payouts


def people_names(session: Session, payouts: list[Payout]) -> dict[int, str]:
    """Return the display names (or usernames) of the people who created, approved or resolved payouts."""
    ids = {i for p in payouts for i in (p.created_by_id, p.approved_by_id, p.resolved_by_id) if i}
    if not ids:
        return {}
    return {uid: name or username for uid, name, username in
            session.execute(select(User.id, User.display_name, User.username).where(User.id.in_(ids)))}


# --- approval ----------------------------------------------------------------------------------------

def approve(session: Session, actor: Actor, payout_id: str) -> Payout:
    """Approve a large payout (a finance approver other than whoever created it): it becomes ready."""
    if actor.role != Role.FINANCE_APPROVER:
        raise Forbidden("Only a finance approver approves payouts.", code="not_an_approver")
    payout = _locked_payout(session, payout_id)
    if payout.approved_by_id is not None:
        return payout
    if payout.status != PayoutStatus.PENDING_APPROVAL:
        raise Conflict(f"The payout is {payout.status.value}: it does not wait for approval.",
                       code="payout_not_pending_approval")
    if actor.user_id is not None and actor.user_id == payout.created_by_id:
        raise Forbidden("The payout was settled by you: another approver must approve it.", code="same_person")
    before = snapshot(payout)
    payout.status = PayoutStatus.READY
    payout.approved_by_id, payout.approved_at = actor.user_id, utcnow()
    session.flush()
    audit.record(session, actor, "payout.approved", "payout", payout.public_id, before=before,
                 after=snapshot(payout))
    session.commit()
    return payout


# --- sending through Stripe -----------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    payout_id: str
    status: str
    error: str | None = None


@dataclass
class SendReport:
    """What one run of send_due did: payouts sent, payouts that stay ready with an error, and each."""

    sent: int = 0
    failed: int = 0
    results: list[SendResult] = field(default_factory=list)


def _due(method: SettlementMethod, today: dt.date):
    return and_(Payout.status == PayoutStatus.READY, Payout.method == method, Payout.due_on <= today)


def due_summary(session: Session, method: SettlementMethod, *, today: dt.date) -> tuple[int, int]:
    """Count and total the payouts of a method that are ready and due (what sending or a bank file takes)."""
    count, total = session.execute(select(func.count(), func.coalesce(func.sum(Payout.amount), 0))
                                   .where(_due(method, today))).one()
    return int(count), int(total)


def send_due(session: Session, provider: PayoutProvider, *, today: dt.date, actor: Actor = SYSTEM,
             limit: int = SEND_BATCH) -> SendReport:
    """Send the Stripe payouts that are ready and due; one that Stripe refuses stays ready with its error.

    Each payout is its own transaction, and none is held open across a call to Stripe.
    """
    ids = list(session.scalars(select(Payout.public_id).where(_due(SettlementMethod.STRIPE, today))
                               .order_by(Payout.due_on, Payout.id).limit(max(1, min(limit, SEND_BATCH)))))
    session.rollback()
    report = SendReport()
    for payout_id in ids:
        result = _send_one(session, provider, actor, payout_id, today)
        if result is None:
            continue
        report.results.append(result)
        if result.error is None:
            report.sent += 1
        else:
            report.failed += 1
    return report


def _send_one(session: Session, provider: PayoutProvider, actor: Actor, payout_id: str,
              today: dt.date) -> SendResult | None:
    payout = _locked(session, and_(Payout.public_id == payout_id, _due(SettlementMethod.STRIPE, today)))
    if payout is None:  # sent, paid or failed by someone else meanwhile
        session.rollback()
        return None
    request = {"payout_id": payout.public_id, "amount": payout.amount, "currency": payout.currency,
               "account_id": payout.stripe_account_id, "transfer_id": payout.stripe_transfer_id,
               "attempts": payout.attempts}
    # End the transaction before calling Stripe: holding the row (on SQLite, the database's write lock)
    # across a network call would stall every other writer. Stripe's idempotency keys make a concurrent
    # sender of the same payout get the same transfer and payout.
    session.rollback()
    sent: Sent | None = None
    failure: SendFailed | None = None
    if not request["account_id"]:
        failure = SendFailed("The merchant has no Stripe account to pay into.", code="no_stripe_account")
    else:
        try:
            sent = provider.send(**request)
        except SendFailed as exc:
            failure = exc
    payout = _locked_payout(session, payout_id)
    before = snapshot(payout)
    payout.attempts += 1
    if failure is not None:
        if failure.transfer_id and payout.stripe_transfer_id is None:
            payout.stripe_transfer_id = failure.transfer_id
        if payout.status == PayoutStatus.READY:
            payout.last_error = failure.message[:MESSAGE_MAX]
        session.flush()
        audit.record(session, actor, "payout.send_failed", "payout", payout_id, before=before,
                     after={**snapshot(payout), "code": failure.code})
        session.commit()
        log.warning("Payout %s not sent (%s): %s", payout_id, failure.code, failure.message)
        return SendResult(payout_id, payout.status.value, failure.message)
    payout.stripe_transfer_id = payout.stripe_transfer_id or sent.transfer_id
    payout.stripe_payout_id = payout.stripe_payout_id or sent.payout_id
    action = "payout.stripe_ids_recorded"
    if payout.status == PayoutStatus.READY:
        action = "payout.submitted"
        payout.status = PayoutStatus.SUBMITTED
        payout.submitted_at = utcnow()
        payout.last_error = None
        # Stripe's own clock, the one its events carry: a payout.paid is never older than this.
        payout.status_at = max(payout.status_at, sent.created) if payout.status_at else sent.created
    # else: another sender, or Stripe's webhook, got there before this answer was recorded; keep what they did.
    session.flush()
    audit.record(session, actor, action, "payout", payout_id, before=before, after=snapshot(payout))
    session.commit()
    return SendResult(payout_id, payout.status.value)


# --- the bank transfer file --------------------------------------------------------------------------

def _bank_line(cipher: FieldCipher, payout: Payout) -> bankfile.BankLine | None:
    """Return the payout's line of the transfer file, or None when its merchant's bank details are incomplete."""
    merchant = payout.merchant
    if not (merchant.bank_account_enc and merchant.bank_name and merchant.bank_account_name):
        return None
    try:
        number = cipher.decrypt(merchant.bank_account_enc, BANK_ACCOUNT_CONTEXT)
    except (InvalidTag, ValueError):
        log.error("The bank account of merchant %s cannot be decrypted", merchant.public_id)
        return None
    return bankfile.BankLine(merchant.bank_account_name, merchant.bank_name, number, payout.amount,
                             payout.currency, payout.public_id)


def bank_file_snapshot(bank_file: BankFile) -> dict:
    return {"payouts_count": bank_file.payouts_count, "total": bank_file.total, "currency": bank_file.currency,
            "sha256": bank_file.sha256, "answered_at": bank_file.answered_at}


def create_bank_file(session: Session, actor: Actor, *, today: dt.date, cipher: FieldCipher,
                     limit: int = BANK_FILE_MAX_PAYOUTS) -> BankFile:
    """Put every bank payout that is ready and due into one new transfer file; they become submitted.

    A payout whose merchant lacks complete bank details stays ready, with that as its last error.
    """
    if actor.role != Role.FINANCE_MAKER:
        raise Forbidden("Only a finance maker makes bank transfer files.")
    # SKIP LOCKED: two makers generating at once split the payouts between their files, never share one.
    payouts = list(session.scalars(
        select(Payout).where(_due(SettlementMethod.BANK, today), Payout.currency == accounts.CURRENCY)
        .order_by(Payout.id).limit(max(1, min(limit, BANK_FILE_MAX_PAYOUTS)))
        .with_for_update(of=Payout, skip_locked=True).execution_options(populate_existing=True)))
    lines, included, lacking = [], [], []
    for payout in payouts:
        line = _bank_line(cipher, payout)
        if line is None:
            lacking.append(payout)
        else:
            lines.append(line)
            included.append(payout)
    if not included:
        message = "No bank payout is due."
        if lacking:
            message = (f"No bank payout can be paid: the {len(lacking)} due lack their merchants' complete "
                       "bank details.")
        raise RuleViolation(message, code="no_payouts_due")
    content = bankfile.write(lines)
    now = utcnow()
    bank_file = BankFile(public_id=new_public_id("pbf"), payouts_count=len(included),
                         total=sum(p.amount for p in included), currency=accounts.CURRENCY,
                         sha256=bankfile.digest(content), created_by_id=actor.user_id, created_at=now)
    session.add(bank_file)
    session.flush()
    for payout in included:
        before = snapshot(payout)
        payout.status = PayoutStatus.SUBMITTED
        payout.bank_file_id = bank_file.id
        payout.submitted_at = payout.status_at = now
        payout.attempts += 1
        payout.last_error = None
        session.flush()
        audit.record(session, actor, "payout.submitted", "payout", payout.public_id, before=before,
                     after={**snapshot(payout), "bank_file": bank_file.public_id})
    for payout in lacking:
        before = snapshot(payout)
        payout.last_error = "The merchant's bank details are incomplete: it was left out of the bank file."
        session.flush()
        audit.record(session, actor, "payout.send_failed", "payout", payout.public_id, before=before,
                     after={**snapshot(payout), "code": "bank_details_missing"})
    audit.record(session, actor, "payout_bank_file.created", "payout_bank_file", bank_file.public_id,
                 after={**bank_file_snapshot(bank_file), "left_out": [p.public_id for p in lacking]})
    session.commit()
    return bank_file


def get_bank_file(session: Session, actor: Actor, bank_file_id: str) -> BankFile:
    """Return a bank transfer file (finance only)."""
    if actor.role not in FINANCE_ROLES:
        raise Forbidden("Only finance sees bank transfer files.")
    bank_file = session.scalar(select(BankFile).where(BankFile.public_id == bank_file_id))
    if bank_file is None:
        raise NotFound("No such bank file.")
    return bank_file


def list_bank_files(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Page:
    """Return the bank transfer files, newest first (finance only)."""
    if actor.role not in FINANCE_ROLES:
        raise Forbidden("Only finance sees bank transfer files.")
    return paginate(session, select(BankFile), BankFile.id, limit=limit, cursor=cursor, descending=True)


def bank_file_content(session: Session, actor: Actor, bank_file_id: str, *, cipher: FieldCipher) -> bytes:
    """Return the transfer file exactly as generated (with the full account numbers); the download is audited.

    Refused (409) when a merchant's bank details changed since, as the file would no longer be the one made.
    """
    bank_file = get_bank_file(session, actor, bank_file_id)
    lines = [_bank_line(cipher, payout) for payout in bank_file.payouts]
    content = bankfile.write(line for line in lines if line is not None)
    if None in lines or bankfile.digest(content) != bank_file.sha256:
        raise Conflict("A merchant's bank details changed after this file was made: it cannot be made again "
                       "as it was. Check with the bank what it received.", code="bank_file_changed")
    audit.record(session, actor, "payout_bank_file.downloaded", "payout_bank_file", bank_file.public_id,
                 after={"sha256": bank_file.sha256, "payouts_count": bank_file.payouts_count})
    session.commit()
    return content


@dataclass(frozen=True)
class AnswerResult:
    """What became of one line of the bank's answer."""

    line: int
    reference: str
    status: str | None
    outcome: str  # paid, failed, returned (failed after paid), unchanged, error
    error: str | None = None

    @property
    def message(self) -> str | None:
        return ANSWER_ERRORS.get(self.error) if self.error else None


@dataclass
class AnswerImport:
    bank_file: BankFile
    results: list[AnswerResult]

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)


def import_bank_statuses(session: Session, actor: Actor, bank_file_id: str, fileobj: BinaryIO, *,
                         max_bytes: int = ANSWER_MAX_BYTES, max_lines: int = ANSWER_MAX_LINES) -> AnswerImport:
    """Apply the bank's answer to a transfer file: each line marks its payout paid or failed.

    Lines in error are reported and skipped; the others apply. Importing the same answer again changes
    nothing (every line is `unchanged`).
    """
    if actor.role not in FINANCE_ROLES:
        raise Forbidden("Only finance imports the bank's answers.")
    lines = bankfile.read_answer(fileobj, max_bytes=max_bytes, max_lines=max_lines)
    # The file's row is the lock of its answers: two imports of one file take turns.
    bank_file = session.scalar(select(BankFile).where(BankFile.public_id == bank_file_id)
                               .with_for_update(of=BankFile).execution_options(populate_existing=True))
    if bank_file is None:
        raise NotFound("No such bank file.")
    payouts = {p.public_id: p for p in session.scalars(
        select(Payout).where(Payout.bank_file_id == bank_file.id).order_by(Payout.id)
        .with_for_update(of=Payout).execution_options(populate_existing=True))}
    now = utcnow()
    results = []
    for line in lines:
        if line.error:
            results.append(AnswerResult(line.line, line.reference, line.status, "error", line.error))
            continue
        payout = payouts.get(line.reference)
        if payout is None:
            results.append(AnswerResult(line.line, line.reference, line.status, "error", "not_in_file"))
            continue
        try:
            if line.status == "paid":
                outcome = record_paid(session, actor, payout, at=now)
            else:
                outcome = record_failed(session, actor, payout, at=now, code="bank_returned",
                                        message=line.reason or "The bank did not pay it.")
        except Conflict:
            results.append(AnswerResult(line.line, line.reference, line.status, "error", "already_failed"))
            continue
        results.append(AnswerResult(line.line, line.reference, line.status,
                                    "unchanged" if outcome == "stale" else outcome))
    before = bank_file_snapshot(bank_file)
    bank_file.answered_at = now
    answer = AnswerImport(bank_file, results)
    audit.record(session, actor, "payout_bank_file.answered", "payout_bank_file", bank_file.public_id,
                 before=before, after={**bank_file_snapshot(bank_file),
                                       **{o: answer.count(o) for o in ("paid", "failed", "returned", "unchanged",
                                                                        "error")}})
    session.commit()
    return answer


# --- what became of the money --------------------------------------------------------------------------
# These run in the caller's transaction (a webhook's, which also records the event, or an import's):
# the caller commits.

def _settled_account(payout: Payout) -> str:
    """The platform account the money left through: the union's bank, or the platform's Stripe balance."""
    return accounts.BANK if payout.method == SettlementMethod.BANK else accounts.CLEARING


def _older(payout: Payout, at: dt.datetime | None) -> bool:
    return at is not None and payout.status_at is not None and at < payout.status_at


def record_paid(session: Session, actor: Actor, payout: Payout, *, at: dt.datetime | None = None) -> str:
    """Mark a locked payout paid: in transit -> the bank or Stripe clearing account.

    Return `paid`, `unchanged` (already paid) or `stale` (the news is older than the payout's state);
    refuse (409) a payout that was never sent or has failed.
    """
    if payout.status == PayoutStatus.PAID:
        return "unchanged"
    if _older(payout, at):
        return "stale"
    if payout.status == PayoutStatus.FAILED:
        raise Conflict("The payout has already failed; its money is back on the merchant's payable.",
                       code="payout_failed")
    if payout.status == PayoutStatus.PENDING_APPROVAL:
        raise Conflict("The payout is waiting for approval; it was never sent.", code="payout_not_sent")
    before = snapshot(payout)
    accounts.open_platform_accounts(session)
    txn = ledger.post(session, kind="payout_paid", idempotency_key=f"{payout.public_id}:paid",
                      reference=payout.public_id,
                      entries=[debit(accounts.IN_TRANSIT, payout.amount),
                               credit(_settled_account(payout), payout.amount)],
                      metadata={"payout_id": payout.public_id, "merchant_id": payout.merchant.public_id,
                                "method": payout.method.value})
    now = utcnow()
    payout.status = PayoutStatus.PAID
    payout.paid_at = at or now
    payout.status_at = at or now
    payout.paid_transaction_id = txn.public_id
    payout.last_error = None
    session.flush()
    audit.record(session, actor, "payout.paid", "payout", payout.public_id, before=before, after=snapshot(payout))
    return "paid"


def record_failed(session: Session, actor: Actor, payout: Payout, *, code: str, message: str,
                  at: dt.datetime | None = None) -> str:
    """Mark a locked payout failed and give its money back to the merchant's payable; open an exception.

    Before it was paid the money comes out of transit; after (returned by the bank), out of the bank or
    Stripe clearing account. Return `failed`, `returned`, `unchanged` (already failed) or `stale`;
    refuse (409) a payout that was never approved.
    """
    if payout.status == PayoutStatus.FAILED:
        return "unchanged"
    if _older(payout, at):
        return "stale"
    if payout.status == PayoutStatus.PENDING_APPROVAL:
        raise Conflict("The payout is waiting for approval; it was never sent.", code="payout_not_sent")
    returned = payout.status == PayoutStatus.PAID
    source, suffix, kind = ((_settled_account(payout), "returned", "payout_returned") if returned
                            else (accounts.IN_TRANSIT, "failed", "payout_failed"))
    before = snapshot(payout)
    accounts.open_platform_accounts(session)
    merchant = payout.merchant
    txn = ledger.post(session, kind=kind, idempotency_key=f"{payout.public_id}:{suffix}",
                      reference=payout.public_id,
                      entries=[debit(source, payout.amount), credit(merchant.payable_account, payout.amount)],
                      metadata={"payout_id": payout.public_id, "merchant_id": merchant.public_id,
                                "method": payout.method.value, "failure_code": code[:CODE_MAX]})
    now = utcnow()
    payout.status = PayoutStatus.FAILED
    payout.failed_at = at or now
    payout.status_at = at or now
    payout.failure_code = code[:CODE_MAX]
    payout.failure_message = message[:MESSAGE_MAX]
    payout.returned_transaction_id = txn.public_id
    payout.exception_status = ExceptionStatus.OPEN
    session.flush()
    audit.record(session, actor, f"payout.{suffix}", "payout", payout.public_id, before=before,
                 after={**snapshot(payout), "reason": payout.failure_message})
    log.warning("Payout %s %s (%s): %s; the money is back on %s", payout.public_id, suffix, code, message,
                merchant.payable_account)
    return suffix


def mark_paid(session: Session, actor: Actor, payout_id: str, *, at: dt.datetime | None = None) -> Payout:
    """Mark a payout paid (idempotent; 409 for one that failed or was never sent); the caller commits."""
    payout = _locked_payout(session, payout_id)
    record_paid(session, actor, payout, at=at)
    return payout


def mark_failed(session: Session, actor: Actor, payout_id: str, *, code: str, message: str,
                at: dt.datetime | None = None) -> Payout:
    """Mark a payout failed, before or after it was paid (idempotent; 409 for one never sent); the caller
    commits."""
    payout = _locked_payout(session, payout_id)
    record_failed(session, actor, payout, code=code, message=message, at=at)
    return payout


# --- Stripe's news -------------------------------------------------------------------------------------

def payout_for_stripe(session: Session, *, payout_id: str | None, transfer_id: str | None = None,
                      stripe_payout_id: str | None = None) -> Payout | None:
    """Find and lock our payout that a Stripe object is about: by its metadata, else by Stripe's ids."""
    if payout_id:
        found = _locked(session, Payout.public_id == payout_id)
        if found is not None:
            return found
    if transfer_id:
        found = _locked(session, Payout.stripe_transfer_id == transfer_id)
        if found is not None:
            return found
    if stripe_payout_id:
        return _locked(session, Payout.stripe_payout_id == stripe_payout_id)
    return None


def record_stripe_ids(session: Session, payout: Payout, *, transfer_id: str | None = None,
                      stripe_payout_id: str | None = None) -> bool:
    """Keep Stripe's ids on a locked payout where it has none yet; refuse ids that contradict ours.

    Return False when Stripe names another transfer or payout than the one recorded (not ours to act on).
    """
    if transfer_id and payout.stripe_transfer_id not in (None, transfer_id):
        return False
    if stripe_payout_id and payout.stripe_payout_id not in (None, stripe_payout_id):
        return False
    changed = (transfer_id and payout.stripe_transfer_id is None) or (
        stripe_payout_id and payout.stripe_payout_id is None)
    if changed:
        before = snapshot(payout)
        payout.stripe_transfer_id = payout.stripe_transfer_id or transfer_id
        payout.stripe_payout_id = payout.stripe_payout_id or stripe_payout_id
        session.flush()
        audit.record(session, STRIPE, "payout.stripe_ids_recorded", "payout", payout.public_id, before=before,
                     after=snapshot(payout))
    return True


# --- exceptions ------------------------------------------------------------------------------------------

def resolve_exception(session: Session, actor: Actor, payout_id: str, note: str, *,
                      provider: PayoutProvider | None = None) -> Payout:
    """Close a failed payout's exception with finance's note of what was done about it.

    A failed Stripe payout's money is back on the merchant's Stripe balance, not the platform's: its
    transfer is reversed first (through `provider`), so that the settlement that pays it again does not pay
    the merchant twice. If Stripe does not take it back, the exception stays open.
    """
    if actor.role not in FINANCE_ROLES:
        raise Forbidden("Only finance resolves payout exceptions.")
    note = (note or "").strip()
    if not note or len(note) > NOTE_MAX:
        raise ValidationFailed({"note": [f"Say what was done about the failed payout (1-{NOTE_MAX} characters)."]})
    payout = _locked_payout(session, payout_id)
    if payout.exception_status is None:
        raise Conflict("The payout has not failed: there is no exception to resolve.", code="no_exception")
    if payout.exception_status == ExceptionStatus.RESOLVED:
        if payout.exception_note == note:
            return payout
        raise Conflict("The exception is already resolved.", code="exception_resolved")
    if payout.method == SettlementMethod.STRIPE and payout.stripe_transfer_id and payout.stripe_reversal_id is None:
        transfer_id, amount = payout.stripe_transfer_id, payout.amount
        # No row lock is held while Stripe answers; the reversal's idempotency key makes a retry harmless.
        session.rollback()
        if provider is None:
            raise ServiceUnavailable("Stripe must take the transfer back before the exception is resolved.",
                                     code="stripe_not_configured")
        try:
            reversal = provider.reclaim(payout_id=payout_id, transfer_id=transfer_id, amount=amount)
        except SendFailed as exc:
            raise ServiceUnavailable(exc.message, code=exc.code) from exc
        payout = _locked_payout(session, payout_id)
        if payout.exception_status != ExceptionStatus.OPEN:
            raise Conflict("The exception was resolved meanwhile.", code="exception_resolved")
        payout.stripe_reversal_id = reversal
    before = {**snapshot(payout), "exception_note": payout.exception_note}
    payout.exception_status = ExceptionStatus.RESOLVED
    payout.exception_note = note
    payout.resolved_by_id, payout.resolved_at = actor.user_id, utcnow()
    session.flush()
    audit.record(session, actor, "payout.exception_resolved", "payout", payout.public_id, before=before,
                 after={**snapshot(payout), "exception_note": note})
    session.commit()
    return payout
