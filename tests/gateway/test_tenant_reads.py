"""What a business call asks of its tenant (its clock, its environment) is read once per
transaction, and afresh in the next one: a test clock moved by another process in between is
seen, and so is one moved earlier in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from gateway import tenancy
from gateway.db import Database
from gateway.errors import NotFound
from gateway.tenancy import (
    advance_clock,
    clock_for,
    create_partner,
    ensure_tenant,
    get_tenant,
    is_sandbox,
    reset_clock,
)


@contextmanager
def tenant_reads(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every read of the tenants table, through SQLAlchemy or on the driver."""
    seen: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "FROM tenants" in statement:
            seen.append(statement)

    def driver_read(session, sql, params):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return rows(session, sql, params)

    rows = tenancy.session_rows
    monkeypatch.setattr(tenancy, "session_rows", driver_read)
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def test_one_read_per_transaction_and_a_moved_clock_seen_in_the_next(
        database: Database, monkeypatch: pytest.MonkeyPatch):
    with database.transaction() as s:
        tenant_id = ensure_tenant(s, create_partner(s, name="P", status="active").id, "sandbox").id

    with tenant_reads(database, monkeypatch) as seen, database.transaction() as s:
        before = clock_for(s, tenant_id).now()
        assert len(seen) == 1
        s.flush()  # a flush between the two (as a service writes its row in between) keeps it
        assert is_sandbox(s, tenant_id)
        clock_for(s, tenant_id)
        assert len(seen) == 1
        assert get_tenant(s, tenant_id).environment == "sandbox"  # the row itself, once
        get_tenant(s, tenant_id)
        assert len(seen) == 2

    # Another process moves the clock; the same session's next transaction sees it.
    with database.transaction() as other:
        advance_clock(other, tenant_id, 3600)
    with database.transaction() as s:
        seen_clock = clock_for(s, tenant_id).now()
    assert (seen_clock - before).total_seconds() >= 3600


def test_a_long_lived_session_reads_again_after_each_commit(database: Database):
    with database.transaction() as s:
        tenant_id = ensure_tenant(s, create_partner(s, name="P", status="active").id, "sandbox").id
    session = database.sessions()
    try:
        first = clock_for(session, tenant_id).now()
        session.commit()
        with database.transaction() as other:
            advance_clock(other, tenant_id, 7200)
        # The row is not held past the commit, so this transaction reads it again (a row held
        # for ever would answer from memory, an hour behind).
        assert (clock_for(session, tenant_id).now() - first).total_seconds() >= 7200
    finally:
        session.close()


def test_a_clock_moved_in_the_transaction_is_seen_in_it(database: Database):
    with database.transaction() as s:
        tenant_id = ensure_tenant(s, create_partner(s, name="P", status="active").id, "sandbox").id
    with database.transaction() as s:
        start = clock_for(s, tenant_id).now()
        advance_clock(s, tenant_id, 86_400)
        assert (clock_for(s, tenant_id).now() - start).total_seconds() >= 86_400
        reset_clock(s, tenant_id)
        assert (clock_for(s, tenant_id).now() - start).total_seconds() < 60


def test_an_unknown_tenant_is_not_found(database: Database):
    with database.transaction() as s, pytest.raises(NotFound):
        is_sandbox(s, "ten_unknown")
