"""Aid programs, their fundings, and batches paying them onto cards.

Money moves in three steps, each a ledger transaction:
  funding   union:bank -> program:<prg>:budget                 (maker enters, approver confirms)
  approval  program:<prg>:budget -> disbursement:<dsb>:reserve (the batch total, reserved at once)
  run       disbursement:<dsb>:reserve -> each card's purse    (one transaction per chunk of lines)
and at the end whatever the failed lines did not take goes back from the reserve to the budget.

Exactly once: a line becomes `done` in the same database transaction as the ledger transaction that
pays it, and a runner takes the batch row FOR UPDATE for each chunk, so two runners (a retried job,
a resumed one) take turns and never pay a line twice; a runner killed mid-chunk leaves nothing of
that chunk behind.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from sqlalchemy import bindparam, case, func, select, text, update
from sqlalchemy.orm import Session, contains_eager

from cards import service as cards
from cards.models import Card, CardStatus, Purse, PurseKind
from cards.numbers import luhn_valid, mask_card_number, normalize_card_number
from core import audit
from core.auth import Actor
from core.crypto import FieldCipher, mask_id_number
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from core.ids import new_public_id
from core.pagination import Page, paginate
from members import service as members
from members.models import Union
from members.validators import InvalidValue, validate_id_number
from merchants.models import MerchantCategory
from payments import ledger
from payments.disbursement.models import (BatchStatus, Clawback, ClawbackStatus, Disbursement, DisbursementLine,
                                          Funding, FundingStatus, LineStatus, Program, ProgramKind, ProgramStatus,
                                          PursePolicy)
from payments.ledger import credit, debit
from payments.ledger.bulk import Credit, post_credits

BANK = "union:bank"
BUDGET_SLICES = 8
DEFAULT_MAX_LINE = 1_000_000  # ¥10,000
MAX_NOTE = 200
INSERT_CHUNK = 5000
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A card that can still take money: not lost (it will be replaced), replaced or cancelled.
PAYABLE = frozenset({CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN})


def budget_account(program_public_id: str) -> str:
    return f"program:{program_public_id}:budget"


def reserve_account(batch_public_id: str) -> str:
    return f"disbursement:{batch_public_id}:reserve"


def _four_eyes(actor: Actor, maker_id: int | None, what: str) -> None:
    if actor.user_id is not None and actor.user_id == maker_id:
        raise Forbidden(f"The {what} was entered by you: another approver must confirm it.", code="same_person")


# --- programs --------------------------------------------------------------------------------

def program_snapshot(p: Program) -> dict:
    return {"name": p.name, "kind": p.kind.value, "purse": p.purse.value, "allowed_categories": p.allowed_categories,
            "expires_at": p.expires_at, "union_id": p.union.public_id if p.union else None,
            "max_line_amount": p.max_line_amount}


def create_program(session: Session, actor: Actor, *, name: str, kind: ProgramKind, purse: PursePolicy,
                   union_id: str, allowed_categories: list[str] | None = None, expires_at: dt.datetime | None = None,
                   max_line_amount: int | None = None) -> Program:
    """Create an aid program with its budget account in the ledger."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["Give the program a name (1-100 characters)."]
    union = session.scalar(select(Union).where(Union.public_id == union_id))
    if union is None:
        errors["union_id"] = ["Unknown union."]
    known = {c.value for c in MerchantCategory}
    if purse == PursePolicy.RESTRICTED:
        if not allowed_categories:
            errors["allowed_categories"] = ["A restricted purse names the merchant categories it may be spent at."]
        elif set(allowed_categories) - known:
            errors["allowed_categories"] = [f"Unknown categories: {', '.join(sorted(set(allowed_categories) - known))}."]
        if expires_at is None:
            errors["expires_at"] = ["A restricted purse needs an expiry date."]
        elif expires_at <= utcnow():
            errors["expires_at"] = ["The expiry date has passed."]
    elif allowed_categories or expires_at:
        errors["purse"] = ["Only a restricted purse has categories and an expiry date."]
    if max_line_amount is not None and not 0 < max_line_amount <= 100_000_000:
        errors["max_line_amount"] = ["Between 1 fen and ¥1,000,000."]
    if errors:
        raise ValidationFailed(errors)
    program = Program(public_id=new_public_id("prg"), name=name, kind=kind, purse=purse,
                      allowed_categories=sorted(set(allowed_categories)) if allowed_categories else None,
                      expires_at=expires_at, union=union, union_id=union.id,
                      max_line_amount=max_line_amount or DEFAULT_MAX_LINE, created_by_id=actor.user_id)
    program.budget_account = budget_account(program.public_id)
    session.add(program)
    ledger.open_account(session, program.budget_account, normal_side="credit", mode="sliced", slices=BUDGET_SLICES,
                        owner_kind="program", owner_id=program.public_id)
    ledger.get_or_create_account(session, BANK, normal_side="debit", allow_negative=True)
    session.flush()
    audit.record(session, actor, "program.created", "program", program.public_id, after=program_snapshot(program))
    session.commit()
    return program


def get_program(session: Session, public_id: str) -> Program:
    program = session.scalar(select(Program).where(Program.public_id == public_id))
    if program is None:
        raise NotFound("No such program.")
    return program


def list_programs(session: Session, *, limit: int, cursor: str | None) -> Page:
    return paginate(session, select(Program), Program.id, limit=limit, cursor=cursor)


@dataclass(frozen=True)
class ProgramFigures:
    funded: int
    available: int  # in the budget now
    reserved: int  # approved batches not yet paid out
    disbursed: int  # paid onto cards (less claw-backs)


