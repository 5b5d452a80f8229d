"""Money in integer minor units (fen): one rounding rule, one formatter, no floats."""

from __future__ import annotations

import re
import unicodedata

CURRENCIES = {"CNY": 2}
BP_DENOMINATOR = 10_000


def bp_of(amount: int, basis_points: int) -> int:
    """Return basis_points/10000 of an amount in minor units, rounded half-up to the unit."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int of minor units")
    if isinstance(basis_points, bool) or not isinstance(basis_points, int):
        raise TypeError("basis_points must be an int")
    product = amount * basis_points
    sign = -1 if product < 0 else 1
    # Half-up means away from zero on a tie, so negate, round, negate for refunds.
    return sign * ((abs(product) * 2 + BP_DENOMINATOR) // (2 * BP_DENOMINATOR))


def format_amount(amount: int, currency: str = "CNY") -> str:
    """Render minor units for people, e.g. 1250 CNY -> '¥12.50'."""
    digits = CURRENCIES.get(currency, 2)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10 ** digits)
    symbol = "¥" if currency == "CNY" else currency + " "
    return f"{sign}{symbol}{major:,}.{minor:0{digits}d}"


_YUAN_RE = re.compile(r"^(\d{1,10})(?:\.(\d{1,2}))?$", re.ASCII)


def parse_yuan(text: str | None) -> int | None:
    """Read an amount typed in yuan (`500`, `500.5`, `1,500.05`, full-width digits too) as fen; None if it
    is not one."""
    match = _YUAN_RE.match(unicodedata.normalize("NFKC", text or "").replace(",", "").strip())
    if match is None:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))
