"""Statements in: the bank's CSV, Stripe's balance-transactions CSV export, and Stripe's API.

Each importer yields staged lines (tuples in STAGE_COLUMNS order) in the bank statement's sign: positive
for money leaving the account, negative for money arriving. Stripe signs the other way round (a charge is
positive, a transfer negative), so its amounts are negated; its fee is what it took on top, positive when
it leaves the balance. Amounts become integer minor units exactly, never through a float.

A bad line is reported with its number (counting from the first line after the header) and field
(`line 12.amount`); up to MAX_ERRORS of them are reported at once, and nothing is kept of a file with any.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

import stripe

from core.errors import RuleViolation, ServiceUnavailable, ValidationFailed
from core.i18n import business_date
from core.stripe_client import stripe_client, stripe_configured

log = logging.getLogger(__name__)

STAGE_COLUMNS = ("line_no", "value_date", "reference", "amount", "fee", "currency", "description", "external_id",
                 "type", "hint", "wants")
BANK_HEADER = ["date", "reference", "amount", "currency", "description"]
# Stripe's export names its columns like this ("id" in lower case, the rest capitalised); any others are ignored.
STRIPE_REQUIRED = ("id", "type", "source", "amount", "fee", "net", "currency", "created (utc)")
STRIPE_OPTIONAL = ("description",)
MAX_ERRORS = 20
MAX_AMOUNT = 10**15
MAX_REFERENCE = 255
MAX_DESCRIPTION = 500
MAX_EXTERNAL_ID = 255
MAX_TYPE = 40
# Currencies without minor units (Stripe's list); every other one has two decimals.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
                          "XAF", "XOF", "XPF"})
# Stripe types whose lines may be ours when their reference does not say: transfers pay out, charges top up.
STRIPE_WANTS = {"transfer": "payout", "charge": "top_up", "payment": "top_up"}

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_FEN_RE = re.compile(r"^[+-]?\d{1,16}$", re.ASCII)
_DECIMAL_RE = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$", re.ASCII)
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A platform id named in a Stripe description: the top-up a charge paid, the payout a transfer carried.
_HINT_RE = re.compile(r"\b((?:top|po)_[0-9A-Za-z]{20})\b", re.ASCII)
_STRIPE_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")


@dataclass
class Problems:
    """The bad lines of one file, up to MAX_ERRORS of them."""

    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)
        if len(self.errors) >= MAX_ERRORS:
            self.stop()

    def stop(self) -> None:
        raise ValidationFailed(self.errors, "The statement has errors; nothing was imported.")

    def check(self) -> None:
        if self.errors:
            self.stop()


def _clean(text: str | None, limit: int) -> str | None:
    """Return the text without control characters, trimmed and cut to `limit`; None when nothing is left."""
    if not text:
        return None
    if not text.isprintable():
        text = _CONTROL_RE.sub(" ", text)
    return text.strip()[:limit] or None


def _minor_units(raw: str, currency: str) -> int | None:
    """Read Stripe's decimal major units ("1,234.50", "-0.30") as minor units; None if it is not one."""
    match = _DECIMAL_RE.match(raw.strip())
    if match is None:
        return None
    sign, whole, fraction = match.groups()
    digits = 0 if currency in ZERO_DECIMAL else 2
    fraction = fraction or ""
    if len(fraction) > digits:
        # Stripe writes "12.50" for CNY; more decimals than the currency has is not an amount of it.
        if fraction[digits:].strip("0"):
            return None
        fraction = fraction[:digits]
    value = int(whole.replace(",", "")) * 10**digits + int(fraction.ljust(digits, "0") or "0")
    return -value if sign == "-" else value


def _reader(fileobj: BinaryIO) -> Iterator[list[str]]:
    text_stream = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="")
    return csv.reader(text_stream)