def program_figures(session: Session, program: Program) -> ProgramFigures:
    """The program's money: funded, in the budget, reserved for approved batches, paid onto cards."""
    funded = session.scalar(select(func.coalesce(func.sum(Funding.amount), 0)).where(
        Funding.program_id == program.id, Funding.status == FundingStatus.APPROVED))
    batches = session.execute(select(
        func.coalesce(func.sum(Disbursement.done_amount), 0),
        func.coalesce(func.sum(case((Disbursement.status.in_((BatchStatus.APPROVED, BatchStatus.RUNNING,
                                                              BatchStatus.FAILED)),
                                     Disbursement.amount - Disbursement.done_amount - Disbursement.failed_amount),
                                    else_=0)), 0),
    ).where(Disbursement.program_id == program.id)).one()
    clawed = session.scalar(select(func.coalesce(func.sum(DisbursementLine.clawed_back), 0)).join(
        Disbursement, DisbursementLine.disbursement_id == Disbursement.id).where(Disbursement.program_id == program.id))
    available = ledger.balance(session, program.budget_account).available
    return ProgramFigures(int(funded), available, int(batches[1]), int(batches[0]) - int(clawed))


# --- fundings --------------------------------------------------------------------------------

def create_funding(session: Session, actor: Actor, program_id: str, *, amount: int, currency: str, reference: str,
                   note: str = "") -> Funding:
    """Record a deposit from the union's bank account, to be confirmed by another approver."""
    program = get_program(session, program_id)
    if currency != "CNY":
        raise ValidationFailed({"currency": ["Programs are funded in CNY."]})
    if program.status != ProgramStatus.ACTIVE:
        raise Conflict("The program is closed.", code="program_closed")
    funding = Funding(public_id=new_public_id("fnd"), program_id=program.id, program=program, amount=amount,
                      currency=currency, reference=reference.strip(), note=note.strip(), created_by_id=actor.user_id)
    session.add(funding)
    session.flush()
    audit.record(session, actor, "funding.entered", "funding", funding.public_id,
                 after={"program_id": program.public_id, "amount": amount, "reference": funding.reference})
    session.commit()
    return funding


def _locked_funding(session: Session, funding_id: str) -> Funding:
    funding = session.scalar(select(Funding).where(Funding.public_id == funding_id)
                             .with_for_update(of=Funding).execution_options(populate_existing=True))
    if funding is None:
        raise NotFound("No such funding.")
    return funding


def approve_funding(session: Session, actor: Actor, funding_id: str) -> Funding:
    """Confirm a deposit (an approver who did not enter it): the money enters the program's budget."""
    funding = _locked_funding(session, funding_id)
    if funding.status != FundingStatus.PENDING:
        raise Conflict(f"The funding is already {funding.status.value}.", code="funding_decided")
    _four_eyes(actor, funding.created_by_id, "funding")
    txn = ledger.post(session, kind="program_funding", idempotency_key=f"{funding.public_id}:deposit",
                      reference=funding.reference, entries=[debit(BANK, funding.amount),
                                                            credit(funding.program.budget_account, funding.amount)],
                      metadata={"funding_id": funding.public_id, "program_id": funding.program.public_id})
    funding.status, funding.decided_by_id, funding.decided_at = FundingStatus.APPROVED, actor.user_id, utcnow()
    funding.transaction_id = txn.public_id
    audit.record(session, actor, "funding.approved", "funding", funding.public_id,
                 before={"status": "pending"}, after={"status": "approved", "transaction_id": txn.public_id})
    session.commit()
    return funding


def reject_funding(session: Session, actor: Actor, funding_id: str) -> Funding:
    """Turn a deposit down (nothing moves)."""
    funding = _locked_funding(session, funding_id)
    if funding.status != FundingStatus.PENDING:
        raise Conflict(f"The funding is already {funding.status.value}.", code="funding_decided")
    funding.status, funding.decided_by_id, funding.decided_at = FundingStatus.REJECTED, actor.user_id, utcnow()
    audit.record(session, actor, "funding.rejected", "funding", funding.public_id,
                 before={"status": "pending"}, after={"status": "rejected"})
    session.commit()
    return funding


def list_fundings(session: Session, program_id: str, *, limit: int, cursor: str | None) -> Page:
    program = get_program(session, program_id)
    return paginate(session, select(Funding).where(Funding.program_id == program.id), Funding.id,
                    limit=limit, cursor=cursor)


# --- batches: creation and validation ---------------------------------------------------------

ERRORS = {
    "invalid_id_number": "Not a valid ID number.",
    "invalid_card_number": "Not a valid card number.",
    "invalid_amount": "The amount is not a whole number of fen.",
    "amount_out_of_range": "The amount is zero, negative, or above the program's limit for one line.",
    "unknown_member": "No member with this ID number.",
    "unknown_card": "No card with this number.",
    "duplicate_line": "The member is already paid by an earlier line of this batch.",
    "not_eligible": "The member is not active, or not in a union this program covers.",
    "no_active_card": "The member has no card that can take money (none issued, or lost or cancelled).",
    "card_not_usable": "The card was lost or cancelled after the batch was checked.",
}


def _new_batch(session: Session, actor: Actor, program: Program, source: str, note: str, **extra) -> Disbursement:
    if program.status != ProgramStatus.ACTIVE:
        raise Conflict("The program is closed.", code="program_closed")
    batch = Disbursement(public_id=new_public_id("dsb"), program_id=program.id, program=program, source=source,
                         note=(note or "").strip()[:500], created_by_id=actor.user_id, status=BatchStatus.DRAFT,
                         **extra)
    batch.reserve_account = reserve_account(batch.public_id)
    session.add(batch)
    session.flush()
    return batch


