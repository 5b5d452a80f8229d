"""Keyset pagination with opaque cursors: `?limit=&cursor=` -> `{data, next_cursor}`."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from core.errors import ValidationFailed

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


@dataclass
class Page:
    items: list[Any]
    next_cursor: str | None


def encode_cursor(key: int) -> str:
    """Wrap a row key into an opaque cursor."""
    return base64.urlsafe_b64encode(f"k{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Unwrap a cursor, refusing anything that was not made by encode_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        key = int(raw[1:]) if raw.startswith("k") else -1
        if not 0 < key < 2**63:
            raise ValueError
        return key
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["Not a valid cursor."]}) from None


def paginate(session: Session, query: Select, key_column, *, limit: int, cursor: str | None,
             descending: bool = False) -> Page:
    """Run `query` one page at a time ordered by a unique integer key column."""
    limit = max(1, min(int(limit or DEFAULT_LIMIT), MAX_LIMIT))
    if cursor:
        key = decode_cursor(cursor)
        query = query.where(key_column < key if descending else key_column > key)
    query = query.order_by(key_column.desc() if descending else key_column.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(getattr(rows[-1], key_column.key)) if more and rows else None
    return Page(rows, next_cursor)
