"""The bank transfer file of bank payouts, and the bank's answer to it.

The file is UTF-8 CSV with a header row, one payout per line: payee name, bank name, the full account
number, the amount in fen, the currency and our payout id as the reference. It is the one place the
full account number appears, and it is made again from the payouts on each download, checked against
the SHA-256 recorded when it was generated. Names are written exactly as the bank must read them.

The answer is UTF-8 CSV `reference,status,reason`: one line per payout, status `paid` or `failed`.
Each line is judged on its own; a line in error is reported with its number and does not stop the
others.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from core.errors import ValidationFailed

HEADER = ("payee_name", "bank_name", "account_number", "amount", "currency", "reference")
ANSWER_HEADER = ("reference", "status", "reason")
STATUSES = ("paid", "failed")
REFERENCE_MAX = 40
REASON_MAX = 500
CONTROL_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# What a line of the bank's answer can be wrong with (the service adds the ones about our payouts).
LINE_ERRORS = {
    "malformed_line": "The line does not have the three fields reference,status,reason.",
    "missing_reference": "The line names no payout.",
    "invalid_status": "The status is neither paid nor failed.",
    "duplicate_reference": "An earlier line already answers for this payout.",
}


@dataclass(frozen=True)
class BankLine:
    """One payout in the transfer file."""

    payee_name: str
    bank_name: str
    account_number: str
    amount: int
    currency: str
    reference: str


def write(lines: Iterable[BankLine]) -> bytes:
    """Return the transfer file: UTF-8 CSV with a header row, amounts in fen."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for line in lines:
        writer.writerow((line.payee_name, line.bank_name, line.account_number, str(line.amount), line.currency,
                         line.reference))
    return out.getvalue().encode("utf-8")


def digest(content: bytes) -> str:
    """Return the SHA-256 (hex) by which a generated file is recognised again."""
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class AnswerLine:
    """One line of the bank's answer, as read; `error` is set when it cannot be acted upon."""

    line: int
    reference: str
    status: str | None
    reason: str
    error: str | None = None

    @property
    def message(self) -> str | None:
        return LINE_ERRORS.get(self.error) if self.error else None


def read_answer(fileobj: BinaryIO, *, max_bytes: int, max_lines: int) -> list[AnswerLine]:
    """Read the bank's answer; refuse a file that is too large, not UTF-8 CSV or has another header (422)."""
    raw = fileobj.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ValidationFailed({"file": [f"The file is larger than {max_bytes // 1024} KiB."]},
                               code="file_too_large")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed({"file": ["The file is not UTF-8 CSV."]}, code="invalid_file") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ValidationFailed({"file": ["The file is empty."]}, code="invalid_file")
        if tuple(h.strip().lower() for h in header) != ANSWER_HEADER:
            raise ValidationFailed({"file": ["The header must be reference,status,reason."]}, code="invalid_file")
        lines: list[AnswerLine] = []
        seen: set[str] = set()
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(lines) >= max_lines:
                raise ValidationFailed({"file": [f"An answer has at most {max_lines} lines."]}, code="too_many_lines")
            number = reader.line_num
            lines.append(_line(number, fields, seen))
    except csv.Error:
        raise ValidationFailed({"file": [f"Line {reader.line_num} is not valid CSV."]}, code="invalid_file") from None
    return lines


def _line(number: int, fields: list[str], seen: set[str]) -> AnswerLine:
    reference = CONTROL_CHARS_RE.sub("", fields[0]).strip()[:REFERENCE_MAX] if fields else ""
    status = fields[1].strip().lower() if len(fields) > 1 else ""
    reason = CONTROL_CHARS_RE.sub(" ", fields[2]).strip()[:REASON_MAX] if len(fields) > 2 else ""
    error = None
    if len(fields) not in (2, 3):
        error = "malformed_line"
    elif not reference:
        error = "missing_reference"
    elif status not in STATUSES:
        error = "invalid_status"
    elif reference in seen:
        error = "duplicate_reference"
    if error is None:
        seen.add(reference)
    return AnswerLine(number, reference, status if status in STATUSES else None, reason, error)