def _parse_amount(raw: str, limit: int) -> tuple[int, str | None]:
    raw = (raw or "").strip()
    if not raw.isascii() or not raw.lstrip("-").isdigit():
        return 0, "invalid_amount"
    amount = int(raw)
    if not 0 < amount <= limit:
        return (amount if abs(amount) < 10**15 else 0), "amount_out_of_range"
    return amount, None


STAGE_COLUMNS = ("line_no", "ref_kind", "ref_masked", "ref_index", "amount", "note", "error_code")


def _csv_rows(cipher: FieldCipher, program: Program, fileobj: BinaryIO, max_lines: int,
              today: dt.date) -> Iterator[tuple]:
    """Read the upload, yielding one staged line per CSV line: what it names (masked, and its blind index),
    the amount and note, and the error its own text already shows (bad number, bad amount)."""
    text_stream = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="")
    reader = csv.reader(text_stream)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationFailed({"file": ["The file is empty."]}) from None
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed({"file": ["The file is not UTF-8 CSV."]}) from None
    if header[:2] not in (["id_number", "amount"], ["card_number", "amount"]) or header[2:] not in ([], ["note"]):
        raise ValidationFailed({"file": ["The header must be id_number,amount[,note] or card_number,amount[,note]."]})
    kind = header[0]
    limit = program.max_line_amount
    line_no = 0
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line_no += 1
            if line_no > max_lines:
                raise ValidationFailed({"file": [f"A batch has at most {max_lines} lines."]})
            ref = fields[0] if fields else ""
            amount, error = _parse_amount(fields[1] if len(fields) > 1 else "", limit)
            note = CONTROL_CHARS_RE.sub(" ", fields[2] if len(fields) > 2 else "").strip()[:MAX_NOTE]
            if kind == "id_number":
                try:
                    value = validate_id_number(ref, today)
                    masked, index = mask_id_number(value), cipher.blind_index(value, members.ID_CONTEXT)
                except InvalidValue:
                    masked, index, error = "", None, "invalid_id_number"
            else:
                value = normalize_card_number(ref)
                if value.isascii() and value.isdigit() and len(value) == 19 and luhn_valid(value):
                    masked, index = mask_card_number(value), cipher.blind_index(value, cards.NUMBER_CONTEXT)
                else:
                    masked, index, error = "", None, "invalid_card_number"
            yield (line_no, kind, masked, index, amount, note, error)
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed({"file": [f"Line {line_no + 1} is not UTF-8 CSV."]}) from None


