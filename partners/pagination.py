"""Cursor pagination over prefixed, sortable ids (`?limit=` 1..100, `?cursor=`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.errors import ValidationFailed

T = TypeVar("T")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("The cursor is not valid.", code="invalid_cursor") from None
    if not value or len(value) > 60 or not value.isascii():
        raise ValidationFailed("The cursor is not valid.", code="invalid_cursor")
    return value


def page(session: Session, query: Select[Any], id_column: InstrumentedAttribute[str], *,
         limit: int, cursor: str | None, newest_first: bool = True) -> tuple[list[Any], str | None]:
    """One page of `query` ordered by id; returns the rows and the next cursor (or None)."""
    if cursor:
        after = decode_cursor(cursor)
        query = query.where(id_column < after if newest_first else id_column > after)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
