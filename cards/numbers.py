"""Card numbers (issuer prefix + random digits + Luhn check digit), payment-code digits, and PIN rules."""

from __future__ import annotations

import datetime as dt
import re
import secrets

CARD_NUMBER_LENGTH = 19
PIN_RE = re.compile(r"^[0-9]{6}$")
PAYMENT_CODE_LENGTH = 18
# Member payment codes start with these two digits, so a till can tell them from other barcodes.
PAYMENT_CODE_PREFIX = "88"


def luhn_check_digit(body: str) -> str:
    """Return the Luhn (ISO/IEC 7812-1) check digit for a string of digits."""
    if not body.isascii() or not body.isdigit():
        raise ValueError("digits only")
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: the check digit will sit to its right
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Tell whether a string of digits ends in its correct Luhn check digit."""
    if len(number) < 2 or not number.isascii() or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def new_card_number(prefix: str, length: int = CARD_NUMBER_LENGTH) -> str:
    """Return a card number: the issuer prefix, random digits, and the Luhn check digit."""
    if not prefix.isascii() or not prefix.isdigit() or len(prefix) > length - 8:
        raise ValueError("the card prefix must be digits, leaving at least 8 digits for the card")
    random_digits = length - len(prefix) - 1
    body = prefix + f"{secrets.randbelow(10 ** random_digits):0{random_digits}d}"
    return body + luhn_check_digit(body)


def normalize_card_number(value: str) -> str:
    """Drop the spaces and dashes people type inside card numbers."""
    return re.sub(r"[\s-]", "", value or "")


def mask_card_number(number: str) -> str:
    """Show the first six and the last four digits: 880064*********1234."""
    return number[:6] + "*" * (len(number) - 10) + number[-4:]


def group_digits(value: str, size: int = 4) -> str:
    """Write digits in groups for reading aloud or typing: 8800 6412 3456 ..."""
    return " ".join(value[i:i + size] for i in range(0, len(value), size))


def new_payment_code_digits() -> str:
    """Return an 18-digit payment code: the prefix, 15 random digits, and a Luhn check digit.

    The 15 digits come from the operating system's CSPRNG, so knowing earlier codes tells nothing
    about the next; a code is only good while the server holds it (see cards.service).
    """
    body = PAYMENT_CODE_PREFIX + f"{secrets.randbelow(10 ** 15):015d}"
    return body + luhn_check_digit(body)


def looks_like_payment_code(value: str) -> bool:
    """Tell whether a scanned value has the shape of a member payment code (prefix, length, check digit)."""
    return (isinstance(value, str) and len(value) == PAYMENT_CODE_LENGTH
            and value.startswith(PAYMENT_CODE_PREFIX) and luhn_valid(value))


def _sequences() -> set[str]:
    digits = "0123456789"
    runs = set()
    for start in range(5):
        runs.add(digits[start:start + 6])
        runs.add(digits[start:start + 6][::-1])
    runs.update({"890123", "901234", "098765", "109876"})
    return runs


_WEAK_SEQUENCES = _sequences()


def _birth_date_forms(born: dt.date) -> set[str]:
    """Six-digit ways people write their birth date: YYMMDD, MMDDYY, DDMMYY, and YYYYMM, MMYYYY."""
    yyyy, yy, mm, dd = f"{born:%Y}", f"{born:%y}", f"{born:%m}", f"{born:%d}"
    return {yy + mm + dd, mm + dd + yy, dd + mm + yy, yyyy + mm, mm + yyyy, yyyy[2:] + dd + mm}


def pin_problems(pin: str, *, born: dt.date | None = None, id_number: str | None = None,
                 phone: str | None = None) -> list[str]:
    """Return why a PIN is not acceptable (empty when it is)."""
    if not isinstance(pin, str) or not PIN_RE.match(pin):
        return ["A PIN is exactly six digits."]
    if len(set(pin)) == 1 or pin in _WEAK_SEQUENCES:
        return ["That PIN is too easy to guess; avoid repeated digits and runs like 123456."]
    if pin[:3] * 2 == pin or pin[:2] * 3 == pin:
        return ["That PIN is too easy to guess; avoid repeated patterns like 121212 or 123123."]
    if born is not None and pin in _birth_date_forms(born):
        return ["Do not use your birth date as your PIN."]
    if id_number and pin == id_number[-6:]:
        return ["Do not use the end of your ID number as your PIN."]
    if phone and pin == phone[-6:]:
        return ["Do not use the end of your phone number as your PIN."]
    return []