def _stage(session: Session, rows: Iterator[tuple]) -> None:
    """Load the parsed lines into a temporary table (COPY on PostgreSQL) for one set-based check."""
    conn = session.connection()
    postgres = conn.dialect.name == "postgresql"
    conn.exec_driver_sql("DROP TABLE IF EXISTS disbursement_stage")
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE disbursement_stage (line_no integer, ref_kind varchar(12), ref_masked varchar(24), "
        "ref_index varchar(64), amount bigint, note varchar(200), error_code varchar(40))"
        + (" ON COMMIT DROP" if postgres else ""))
    if postgres:
        with conn.connection.cursor() as cursor:
            with cursor.copy(f"COPY disbursement_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return
    insert = text(f"INSERT INTO disbursement_stage ({', '.join(STAGE_COLUMNS)}) "
                  f"VALUES ({', '.join(':' + c for c in STAGE_COLUMNS)})")
    chunk: list[dict] = []
    for row in rows:
        chunk.append(dict(zip(STAGE_COLUMNS, row)))
        if len(chunk) >= INSERT_CHUNK:
            conn.execute(insert, chunk)
            chunk = []
    if chunk:
        conn.execute(insert, chunk)


def _message_sql() -> tuple[str, dict]:
    cases = " ".join(f"WHEN :code_{n} THEN :message_{n}" for n in range(len(ERRORS)))
    params = {}
    for n, (code, message) in enumerate(ERRORS.items()):
        params[f"code_{n}"], params[f"message_{n}"] = code, message
    return f"CASE r.error_code {cases} END", params


_LINE_COLUMNS = ("disbursement_id, line_no, ref_kind, ref_masked, ref_index, member_id, card_id, union_id, amount, "
                 "note, status, error_code, error_message, clawed_back")
_PAYABLE_SQL = "('issued', 'active', 'frozen')"


def _roomy(session: Session) -> None:
    """Give this transaction's joins and sorts room to run in memory (PostgreSQL's default is 4 MB)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL work_mem = '256MB'"))


def _lines_from_stage(session: Session, batch: Disbursement) -> None:
    """Resolve every staged line (member, card, union, the first problem) in one INSERT ... SELECT.

    A file names members by ID number or cards by number, never both: only the joins its kind needs are made
    (each join of the card or member table costs a pass over it)."""
    _roomy(session)
    messages, params = _message_sql()
    by_card = session.execute(text("SELECT ref_kind FROM disbursement_stage LIMIT 1")).scalar() == "card_number"
    if by_card:  # the card named, or the card that replaced it (up to three replacements on)
        card_status = "COALESCE(c3.status, c2.status, c1.status, c0.status)"
        resolved = f"""
            SELECT s.line_no, s.ref_kind, s.ref_masked, s.ref_index, s.amount, s.note,
                   m.id AS member_id, m.union_id, COALESCE(c3.id, c2.id, c1.id, c0.id) AS card_id,
                   COALESCE(s.error_code, CASE
                       WHEN c0.id IS NULL THEN 'unknown_card'
                       WHEN m.status <> 'active' OR substr(u.path, 1, :prefix_length) <> :prefix THEN 'not_eligible'
                       WHEN {card_status} NOT IN {_PAYABLE_SQL} THEN 'no_active_card'
                   END) AS error_code
            FROM disbursement_stage s
            LEFT JOIN cards c0 ON s.error_code IS NULL AND c0.number_index = s.ref_index
            LEFT JOIN cards c1 ON c1.replaces_id = c0.id
            LEFT JOIN cards c2 ON c2.replaces_id = c1.id
            LEFT JOIN cards c3 ON c3.replaces_id = c2.id
            LEFT JOIN members m ON m.id = c0.member_id
            LEFT JOIN unions u ON u.id = m.union_id"""
    else:  # the member named, and the live card they hold
        resolved = f"""
            SELECT s.line_no, s.ref_kind, s.ref_masked, s.ref_index, s.amount, s.note,
                   m.id AS member_id, m.union_id, c.id AS card_id,
                   COALESCE(s.error_code, CASE
                       WHEN m.id IS NULL THEN 'unknown_member'
                       WHEN m.status <> 'active' OR substr(u.path, 1, :prefix_length) <> :prefix THEN 'not_eligible'
                       WHEN c.id IS NULL THEN 'no_active_card'
                   END) AS error_code
            FROM disbursement_stage s
            LEFT JOIN members m ON s.error_code IS NULL AND m.id_number_index = s.ref_index
            LEFT JOIN cards c ON c.member_id = m.id AND c.status IN {_PAYABLE_SQL}
            LEFT JOIN unions u ON u.id = m.union_id"""
    session.execute(text(f"""
        INSERT INTO disbursement_lines ({_LINE_COLUMNS})
        SELECT :batch, r.line_no, r.ref_kind, r.ref_masked, r.ref_index, r.member_id, r.card_id, r.union_id,
               r.amount, r.note, CASE WHEN r.error_code IS NULL THEN 'valid' ELSE 'invalid' END, r.error_code,
               {messages}, 0
        FROM ({resolved}) AS r
        ORDER BY r.line_no
    """), {"batch": batch.id, "prefix": batch.program.union.path, "prefix_length": len(batch.program.union.path),
           **params})
    session.connection().exec_driver_sql("DROP TABLE IF EXISTS disbursement_stage")


def create_batch_from_csv(session: Session, cipher: FieldCipher, actor: Actor, program_id: str, fileobj: BinaryIO,
                          filename: str, *, note: str = "", max_lines: int,
                          today: dt.date | None = None) -> Disbursement:
    """Create a draft batch from an uploaded CSV; every line is checked and reported before anything moves."""
    program = get_program(session, program_id)
    batch = _new_batch(session, actor, program, "csv", note, filename=(filename or "batch.csv")[:255])
    _stage(session, _csv_rows(cipher, program, fileobj, max_lines, today or dt.date.today()))
    _lines_from_stage(session, batch)
    return _validated(session, actor, batch)


@dataclass(frozen=True)
class Rule:
    amount: int
    union_id: str | None = None
    hardship_min_level: int | None = None


def create_batch_from_rule(session: Session, actor: Actor, program_id: str, rule: Rule, *, note: str = "",
                           max_lines: int, today: dt.date | None = None) -> Disbursement:
    """Create a draft batch paying every member a rule picks (e.g. hardship level 2 and above in a city)."""
    program = get_program(session, program_id)
    today = today or dt.date.today()
    if not 0 < rule.amount <= program.max_line_amount:
        raise ValidationFailed({"rule.amount": [f"Between 1 and {program.max_line_amount} fen."]})
    scope = members.get_union(session, actor, rule.union_id) if rule.union_id else program.union
    if not scope.path.startswith(program.union.path):
        raise ValidationFailed({"rule.union_id": ["The union is outside the program's unions."]})
    hardship = ("JOIN hardship_records h ON h.member_id = m.id AND h.level >= :level AND h.valid_until >= :today"
                if rule.hardship_min_level is not None else "")
    picked = (f"FROM members m JOIN unions u ON u.id = m.union_id {hardship} "
              "WHERE m.status = 'active' AND substr(u.path, 1, :prefix_length) = :prefix")
    params = {"prefix": scope.path, "prefix_length": len(scope.path), "level": rule.hardship_min_level,
              "today": today}
    count = session.scalar(text(f"SELECT count(*) {picked}"), params)
    if count > max_lines:
        raise ValidationFailed({"rule": [f"The rule picks {count} members; a batch has at most {max_lines} lines."]})
    batch = _new_batch(session, actor, program, "rule", note,
                       rule={"amount": rule.amount, "union_id": scope.public_id,
                             "hardship_min_level": rule.hardship_min_level})
    session.execute(text(f"""
        INSERT INTO disbursement_lines ({_LINE_COLUMNS})
        SELECT :batch, row_number() OVER (ORDER BY m.id), 'rule', m.id_number_masked, NULL, m.id, lc.id, m.union_id,
               :amount, '', CASE WHEN lc.id IS NULL THEN 'invalid' ELSE 'valid' END,
               CASE WHEN lc.id IS NULL THEN 'no_active_card' END,
               CASE WHEN lc.id IS NULL THEN :no_card END, 0
        FROM members m JOIN unions u ON u.id = m.union_id {hardship}
        LEFT JOIN cards lc ON lc.member_id = m.id AND lc.status IN {_PAYABLE_SQL}
        WHERE m.status = 'active' AND substr(u.path, 1, :prefix_length) = :prefix
        ORDER BY m.id
    """), {**params, "batch": batch.id, "amount": rule.amount, "no_card": ERRORS["no_active_card"]})
    return _validated(session, actor, batch)


def _validated(session: Session, actor: Actor, batch: Disbursement) -> Disbursement:
    """Mark later lines of a member already on an earlier line; record the counts; commit the draft."""
    _roomy(session)
    if session.get_bind().dialect.name == "postgresql":
        # The planner learns of the new batch's lines now, not when autovacuum comes by: without it, it takes
        # the batch for a few lines and the run's chunk query reads every remaining line for each chunk.
        session.execute(text("ANALYZE disbursement_lines"))
    session.execute(text("""
        UPDATE disbursement_lines SET status = 'invalid', error_code = 'duplicate_line', error_message = :message
        WHERE id IN (
            SELECT id FROM (
                SELECT id, status, row_number() OVER (PARTITION BY member_id ORDER BY line_no) AS n
                FROM disbursement_lines WHERE disbursement_id = :batch AND member_id IS NOT NULL
            ) AS ranked WHERE n > 1 AND status = 'valid')
    """), {"batch": batch.id, "message": ERRORS["duplicate_line"]})
    L = DisbursementLine
    counts = session.execute(select(
        func.count(), func.count().filter(L.status == LineStatus.VALID),
        func.coalesce(func.sum(L.amount).filter(L.status == LineStatus.VALID), 0),
    ).where(L.disbursement_id == batch.id)).one()
    batch.total_lines, batch.valid_lines, batch.amount = counts[0], counts[1], int(counts[2])
    batch.invalid_lines = batch.total_lines - batch.valid_lines
    audit.record(session, actor, "disbursement.created", "disbursement", batch.public_id,
                 after={"program_id": batch.program.public_id, "source": batch.source, "lines": batch.total_lines,
                        "valid": batch.valid_lines, "amount": batch.amount})
    session.commit()
    return batch


def get_batch(session: Session, public_id: str, *, lock: bool = False) -> Disbursement:
    query = select(Disbursement).where(Disbursement.public_id == public_id)
    if lock:
        query = query.with_for_update(of=Disbursement).execution_options(populate_existing=True)
    batch = session.scalar(query)
    if batch is None:
        raise NotFound("No such disbursement.")
    return batch


def list_batches(session: Session, *, program_id: str | None, limit: int, cursor: str | None) -> Page:
    query = select(Disbursement)
    if program_id:
        query = query.where(Disbursement.program_id == get_program(session, program_id).id)
    return paginate(session, query, Disbursement.id, limit=limit, cursor=cursor)


@dataclass(frozen=True)
class UnionTotal:
    union_id: str
    name: str
    lines: int
    amount: int


def preview(session: Session, batch: Disbursement) -> tuple[list[UnionTotal], dict[str, int]]:
    """Totals of the valid lines by union, and the invalid lines counted by reason."""
    L = DisbursementLine
    by_union = [UnionTotal(public_id, name, n, int(amount)) for public_id, name, n, amount in session.execute(
        select(Union.public_id, Union.name, func.count(), func.sum(L.amount))
        .join(Union, L.union_id == Union.id)
        .where(L.disbursement_id == batch.id, L.status != LineStatus.INVALID)
        .group_by(Union.public_id, Union.name).order_by(func.sum(L.amount).desc()))]
    errors = dict(session.execute(select(L.error_code, func.count()).where(
        L.disbursement_id == batch.id, L.error_code.is_not(None)).group_by(L.error_code)).all())
    return by_union, errors


def list_lines(session: Session, batch: Disbursement, *, status: LineStatus | None, limit: int,
               cursor: str | None) -> Page:
    query = select(DisbursementLine).where(DisbursementLine.disbursement_id == batch.id)
    if status is not None:
        query = query.where(DisbursementLine.status == status)
    return paginate(session, query, DisbursementLine.id, limit=limit, cursor=cursor)


def cancel_batch(session: Session, actor: Actor, batch_id: str) -> Disbursement:
    """Discard a draft (nothing has moved)."""
    batch = get_batch(session, batch_id, lock=True)
    if batch.status != BatchStatus.DRAFT:
        raise Conflict(f"Only a draft can be cancelled; this batch is {batch.status.value}.", code="batch_not_draft")
    batch.status = BatchStatus.CANCELLED
    audit.record(session, actor, "disbursement.cancelled", "disbursement", batch.public_id,
                 before={"status": "draft"}, after={"status": "cancelled"})
    session.commit()
    return batch


# --- approval ----------------------------------------------------------------------------------

def approve_batch(session: Session, actor: Actor, batch_id: str, *, second_approval_above: int) -> Disbursement:
    """Approve a draft (an approver who did not make it). Above the threshold a second, different approver
    must approve too. The last approval reserves the batch total from the program's budget; a batch
    the budget cannot cover is refused."""
    batch = get_batch(session, batch_id, lock=True)
    if batch.status != BatchStatus.DRAFT:
        raise Conflict(f"The batch is already {batch.status.value}.", code="batch_not_draft")
    _four_eyes(actor, batch.created_by_id, "batch")
    if batch.valid_lines == 0:
        raise RuleViolation("The batch has no valid line to pay.", code="nothing_to_pay")
    before = {"status": batch.status.value, "approved_by": batch.approved_by_id}
    if batch.approved_by_id is None:
        batch.approvals_needed = 2 if batch.amount > second_approval_above else 1
        batch.approved_by_id = actor.user_id
        if batch.approvals_needed == 2:
            audit.record(session, actor, "disbursement.first_approval", "disbursement", batch.public_id,
                         before=before, after={"approvals": 1, "needed": 2})
            session.commit()
            return batch
    else:
        if actor.user_id == batch.approved_by_id:
            raise Forbidden("You gave the first approval: a second, different approver must give the other.",
                            code="same_person")
        batch.second_approved_by_id = actor.user_id
    program = batch.program
    ledger.open_account(session, batch.reserve_account, normal_side="credit", owner_kind="disbursement",
                        owner_id=batch.public_id)
    try:
        ledger.post(session, kind="disbursement_reserve", idempotency_key=f"{batch.public_id}:reserve",
                    reference=batch.public_id,
                    entries=[debit(program.budget_account, batch.amount), credit(batch.reserve_account, batch.amount)],
                    metadata={"program_id": program.public_id})
    except RuleViolation as exc:
        if exc.code != "insufficient_funds":
            raise
        session.rollback()
        available = ledger.balance(session, program.budget_account).available
        raise RuleViolation(f"The program's budget holds {available} fen, less than the batch's {batch.amount}.",
                            code="insufficient_budget") from None
    batch.status, batch.approved_at = BatchStatus.APPROVED, utcnow()
    audit.record(session, actor, "disbursement.approved", "disbursement", batch.public_id, before=before,
                 after={"status": "approved", "reserved": batch.amount})
    session.commit()
    return batch


# --- the run -----------------------------------------------------------------------------------

RUNNABLE = (BatchStatus.APPROVED, BatchStatus.RUNNING, BatchStatus.FAILED)


def run_batch(session: Session, batch_id: str, *, chunk: int = 5000, pause: float = 0.0) -> Disbursement:
    """Pay the batch's valid lines in committed chunks, from wherever it stopped; safe to run twice."""
    batch = get_batch(session, batch_id, lock=True)
    if batch.status not in RUNNABLE:
        session.rollback()
        return batch
    batch.status = BatchStatus.RUNNING
    batch.started_at = batch.started_at or utcnow()
    batch.progressed_at = utcnow()
    batch.error = None
    session.commit()
    try:
        while _run_chunk_retrying(session, batch_id, chunk):
            if pause:
                time.sleep(pause)
        batch = _finish(session, batch_id)
    except Exception as exc:
        session.rollback()
        batch = get_batch(session, batch_id, lock=True)
        if batch.status == BatchStatus.RUNNING:
            batch.status = BatchStatus.FAILED
            batch.error = f"{type(exc).__name__}: stopped after {batch.done_lines + batch.failed_lines} lines; resume."
        session.commit()
        raise
    return batch


def _run_chunk_retrying(session: Session, batch_id: str, size: int) -> bool:
    """Run a chunk; if a card of it was replaced or cancelled while it ran (its purse closed under us),
    roll back and run the chunk again, which then sees the card's new state."""
    for attempt in range(3):
        try:
            return _run_chunk(session, batch_id, size)
        except Conflict as exc:
            if exc.code != "account_closed" or attempt == 2:
                raise
            session.rollback()
    return False


def _run_chunk(session: Session, batch_id: str, size: int) -> bool:
    """Pay the next chunk of valid lines; tell whether there was one."""
    batch = get_batch(session, batch_id, lock=True)  # runners take turns here
    if batch.status != BatchStatus.RUNNING:
        session.rollback()
        return False
    # From the cursor on, by the unique (batch, line number) index: every line before it is settled.
    # The chunk is picked first and joined to its cards after, so each card is one index look-up (joined
    # before the LIMIT, the planner may scan every card for every chunk). Plain tuples come back: this loop
    # handles hundreds of thousands of lines.
    lines = session.connection().execute(text("""
        SELECT l.id, l.line_no, l.amount, c.id, c.public_id, c.status
        FROM (SELECT id, line_no, card_id, amount FROM disbursement_lines
              WHERE disbursement_id = :batch AND line_no > :cursor AND status = 'valid'
              ORDER BY line_no LIMIT :size) AS l
        JOIN cards c ON c.id = l.card_id
        ORDER BY l.line_no
    """), {"batch": batch.id, "cursor": batch.cursor, "size": size}).all()
    if not lines:
        session.rollback()
        return False
    # Each named card's (id, public id, status) now: a replaced card's money goes to what replaced it.
    current = {line[3]: tuple(line[3:]) for line in lines}
    for card_id, card in list(current.items()):
        if card[2] == CardStatus.REPLACED:
            current[card_id] = _successor(session, card)
    paying, failing = [], []
    for line in lines:
        (paying if current[line[3]][2] in PAYABLE else failing).append(line)
    moved = [(line_id, current[card_id][0]) for line_id, _n, _a, card_id, *_rest in paying
             if current[card_id][0] != card_id]
    program = batch.program
    if program.purse == PursePolicy.RESTRICTED:
        accounts = cards.open_restricted_purses(
            session, {current[line[3]][:2] for line in paying}, program_id=program.public_id,
            label=program.name, allowed_categories=program.allowed_categories, expires_at=program.expires_at)
        suffix = f":aid:{program.public_id}"
    else:
        accounts = {card_id: cards.general_account(public_id) for card_id, public_id, _s in current.values()}
        suffix = ":general"
    now = utcnow()
    L = DisbursementLine
    if failing:
        session.execute(update(L).where(L.id.in_([line[0] for line in failing])).values(
            status=LineStatus.FAILED, error_code="card_not_usable", error_message=ERRORS["card_not_usable"],
            processed_at=now).execution_options(synchronize_session=False))
    if moved:  # paid to the card that replaced the one named
        session.execute(update(L.__table__).where(L.__table__.c.id == bindparam("line_id"))
                        .values(card_id=bindparam("paid_card")),
                        [{"line_id": line_id, "paid_card": card_id} for line_id, card_id in moved])
    if paying:
        first, last = paying[0][1], paying[-1][1]
        txn = post_credits(session, kind="disbursement", idempotency_key=f"{batch.public_id}:{first}-{last}",
                           source=batch.reserve_account, reference=batch.public_id,
                           credits=[Credit(accounts[current[card_id][0]], amount)
                                    for _id, _n, amount, card_id, *_rest in paying],
                           metadata={"description": program.name, "program_id": program.public_id,
                                     "disbursement_id": batch.public_id})
        # Every line of the chunk still valid is one just paid: mark them all in one statement.
        session.execute(text("""
            UPDATE disbursement_lines SET status = 'done', transaction_id = :txn, processed_at = :now,
                purse_account = 'card:' || (SELECT public_id FROM cards WHERE cards.id = disbursement_lines.card_id)
                                || :suffix
            WHERE disbursement_id = :batch AND status = 'valid' AND line_no BETWEEN :first AND :last
        """), {"txn": txn.public_id, "now": now, "suffix": suffix, "batch": batch.id, "first": first, "last": last})
    batch.cursor = lines[-1][1]
    batch.done_lines += len(paying)
    batch.done_amount += sum(line[2] for line in paying)
    batch.failed_lines += len(failing)
    batch.failed_amount += sum(line[2] for line in failing)
    batch.progressed_at = now
    session.commit()
    return True


def _successor(session: Session, card: tuple) -> tuple:
    """The card (id, public id, status) a replaced card's money goes to now: what replaced it, and so on."""
    current = card
    for _ in range(5):
        nxt = session.execute(select(Card.id, Card.public_id, Card.status)
                              .where(Card.replaces_id == current[0]).with_for_update(read=True)).first()
        if nxt is None:
            break
        current = tuple(nxt)
        if current[2] != CardStatus.REPLACED:
            break
    return current


def _finish(session: Session, batch_id: str) -> Disbursement:
    """Give what the failed lines did not take back to the budget, and close the batch."""
    batch = get_batch(session, batch_id, lock=True)
    if batch.status != BatchStatus.RUNNING:
        session.rollback()
        return batch
    left = ledger.balance(session, batch.reserve_account).posted
    if left:
        ledger.post(session, kind="disbursement_return", idempotency_key=f"{batch.public_id}:return",
                    reference=batch.public_id, entries=[debit(batch.reserve_account, left),
                                                        credit(batch.program.budget_account, left)],
                    metadata={"program_id": batch.program.public_id})
    batch.returned_amount = left
    batch.status, batch.finished_at = BatchStatus.COMPLETED, utcnow()
    audit.record(session, Actor(None, "disbursement-run", None), "disbursement.completed", "disbursement",
                 batch.public_id, after={"done": batch.done_lines, "failed": batch.failed_lines,
                                         "paid": batch.done_amount, "returned": left})
    session.commit()
    return batch


STALE_AFTER = dt.timedelta(minutes=5)


def stalled(batch: Disbursement, now: dt.datetime | None = None) -> bool:
    """Tell whether a run stopped: failed, or approved/running with no progress for a while."""
    if batch.status == BatchStatus.FAILED:
        return True
    now = now or utcnow()
    since = batch.progressed_at or batch.approved_at or batch.created_at
    return batch.status in (BatchStatus.APPROVED, BatchStatus.RUNNING) and now - since > STALE_AFTER


def stalled_batches(session: Session, *, stale_after: dt.timedelta = STALE_AFTER,
                    now: dt.datetime | None = None) -> list[str]:
    """The approved or running batches that made no progress for `stale_after`: their run died."""
    cutoff = (now or utcnow()) - stale_after
    since = func.coalesce(Disbursement.progressed_at, Disbursement.approved_at, Disbursement.created_at)
    return list(session.scalars(select(Disbursement.public_id).where(
        Disbursement.status.in_((BatchStatus.APPROVED, BatchStatus.RUNNING)), since < cutoff)
        .order_by(Disbursement.id)))


RESULT_HEADER = ["line", "reference", "amount", "status", "error", "message", "card", "transaction", "note"]


def result_rows(session: Session, batch_id: int) -> Iterator[list]:
    """The batch's lines as CSV rows (references masked), streamed in id order."""
    L = DisbursementLine
    yield RESULT_HEADER
    last = 0
    while True:
        rows = session.execute(select(L.id, L.line_no, L.ref_masked, L.amount, L.status, L.error_code,
                                      L.error_message, Card.number_masked, L.transaction_id, L.note)
                               .outerjoin(Card, Card.id == L.card_id)
                               .where(L.disbursement_id == batch_id, L.id > last).order_by(L.id).limit(5000)).all()
        if not rows:
            return
        for r in rows:
            yield [r.line_no, r.ref_masked, r.amount, r.status.value, r.error_code or "", r.error_message or "",
                   r.number_masked or "", r.transaction_id or "", r.note]
        last = rows[-1].id


# --- claw-backs --------------------------------------------------------------------------------

def request_clawback(session: Session, actor: Actor, batch_id: str, line_no: int, reason: str) -> Clawback:
    """Ask to take back what is still unspent of one paid line (an approver carries it out)."""
    batch = get_batch(session, batch_id)
    line = session.scalar(select(DisbursementLine).where(DisbursementLine.disbursement_id == batch.id,
                                                         DisbursementLine.line_no == line_no))
    if line is None:
        raise NotFound("No such line.")
    if line.status != LineStatus.DONE:
        raise Conflict("Only a paid line can be taken back.", code="line_not_paid")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"reason": ["Say why the money is taken back."]})
    open_request = session.scalar(select(Clawback.public_id).where(Clawback.line_id == line.id,
                                                                   Clawback.status == ClawbackStatus.PENDING))
    if open_request:
        raise Conflict(f"A claw-back of this line is already waiting ({open_request}).", code="clawback_pending")
    clawback = Clawback(public_id=new_public_id("clb"), line_id=line.id, line=line, reason=reason[:500],
                        requested_by_id=actor.user_id)
    session.add(clawback)
    session.flush()
    audit.record(session, actor, "clawback.requested", "clawback", clawback.public_id,
                 after={"disbursement_id": batch.public_id, "line": line_no, "reason": clawback.reason})
    session.commit()
    return clawback


