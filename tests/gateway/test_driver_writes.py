"""Writes straight on the driver (`Database.driver_transaction`, `gateway.bulk.driver_insert`,
`session_insert`, `session_update`, `session_rows`, events):
rows read back through the ORM exactly as the ORM would have written them, a failed
transaction leaves nothing behind, and on SQLite the writer's turn is always given back."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.exc import IntegrityError

from gateway.bulk import driver_insert, session_insert, session_rows, session_update
from gateway.db import Database
from gateway.events import Event, canonical_json, publish
from gateway.evidence import recorder  # noqa: F401  (registers the log's sink of events)
from gateway.evidence.models import EvidenceEntry
from gateway.tenancy import create_partner, ensure_tenant


def _row(entry_id: str, at: datetime) -> dict[str, object]:
    return {"id": entry_id, "kind": "call", "tenant_id": "ten_1", "partner_id": None,
            "resource_id": None, "request_id": "req_" + entry_id, "canonical": b'{"k":"\xc3\xa9"}',
            "leaf_hash": bytes(range(32)), "idx": None, "created_at": at}


def _count(database: Database) -> int:
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(EvidenceEntry)) or 0


def test_rows_read_back_as_the_orm_writes_them(database: Database):
    at = datetime(2026, 12, 4, 10, 30, 15, 123456, tzinfo=UTC)
    with database.driver_transaction() as cursor:
        driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, [_row("ev_a", at), _row("ev_b", at)])
    with database.transaction() as s:
        s.add(EvidenceEntry(**_row("ev_orm", at)))
    with database.transaction() as s:
        got = {e.id: e for e in s.scalars(select(EvidenceEntry))}
        assert set(got) == {"ev_a", "ev_b", "ev_orm"}
        for entry_id in ("ev_a", "ev_b"):
            entry, orm = got[entry_id], got["ev_orm"]
            assert entry.created_at == orm.created_at == at
            assert entry.canonical == orm.canonical == b'{"k":"\xc3\xa9"}'
            assert entry.leaf_hash == bytes(range(32))
            assert entry.request_id == "req_" + entry_id and entry.partner_id is None
            assert entry.seq is not None  # the key the database generates
        # Stored alike: the same row found by a filter on the time column.
        assert s.scalar(select(func.count()).select_from(EvidenceEntry)
                        .where(EvidenceEntry.created_at == at)) == 3


def test_a_failed_transaction_writes_nothing_and_frees_the_writer(database: Database):
    at = datetime.now(UTC)
    with database.driver_transaction() as cursor:
        driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, [_row("ev_1", at)])
    with pytest.raises(IntegrityError), database.driver_transaction() as cursor:
        driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, [_row("ev_2", at)])
        try:  # the second row repeats a unique id: the whole batch is refused
            driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, [_row("ev_1", at)])
        except database.engine.dialect.loaded_dbapi.IntegrityError as exc:
            raise IntegrityError("insert", None, exc) from exc
    assert _count(database) == 1

    # The writer is free again: another thread's write goes through at once.
    done = threading.Event()

    def write() -> None:
        with database.driver_transaction() as cursor:
            driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, [_row("ev_3", at)])
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(5)
    assert _count(database) == 2


def test_a_column_default_is_not_silently_skipped(database: Database):
    # SQLAlchemy fills in a Python-side default; the driver cannot, so such a column must be
    # given a value by the caller.
    table = Table("with_default", MetaData(), Column("id", String(10), primary_key=True),
                  Column("status", String(10), default="new"))
    with pytest.raises(ValueError, match="give every inserted column a value"), \
            database.driver_transaction() as cursor:
        driver_insert(database.engine.dialect, cursor, table, [{"id": "x"}])


def test_in_a_session_rows_commit_and_roll_back_with_it(database: Database):
    at = datetime.now(UTC)
    with database.transaction() as s:
        session_insert(s, EvidenceEntry.__table__, [_row("ev_kept", at)])
    with pytest.raises(RuntimeError), database.transaction() as s:
        session_insert(s, EvidenceEntry.__table__, [_row("ev_undone", at)])
        raise RuntimeError("the request failed")
    # A driver error is SQLAlchemy's, as the request's middleware expects of any statement.
    with pytest.raises(IntegrityError), database.transaction() as s:
        session_insert(s, EvidenceEntry.__table__, [_row("ev_kept", at)])
    with database.transaction() as s:
        assert list(s.scalars(select(EvidenceEntry.id))) == ["ev_kept"]


def test_in_a_session_a_duplicate_can_be_skipped_and_rows_updated(database: Database):
    at = datetime(2026, 12, 5, 8, 0, 0, 250000, tzinfo=UTC)
    later = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    with database.transaction() as s:
        assert session_insert(s, EvidenceEntry.__table__, [_row("ev_1", at)]) == 1
        # The same key again, skipped: 0 rows, and the transaction goes on (on PostgreSQL too).
        assert session_insert(s, EvidenceEntry.__table__, [_row("ev_1", later)],
                              skip_conflicts=True) == 0
        session_insert(s, EvidenceEntry.__table__, [_row("ev_2", at)])
        changed = session_update(s, EvidenceEntry.__table__, "id", [
            {"id": "ev_1", "idx": 7, "created_at": later},
            {"id": "ev_2", "idx": 8, "created_at": later},
            {"id": "ev_none", "idx": 9, "created_at": later}])
        assert changed == 2
    with database.transaction() as s:
        got = {e.id: (e.idx, e.created_at) for e in s.scalars(select(EvidenceEntry))}
        assert got == {"ev_1": (7, later), "ev_2": (8, later)}
        # Stored as the ORM stores times: found by a filter on the column.
        assert s.scalar(select(func.count()).select_from(EvidenceEntry)
                        .where(EvidenceEntry.created_at == later)) == 2


def test_a_read_on_the_driver_sees_what_the_session_has_not_flushed(database: Database):
    with database.transaction() as s:
        s.add(EvidenceEntry(**_row("ev_pending", datetime.now(UTC))))
        assert session_rows(s, "SELECT id, kind FROM evidence_entries WHERE id = :id",
                            {"id": "ev_pending"}) == [("ev_pending", "call")]


def test_a_published_event_reads_back_as_it_was_published(database: Database):
    at = datetime(2026, 12, 5, 8, 0, 0, 1, tzinfo=UTC)
    data = {"id": "trf_1", "amount": {"amount": "12.34", "currency": "CNY"},
            "memo": "工资 – 十二月", "tags": [1, None, True]}
    with database.transaction() as s:
        tenant = ensure_tenant(s, create_partner(s, name="Events", status="active").id,
                               "sandbox").id
        event = publish(s, tenant_id=tenant, type="transfer.completed", resource_type="transfer",
                        resource_id="trf_1", data=data, actor="tester", at=at)
        assert s.get(Event, event.id) is event  # the session's own object
    with database.transaction() as s:
        stored = s.get(Event, event.id)
        assert stored is not None
        assert (stored.data, stored.created_at, stored.dispatched) == (data, at, False)
        assert stored.state_digest == hashlib.sha256(canonical_json(data)).hexdigest()
        assert s.scalar(select(func.count()).select_from(Event)
                        .where(Event.created_at == at, Event.dispatched.is_(False))) == 1
        # and its evidence entry (the log's sink) was written in the same transaction
        assert s.scalar(select(func.count()).select_from(EvidenceEntry)
                        .where(EvidenceEntry.kind == "event")) == 1
