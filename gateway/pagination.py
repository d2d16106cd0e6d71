"""Cursor pagination in one place: `?limit=` (1..100, default 20) and `?cursor=`, answered as
`{"data": [...], "next_cursor": ...}`. Cursors are opaque (base64 of the last id seen) and
ids are sortable, so a page is a keyset query and never skips or repeats a row."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.errors import ValidationFailed

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed("The cursor is not valid.", code="invalid_cursor") from None
    if not value or len(value) > 60 or not value.isascii() or not value.isprintable():
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