def list_clawbacks(session: Session, batch: Disbursement, *, limit: int) -> list[Clawback]:
    """The batch's claw-backs with their lines, newest first."""
    return list(session.scalars(
        select(Clawback).join(Clawback.line).options(contains_eager(Clawback.line))
        .where(DisbursementLine.disbursement_id == batch.id).order_by(Clawback.id.desc()).limit(limit)))


def approve_clawback(session: Session, actor: Actor, clawback_id: str) -> Clawback:
    """Carry out a claw-back: take back up to what the line paid, as far as the purse still holds it."""
    clawback = session.scalar(select(Clawback).where(Clawback.public_id == clawback_id)
                              .with_for_update(of=Clawback).execution_options(populate_existing=True))
    if clawback is None:
        raise NotFound("No such claw-back.")
    if clawback.status != ClawbackStatus.PENDING:
        raise Conflict(f"The claw-back is already {clawback.status.value}.", code="clawback_decided")
    _four_eyes(actor, clawback.requested_by_id, "claw-back")
    line = session.scalar(select(DisbursementLine).where(DisbursementLine.id == clawback.line_id)
                          .with_for_update().execution_options(populate_existing=True))
    batch = session.get(Disbursement, line.disbursement_id)
    purse_code = line.purse_account
    # The purse may have moved to a replacement card since.
    card = session.get(Card, line.card_id)
    now_card = cards.successor(session, card)
    if now_card.id != card.id:
        purse_code = (cards.general_account(now_card.public_id) if batch.program.purse == PursePolicy.GENERAL
                      else cards.aid_account(now_card.public_id, batch.program.public_id))
    try:
        held = ledger.balance(session, purse_code).available
    except NotFound:
        held = 0
    take = max(0, min(line.amount - line.clawed_back, held))
    txn_id = None
    if take:
        txn = ledger.post(session, kind="disbursement_clawback", idempotency_key=f"{clawback.public_id}:take",
                          reference=batch.public_id, entries=[debit(purse_code, take),
                                                              credit(batch.program.budget_account, take)],
                          metadata={"description": batch.program.name, "line": line.line_no})
        txn_id = txn.public_id
    line.clawed_back += take
    clawback.status, clawback.decided_by_id, clawback.decided_at = ClawbackStatus.APPROVED, actor.user_id, utcnow()
    clawback.amount_taken, clawback.transaction_id = take, txn_id
    audit.record(session, actor, "clawback.approved", "clawback", clawback.public_id,
                 before={"status": "pending"}, after={"status": "approved", "taken": take, "asked": line.amount})
    session.commit()
    return clawback


