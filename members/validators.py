"""Validators for resident ID numbers (GB 11643), mobile numbers and region codes (GB/T 2260)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
PROVINCE_CODES = frozenset({
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
    50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
})
MIN_MEMBER_AGE = 16
MAX_AGE = 120
# ASCII classes, not \d: str.isdigit() and \d also take digits such as '٦' that int() reads differently.
ID_NUMBER_RE = re.compile(r"[0-9]{17}[0-9X]")
PHONE_RE = re.compile(r"1[3-9][0-9]{9}")
REGION_RE = re.compile(r"[0-9]{6}")
PHONE_SEPARATORS_RE = re.compile(r"[\s\-()]")


class InvalidValue(ValueError):
    """A value failed validation; the message says why, for a person."""


def id_check_char(first17: str) -> str:
    """Return the GB 11643 check character for the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS))
    return ID_CHECK_CHARS[total % 11]


def _fold(raw: str | None) -> str:
    """Fold compatibility characters (full-width digits and letters) to their plain forms."""
    return unicodedata.normalize("NFKC", raw or "")


def normalize_id_number(raw: str) -> str:
    """Fold an ID number for validation and storage (full-width to ASCII, trim, upper-case x)."""
    return _fold(raw).strip().upper()


def birth_date_of(id_number: str) -> dt.date:
    """Return the birth date encoded in an 18-character ID number."""
    return dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def validate_id_number(raw: str, today: dt.date | None = None) -> str:
    """Return the normalized ID number or raise InvalidValue with the reason."""
    value = normalize_id_number(raw)
    today = today or dt.date.today()
    if len(value) != 18:
        raise InvalidValue("An ID number has 18 characters.")
    if not ID_NUMBER_RE.fullmatch(value):
        raise InvalidValue("An ID number is 17 digits followed by a digit or X.")
    if int(value[:2]) not in PROVINCE_CODES:
        raise InvalidValue("The ID number does not start with a valid region code.")
    try:
        born = birth_date_of(value)
    except ValueError:
        raise InvalidValue("The birth date in the ID number is not a real date.") from None
    if born > today:
        raise InvalidValue("The birth date in the ID number is in the future.")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < MIN_MEMBER_AGE:
        raise InvalidValue(f"The ID number belongs to someone under {MIN_MEMBER_AGE}.")
    if age > MAX_AGE:
        raise InvalidValue("The birth date in the ID number is implausibly early.")
    if id_check_char(value[:17]) != value[17]:
        raise InvalidValue("The ID number's check character is wrong (mistyped?).")
    return value


def normalize_phone(raw: str) -> str:
    """Fold full-width characters, strip spaces, dashes and brackets and a +86 / 0086 prefix."""
    value = PHONE_SEPARATORS_RE.sub("", _fold(raw))
    for prefix in ("+86", "0086"):
        if value.startswith(prefix):
            value = value[len(prefix):]
    return value


def validate_phone(raw: str) -> str:
    """Return the normalized mainland mobile number or raise InvalidValue."""
    value = normalize_phone(raw)
    if not PHONE_RE.fullmatch(value):
        raise InvalidValue("A mainland mobile number has 11 digits and starts with 13-19.")
    return value


def region_prefix(region: str) -> str:
    """Return the significant prefix of a region code: 640000 -> 64, 640100 -> 6401."""
    if region.endswith("0000"):
        return region[:2]
    if region.endswith("00"):
        return region[:4]
    return region


def validate_region(raw: str, parent_region: str | None = None) -> str:
    """Return a 6-digit region code lying within the parent's region, or raise InvalidValue."""
    value = (raw or "").strip()
    if not REGION_RE.fullmatch(value):
        raise InvalidValue("A region is a 6-digit administrative division code, e.g. 640100.")
    if int(value[:2]) not in PROVINCE_CODES:
        raise InvalidValue("The region code does not start with a valid province code.")
    if parent_region is not None and not value.startswith(region_prefix(parent_region)):
        raise InvalidValue(f"The region must lie within the parent union's region {parent_region}.")
    return value
