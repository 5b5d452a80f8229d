"""The unified social credit code (统一社会信用代码, GB 32100-2015) and its check character."""

from __future__ import annotations

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
REGISTRATION_AUTHORITIES = "123456789ANY"


class InvalidUSCC(ValueError):
    """The code is not a valid unified social credit code; the message says why."""


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc(raw: str) -> str:
    """Return the normalized code (trimmed, upper case) or raise InvalidUSCC."""
    value = (raw or "").strip().upper()
    if len(value) != 18:
        raise InvalidUSCC("A unified social credit code has 18 characters.")
    bad = sorted({c for c in value if c not in USCC_CHARSET})
    if bad:
        raise InvalidUSCC(f"The code may not contain {', '.join(bad)} (I, O, S, V and Z are never used).")
    if value[0] not in REGISTRATION_AUTHORITIES:
        raise InvalidUSCC("The first character is not a registration authority code.")
    if not value[2:8].isdigit():
        raise InvalidUSCC("Characters 3-8 must be the 6-digit region code.")
    if uscc_check_char(value[:17]) != value[17]:
        raise InvalidUSCC("The check character is wrong (mistyped?).")
    return value