# --- expiry ------------------------------------------------------------------------------------

def sweep_expired(session: Session, *, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Move what is left in expired restricted purses back to their programs' budgets; return how many
    purses were swept. Run daily; safe to run again."""
    now = now or utcnow()
    swept = 0
    while True:
        purses = session.execute(
            select(Purse.id, Purse.account_code, Purse.program_id, Purse.label, Program.budget_account)
            .join(Program, Program.public_id == Purse.program_id)
            .where(Purse.kind == PurseKind.RESTRICTED, Purse.closed_at.is_(None), Purse.expires_at <= now)
            .order_by(Purse.id).limit(limit)).all()
        if not purses:
            return swept
        transfers = []
        for p in purses:
            left = ledger.balance(session, p.account_code).available
            if left > 0:
                transfers.append(ledger.Transfer(
                    kind="purse_expiry", idempotency_key=f"expiry:{p.account_code}", reference=p.program_id,
                    entries=[debit(p.account_code, left), credit(p.budget_account, left)],
                    metadata={"description": p.label}))
        for n in range(0, len(transfers), 500):
            for result in ledger.post_many(session, transfers[n:n + 500]):
                if isinstance(result, Exception):
                    raise result
        for p in purses:
            ledger.close_account(session, p.account_code)
        session.execute(update(Purse).where(Purse.id.in_([p.id for p in purses])).values(closed_at=now)
                        .execution_options(synchronize_session=False))
        session.commit()
        swept += len(purses)


def expiring_soon(session: Session, member_id: int, *, within: dt.timedelta = dt.timedelta(days=30),
                  now: dt.datetime | None = None) -> list[tuple[str, int, dt.datetime]]:
    """The member's restricted purses that expire soon and still hold money: (program name, amount, expiry)."""
    now = now or utcnow()
    rows = session.execute(
        select(Program.name, Purse.account_code, Purse.expires_at).join(Card, Card.id == Purse.card_id)
        .join(Program, Program.public_id == Purse.program_id)
        .where(Card.member_id == member_id, Purse.closed_at.is_(None), Purse.expires_at > now,
               Purse.expires_at <= now + within).order_by(Purse.expires_at)).all()
    out = []
    for name, code, expires in rows:
        left = ledger.balance(session, code).available
        if left:
            out.append((name, left, expires))
    return out

