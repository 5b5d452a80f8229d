"""Money in integer minor units (fen): one rounding rule, one formatter, no floats."""

from __future__ import annotations

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
