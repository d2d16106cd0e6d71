"""Queries of the collection tables: tenant-scoped look-ups, row locks and cursor pages.

Every look-up filters by the caller's tenant, so another tenant's id is simply not found.
Locked reads use `populate_existing`, so a row already in the session is refreshed with the
values read under the lock (a waiter on PostgreSQL sees the winner's committed change).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
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


def lock(session: Session, query: Select[Any]) -> list[Any]:
    """Rows of `query`, locked FOR UPDATE and refreshed."""
    return list(session.scalars(query.with_for_update().execution_options(
        populate_existing=True)))


