"""Opaque, prefixed, non-sequential public identifiers."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.digits + string.ascii_letters
ID_LENGTH = 20  # about 119 bits of randomness


SPACE = len(ALPHABET) ** ID_LENGTH


def new_public_id(prefix: str) -> str:
    """Return a fresh public id such as `mem_4fG...` for the given type prefix."""
    # One draw from the whole id space, then base-62 digits: uniform, and one call to the OS for it.
    n = secrets.randbelow(SPACE)
    digits = []
    for _ in range(ID_LENGTH):
        n, r = divmod(n, 62)
        digits.append(ALPHABET[r])
    return prefix + "_" + "".join(digits)


def looks_like(public_id: str, prefix: str) -> bool:
    """Tell whether a string has the shape of a public id of this type."""
    head, _, tail = public_id.partition("_")
    return head == prefix and len(tail) == ID_LENGTH and all(c in ALPHABET for c in tail)