def _header(reader) -> list[str]:
    try:
        return [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationFailed({"file": ["The file is empty."]}) from None
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed({"file": ["The file is not UTF-8 CSV."]}) from None


def _too_many(max_lines: int) -> ValidationFailed:
    return ValidationFailed({"file": [f"A statement has at most {max_lines} lines."]})


def bank_lines(fileobj: BinaryIO, *, max_lines: int) -> Iterator[tuple]:
    """Read a bank statement CSV: `date,reference,amount,currency,description`, amounts in fen."""
    problems = Problems()
    reader = _reader(fileobj)
    header = _header(reader)
    if header != BANK_HEADER:
        raise ValidationFailed({"file": ["The header must be date,reference,amount,currency,description."]})
    line_no = 0
    # A statement names few days and currencies: each is read once.
    days: dict[str, dt.date | None] = {}
    currencies: dict[str, str | None] = {}
    try:
        for fields in reader:
            if len(fields) != len(BANK_HEADER):
                if not any(f.strip() for f in fields):
                    continue
                line_no += 1
                problems.add(f"line {line_no}", f"Expected {len(BANK_HEADER)} fields, found {len(fields)}.")
                continue
            raw_date, reference, raw_amount, raw_currency, description = fields
            if not (raw_date or reference or raw_amount or raw_currency or description):
                continue  # an empty line that a spreadsheet wrote with its commas
            line_no += 1
            if line_no > max_lines:
                raise _too_many(max_lines)
            value_date = days.get(raw_date, False)
            if value_date is False:
                value_date = days[raw_date] = _bank_date(raw_date)
            currency = currencies.get(raw_currency, False)
            if currency is False:
                currency = currencies[raw_currency] = (raw_currency.strip().upper()
                                                       if _CURRENCY_RE.match(raw_currency.strip()) else None)
            raw_amount = raw_amount.strip()
            amount = int(raw_amount) if _FEN_RE.match(raw_amount) else None
            reference = _clean(reference, MAX_REFERENCE + 1)
            if value_date is None or currency is None or not amount or abs(amount) >= MAX_AMOUNT or (
                    reference and len(reference) > MAX_REFERENCE):
                where = f"line {line_no}"
                if value_date is None:
                    problems.add(f"{where}.date", "Not a date of the form YYYY-MM-DD.")
                if amount is None:
                    problems.add(f"{where}.amount", "Not a whole number of fen.")
                elif amount == 0 or abs(amount) >= MAX_AMOUNT:
                    problems.add(f"{where}.amount", "The amount is zero or out of range.")
                if currency is None:
                    problems.add(f"{where}.currency", "Not a three-letter currency code.")
                if reference and len(reference) > MAX_REFERENCE:
                    problems.add(f"{where}.reference", f"At most {MAX_REFERENCE} characters.")
            if problems.errors:
                continue
            yield (line_no, value_date, reference, amount, 0, currency, _clean(description, MAX_DESCRIPTION), None,
                   None, None, "payout" if amount > 0 else "funding")
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed({"file": [f"Line {line_no + 1} is not UTF-8 CSV."]}) from None
    problems.check()
    if line_no == 0:
        raise ValidationFailed({"file": ["The statement has no lines."]})


def _bank_date(raw: str) -> dt.date | None:
    raw = raw.strip()
    if not _DATE_RE.match(raw):
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        return None


def _stripe_time(raw: str) -> dt.datetime | None:
    raw = raw.strip()
    for fmt in _STRIPE_TIME_FORMATS:
        try:
            return dt.datetime.strptime(raw, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)


def _stripe_line(line_no: int, txn_id: str, type_: str, source: str, amount: int, fee: int, currency: str,
                 created: dt.datetime, description: str | None) -> tuple:
    """A staged line of a Stripe balance transaction (Stripe's signs turned into the statement's)."""
    type_ = (type_ or "").strip().lower()[:MAX_TYPE]
    hint = _HINT_RE.search(description or "")
    return (line_no, business_date(created), _clean(source, MAX_REFERENCE), -amount, fee, currency.upper(),
            _clean(description or "", MAX_DESCRIPTION), _clean(txn_id, MAX_EXTERNAL_ID), type_ or None,
            hint.group(1) if hint else None, STRIPE_WANTS.get(type_))


def stripe_csv_lines(fileobj: BinaryIO, *, max_lines: int) -> Iterator[tuple]:
    """Read Stripe's balance-transactions CSV export (id, Type, Source, Amount, Fee, Net, Currency,
    Created (UTC), Description, ...); amounts in decimal major units."""
    problems = Problems()
    reader = _reader(fileobj)
    header = _header(reader)
    missing = [name for name in STRIPE_REQUIRED if name not in header]
    if missing:
        raise ValidationFailed({"file": ["Not a Stripe balance-transactions export: the columns "
                                         + ", ".join(missing) + " are missing."]})
    at = {name: header.index(name) for name in (*STRIPE_REQUIRED, *STRIPE_OPTIONAL) if name in header}
    width = len(header)
    line_no = 0
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            line_no += 1
            if line_no > max_lines:
                raise _too_many(max_lines)
            where = f"line {line_no}"
            if len(fields) != width:
                problems.add(where, f"Expected {width} fields, found {len(fields)}.")
                continue
            currency = fields[at["currency"]].strip()
            if not _CURRENCY_RE.match(currency):
                problems.add(f"{where}.currency", "Not a three-letter currency code.")
                continue
            currency = currency.upper()
            amount = _minor_units(fields[at["amount"]], currency)
            raw_fee, raw_net = fields[at["fee"]].strip(), fields[at["net"]].strip()
            fee = _minor_units(raw_fee, currency) if raw_fee else 0
            net = _minor_units(raw_net, currency) if raw_net else None
            if amount is None or abs(amount) >= MAX_AMOUNT:
                problems.add(f"{where}.amount", "Not an amount such as 1,234.50.")
            if fee is None or abs(fee) >= MAX_AMOUNT:
                problems.add(f"{where}.fee", "Not an amount such as 1,234.50.")
            if raw_net and net is None:
                problems.add(f"{where}.net", "Not an amount such as 1,234.50.")
            elif net is not None and amount is not None and fee is not None and amount - fee != net:
                problems.add(f"{where}.net", "Net is not Amount minus Fee.")
            created = _stripe_time(fields[at["created (utc)"]])
            if created is None:
                problems.add(f"{where}.created", "Not a time such as 2026-11-25 08:30.")
            txn_id = fields[at["id"]].strip()
            if not txn_id:
                problems.add(f"{where}.id", "The balance transaction id is missing.")
            if problems.errors:
                continue
            if amount == 0 and fee == 0:
                continue  # nothing moved: Stripe lists such lines, a statement need not
            description = fields[at["description"]] if "description" in at else None
            yield _stripe_line(line_no, txn_id, fields[at["type"]], fields[at["source"]], amount, fee, currency,
                               created, description)
    except (UnicodeDecodeError, csv.Error):
        raise ValidationFailed({"file": [f"Line {line_no + 1} is not UTF-8 CSV."]}) from None
    problems.check()
    if line_no == 0:
        raise ValidationFailed({"file": ["The statement has no lines."]})


# --- Stripe's API ------------------------------------------------------------------------------------------

class BalanceTransactions(Protocol):
    """Read the platform's Stripe balance transactions of a period."""

    def list(self, *, created_gte: int, created_lt: int, max_items: int) -> list[Mapping[str, Any]]:
        """Return the balance transactions created in [gte, lt) (Unix seconds); refuse more than max_items."""
        ...


@contextlib.contextmanager
def _stripe_errors() -> Iterator[None]:
    """Turn SDK errors into domain errors: a refusal of the request is 422, an outage 503."""
    try:
        yield
    except stripe.InvalidRequestError as exc:
        log.warning("Stripe refused to list balance transactions: %s (request %s)", exc.code, exc.request_id)
        raise RuleViolation(f"Stripe refused the request: {exc.user_message}", code="stripe_error") from exc
    except stripe.StripeError as exc:
        log.error("Stripe failed to list balance transactions: %s %s (request %s)", type(exc).__name__,
                  exc.user_message, exc.request_id)
        raise ServiceUnavailable("Stripe is unavailable right now; try again later.",
                                 code="stripe_unavailable") from exc


class StripeBalanceTransactions:
    """Balance transactions through the official SDK, 100 a page, every page followed up to the limit."""

    PAGE = 100

    def __init__(self, client: stripe.StripeClient):
        self._client = client

    def list(self, *, created_gte: int, created_lt: int, max_items: int) -> list[Mapping[str, Any]]:
        """Return the balance transactions of [gte, lt), refusing more than max_items."""
        params = {"created": {"gte": created_gte, "lt": created_lt}, "limit": self.PAGE}
        found: list[Mapping[str, Any]] = []
        with _stripe_errors():
            for txn in self._client.v1.balance_transactions.list(params=params).auto_paging_iter():
                if len(found) >= max_items:
                    raise ValidationFailed({"until": [f"Stripe lists more than {max_items} balance transactions "
                                                      "for the period: import a shorter one."]})
                found.append(txn)
        return found


class DisabledBalanceTransactions:
    """Refuse API imports on a platform configured without a Stripe key."""

    def list(self, *, created_gte: int, created_lt: int, max_items: int) -> list[Mapping[str, Any]]:
        """Refuse: Stripe is not configured."""
        raise ServiceUnavailable("Stripe is not configured on this platform: upload the CSV export instead.",
                                 code="stripe_not_configured")


def balance_transactions(config: Mapping) -> BalanceTransactions:
    """Return the balance-transactions source the configuration calls for."""
    if not stripe_configured(config):
        return DisabledBalanceTransactions()
    return StripeBalanceTransactions(stripe_client(config))


def _field(obj: Mapping[str, Any], name: str):
    try:
        return obj[name]
    except (KeyError, TypeError):
        return getattr(obj, name, None)


def stripe_api_lines(transactions: list[Mapping[str, Any]]) -> Iterator[tuple]:
    """Turn balance transactions as the API gives them (minor units, Unix times) into staged lines."""
    line_no = 0
    for n, txn in enumerate(sorted(transactions, key=lambda t: (_field(t, "created") or 0, _field(t, "id") or "")),
                            start=1):
        amount, fee, created = _field(txn, "amount"), _field(txn, "fee") or 0, _field(txn, "created")
        currency, txn_id = _field(txn, "currency"), _field(txn, "id")
        if (type(amount) is not int or type(fee) is not int or type(created) is not int
                or not isinstance(currency, str) or not _CURRENCY_RE.match(currency) or not txn_id):
            raise ServiceUnavailable(f"Stripe answered a balance transaction this platform cannot read (#{n}).",
                                     code="stripe_unreadable")
        if amount == 0 and fee == 0:
            continue
        source = _field(txn, "source")
        if source is not None and not isinstance(source, str):
            source = _field(source, "id")
        line_no += 1
        yield _stripe_line(line_no, str(txn_id), _field(txn, "type") or "", source or "", amount, fee, currency,
                           dt.datetime.fromtimestamp(created, dt.timezone.utc), _field(txn, "description"))
