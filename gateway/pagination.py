"""Cursor pagination in one place: `?limit=` (1..100, default 20) and `?cursor=`, answered as
`{"data": [...], "next_cursor": ...}`.

A page is a keyset query: rows are ordered by a unique key and the next page starts after the
last key seen, so paging never skips or repeats a row. The cursor is opaque: it carries the last
key and a check tag binding it to the list that issued it, that is its *scope*: the table, the
key column(s) and the direction (`accounts.id:desc`, `payroll_items.seq:asc`). A cursor that
this list did not issue (garbage, another list's cursor, an edited one) is refused with one
answer everywhere: 422 `invalid_cursor`, pointing at `query.cursor`. Every list, including those
that write their own keyset query, encodes and decodes here (`encode_cursor`, `decode_cursor`,
`scope_of`).

The tag is a truncated SHA-256 of the scope and the key: it detects tampering and mixing, it is
not a secret (every query stays tenant-scoped, so a forged cursor could only page the caller's
own rows)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway.errors import ValidationFailed

T = TypeVar("T")

# The longest cursor a list ever issues or accepts (the `cursor` query parameter's maxLength).
MAX_CURSOR_LENGTH = 200
_TAG_BYTES = 8
_DOMAIN = b"quanlian.cursor.v1\x00"
# Key bytes that fit in MAX_CURSOR_LENGTH base64url characters together with the tag.
MAX_KEY_BYTES = MAX_CURSOR_LENGTH * 3 // 4 - _TAG_BYTES

Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH,
                                     description="`next_cursor` of the previous page (opaque; "
                                                 "valid only for the list that issued it)")]


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


class InvalidCursor(ValidationFailed):
    code, title = "invalid_cursor", "Invalid cursor"

    def __init__(self) -> None:
        super().__init__("The cursor is not valid for this list: pass the `next_cursor` of the "
                         "previous page of the same list, or no cursor for the first page.",
                         errors=[{"field": "query.cursor", "message": "not a cursor of this list",
                                  "code": "invalid_cursor"}])


def scope_of(*columns: InstrumentedAttribute[Any], newest_first: bool = True) -> str:
    """The scope of a keyset list ordered by `columns` (one table): `table.col[,col]:desc|asc`."""
    table = columns[0].__clause_element__().table.name  # type: ignore[attr-defined]
    keys = ",".join(column.key for column in columns)
    return f"{table}.{keys}:{'desc' if newest_first else 'asc'}"


def _tag(scope: str, key: bytes) -> bytes:
    return hashlib.sha256(_DOMAIN + scope.encode() + b"\x00" + key).digest()[:_TAG_BYTES]


def encode_cursor(scope: str, last_key: str) -> str:
    """The cursor that continues the list `scope` after `last_key`."""
    key = last_key.encode()
    if not key or len(key) > MAX_KEY_BYTES:
        raise ValueError(f"a cursor key must be 1 to {MAX_KEY_BYTES} bytes: {last_key[:80]!r}")
    return base64.urlsafe_b64encode(_tag(scope, key) + key).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str) -> str:
    """The last key of a cursor that the list `scope` issued; any other is `InvalidCursor`."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii() \
            or len(cursor) % 4 == 1:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    tag, key = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
    if not key or not hmac.compare_digest(tag, _tag(scope, key)):
        raise InvalidCursor()
    # One spelling per cursor: the decoder ignores stray padding bits and characters.
    if base64.urlsafe_b64encode(raw).decode().rstrip("=") != cursor:
        raise InvalidCursor()
    try:
        return key.decode()
    except UnicodeDecodeError:  # pragma: no cover - only a tag collision gets here
        raise InvalidCursor() from None


def decode_int_cursor(scope: str, cursor: str) -> int:
    """The last key of a cursor over an integer column (a sequence number)."""
    value = decode_cursor(scope, cursor)
    if not value.isdigit() or not value.isascii():
        raise InvalidCursor()
    return int(value)


def page(session: Session, query: Select[Any], id_column: InstrumentedAttribute[str], *,
         limit: int, cursor: str | None, newest_first: bool = True) -> tuple[list[Any], str | None]:
    """One page of `query` ordered by the unique `id_column`; returns the rows and the next
    cursor (or None)."""
    scope = scope_of(id_column, newest_first=newest_first)
    if cursor:
        after = decode_cursor(scope, cursor)
        query = query.where(id_column < after if newest_first else id_column > after)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    last = getattr(rows[-1], id_column.key) if more and rows else None
    return rows, (encode_cursor(scope, last) if last is not None else None)
