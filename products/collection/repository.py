"""Queries of the collection tables: tenant-scoped look-ups, row locks and cursor pages.

Every look-up filters by the caller's tenant, so another tenant's id is simply not found.
Locked reads use `populate_existing`, so a row already in the session is refreshed with the
values read under the lock (a waiter on PostgreSQL sees the winner's committed change).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.errors import NotFound
from gateway.pagination import decode_cursor, encode_cursor, page  # noqa: F401  (one pagination)

T = TypeVar("T")


def get(session: Session, model: type[T], tenant_id: str, ident: str, error: type[NotFound], *,
        lock: bool = False, shared: bool = False) -> T:
    """The tenant's row with this id (locked FOR UPDATE, or FOR SHARE when `shared`, if asked),
    or `error` (404)."""
    if not isinstance(ident, str) or not ident or len(ident) > 60:
        raise error(f"No such resource: {str(ident)[:60]!r}.")
    query = select(model).where(model.id == ident, model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    if lock:
        query = query.with_for_update(read=shared).execution_options(populate_existing=True)
    row = session.scalars(query).first()
    if row is None:
        raise error(f"No such resource: {ident}.")
    return row


def insert_unique(session: Session, rows: list[Any], duplicate: Exception) -> None:
    """Add `rows` and write them now, in a savepoint. The look-up for an existing reference
    that precedes this cannot see a concurrent request's uncommitted row: when that request
    wins, the unique index refuses this one, and the caller answers `duplicate` (a 409 naming
    the reference, as the look-up would have), not a bare `concurrent_update` at commit."""
    session.add_all(rows)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise duplicate from None


def lock(session: Session, query: Select[Any]) -> list[Any]:
    """Rows of `query`, locked FOR UPDATE and refreshed."""
    return list(session.scalars(query.with_for_update().execution_options(
        populate_existing=True)))


