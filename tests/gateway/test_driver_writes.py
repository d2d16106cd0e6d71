"""Writes and reads straight on the driver (`Database.driver_transaction`,
`gateway.bulk.driver_insert`, `session_insert`, `session_update`, `session_rows`,
`session_store`, `session_save`, `session_select`, events):
rows read back through the ORM exactly as the ORM would have written them, a failed
transaction leaves nothing behind, and on SQLite the writer's turn is always given back."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Date, MetaData, String, Table, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway import pii
from gateway.bulk import (
    driver_insert,
    session_cursor,
    session_insert,
    session_rows,
    session_save,
    session_select,
    session_store,
    session_update,
)
from gateway.db import Database, UTCDateTime
from gateway.events import Event, canonical_json, publish
from gateway.evidence import recorder  # noqa: F401  (registers the log's sink of events)
from gateway.evidence.models import EvidenceEntry
from gateway.keys import PlatformKeys
from gateway.pii import EncryptedString
from gateway.tenancy import create_partner, ensure_tenant


def _row(entry_id: str, at: datetime) -> dict[str, object]:
    return {"id": entry_id, "kind": "call", "tenant_id": "ten_1", "partner_id": None,
            "resource_id": None, "request_id": "req_" + entry_id, "canonical": b'{"k":"\xc3\xa9"}',
            "leaf_hash": bytes(range(32)), "idx": None, "created_at": at}


def _count(database: Database) -> int:
    with database.transaction() as s:
        return s.scalar(select(func.count()).select_from(EvidenceEntry)) or 0


def test_a_connection_used_for_single_statements_goes_back_to_the_pool_transactional(
        database: Database):
    # On PostgreSQL `driver_statement` runs in autocommit. Were its connection handed back so,
    # a later transaction on it could not roll back: here one fails after its first write,
    # which must be gone with it, whether the statements before succeeded or failed.
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    fresh = Database(database.url)  # a pool of its own: every checkout reuses one connection
    try:
        with fresh.driver_statement() as cursor:
            assert driver_insert(fresh.engine.dialect, cursor, EvidenceEntry.__table__,
                                 [_row("ev_alone", at)]) == 1
        driver_error = fresh.engine.dialect.loaded_dbapi.IntegrityError  # the driver's own
        with pytest.raises(driver_error), fresh.driver_statement() as cursor:
            driver_insert(fresh.engine.dialect, cursor, EvidenceEntry.__table__,
                          [_row("ev_alone", at)])
        assert fresh.engine.pool.checkedin() == 1
        with pytest.raises(IntegrityError), fresh.transaction() as s:
            session_insert(s, EvidenceEntry.__table__, [_row("ev_undone", at)])
            session_insert(s, EvidenceEntry.__table__, [_row("ev_alone", at)])
        assert fresh.engine.pool.checkedin() == 1
        with fresh.transaction() as s:
            assert list(s.scalars(select(EvidenceEntry.id))) == ["ev_alone"]
    finally:
        fresh.dispose()


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


def _event_entries(database: Database) -> set[str]:
    with database.transaction() as s:
        return {e.resource_id for e in s.scalars(select(EvidenceEntry)
                                                 .where(EvidenceEntry.kind == "event"))}


def test_an_event_has_its_entry_if_and_only_if_its_change_commits(database: Database):
    """Event entries are written with the transaction's last statements (with the call's
    entry, or just before the commit): a rolled-back transaction, or savepoint, leaves none,
    a committed one all of its own."""
    with database.transaction() as s:
        tenant = ensure_tenant(s, create_partner(s, name="Events", status="active").id,
                               "sandbox").id

    def emit(s: Any, resource_id: str) -> None:
        publish(s, tenant_id=tenant, type="transfer.completed", resource_type="transfer",
                resource_id=resource_id, data={"id": resource_id}, actor="tester")

    with pytest.raises(RuntimeError), database.transaction() as s:
        emit(s, "trf_rolled_back")
        raise RuntimeError("the change fails")
    with database.transaction() as s:
        emit(s, "trf_kept")
        with pytest.raises(RuntimeError), s.begin_nested():
            emit(s, "trf_in_failed_savepoint")
            raise RuntimeError("the savepoint fails")
        with s.begin_nested():
            emit(s, "trf_in_savepoint")
        emit(s, "trf_after_savepoint")
    entries = _event_entries(database)
    assert entries == {"trf_kept", "trf_in_savepoint", "trf_after_savepoint"}
    with database.transaction() as s:
        assert {e.resource_id for e in s.scalars(select(Event))} == entries


class _Scratch(DeclarativeBase):
    pass


class _Note(_Scratch):
    """A table of every kind of column a driver read or write must treat as the ORM does."""

    __tablename__ = "driver_notes"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    body: Mapped[str] = mapped_column(EncryptedString())
    tags: Mapped[list[str]] = mapped_column(JSON)
    due_on: Mapped[date] = mapped_column(Date)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(10), default="new")
    count: Mapped[int] = mapped_column(default=0)
    memo: Mapped[str | None] = mapped_column(String(20))


@pytest.fixture
def notes(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setattr(pii, "_vault", pii.Vault(PlatformKeys(tmp_path)))
    _Scratch.metadata.create_all(database.engine)
    return database


def _note(note_id: str) -> _Note:
    return _Note(id=note_id, body="张伟 的备注", tags=["a", "乙"], due_on=date(2026, 12, 31),
                 at=datetime(2026, 12, 5, 9, 0, 0, 5, tzinfo=UTC))


def test_stored_objects_are_the_sessions_own_with_their_defaults(notes: Database):
    with notes.transaction() as s:
        first, second = _note("n1"), _note("n2")
        second.status = "open"
        session_store(s, [first, second])
        # Nothing left pending, and the defaults are on the objects, not only in the rows.
        assert not s.new and s.get(_Note, "n1") is first
        assert (first.status, first.count, first.memo, second.status) == ("new", 0, None, "open")
        first.count = 3  # a change after storing is an ordinary UPDATE at the next flush
    with notes.transaction() as s:
        got = {n.id: n for n in s.scalars(select(_Note))}
        assert (got["n1"].count, got["n1"].status, got["n2"].status) == (3, "new", "open")
        assert got["n1"].body == "张伟 的备注" and got["n1"].tags == ["a", "乙"]
        assert got["n1"].at == datetime(2026, 12, 5, 9, 0, 0, 5, tzinfo=UTC)
    # A taken key is refused as a flush would refuse it, and nothing of the call is kept.
    with pytest.raises(IntegrityError), notes.transaction() as s:
        session_store(s, [_note("n3")])
        session_store(s, [_note("n1")])
    with notes.transaction() as s:
        assert sorted(s.scalars(select(_Note.id))) == ["n1", "n2"]


@pytest.mark.parametrize("count", [1, 2, 16, 17, 40])
def test_any_number_of_rows_reads_back_as_written(notes: Database, count: int):
    """A few rows go in one multi-row statement, more by executemany: read back alike, every
    type's processing applied to every row, and a taken key among several is refused whole,
    or, skipping conflicts, left out and counted out."""
    def notes_of(ids: list[str]) -> list[dict[str, Any]]:
        return [{"id": i, "body": f"张伟 {i}", "tags": ["a", i], "due_on": date(2026, 12, 31),
                 "at": datetime(2026, 12, 5, 9, 0, 0, n, tzinfo=UTC), "status": "new",
                 "count": n, "memo": None} for n, i in enumerate(ids)]
    ids = [f"n{n}" for n in range(count)]
    with notes.transaction() as s:
        assert session_insert(s, _Note.__table__, notes_of(ids)) == count
    with notes.transaction() as s:
        got = {n.id: n for n in s.scalars(select(_Note))}
        assert sorted(got) == sorted(ids)
        for n, i in enumerate(ids):
            note = got[i]
            assert (note.body, note.tags, note.count) == (f"张伟 {i}", ["a", i], n)
            assert note.at == datetime(2026, 12, 5, 9, 0, 0, n, tzinfo=UTC)
    with pytest.raises(IntegrityError), notes.transaction() as s:
        session_insert(s, _Note.__table__, notes_of(["fresh"] + ids[:1]))
    with notes.transaction() as s:
        assert session_insert(s, _Note.__table__, notes_of(ids[:1] + ["fresh"]),
                              skip_conflicts=True) == 1
        assert s.scalar(select(func.count()).select_from(_Note)) == count + 1


def test_a_default_made_at_insert_time_must_be_given(notes: Database):
    table = Table("made_default", MetaData(), Column("id", String(10), primary_key=True),
                  Column("at", String(30), default=lambda: "now"))

    class Made(_Scratch):
        __table__ = table

    with pytest.raises(ValueError, match="set it before storing"), notes.transaction() as s:
        session_store(s, [Made(id="x")])


def test_a_driver_select_reads_values_as_the_orm_does(notes: Database):
    with notes.transaction() as s:
        s.add(_note("n1"))
        s.add(_note("n2"))
        # pending rows are flushed first; values come back typed, decrypted and parsed
        rows = session_select(s, _Note.__table__, ("id", "body", "tags", "due_on", "at", "count"),
                              "id = :id", {"id": "n1"}, share_lock=True)
        assert rows == [("n1", "张伟 的备注", ["a", "乙"], date(2026, 12, 31),
                         datetime(2026, 12, 5, 9, 0, 0, 5, tzinfo=UTC), 0)]
        assert session_select(s, _Note.__table__, ("id",), "id = :id", {"id": "none"}) == []
    with pytest.raises(KeyError), notes.transaction() as s:
        session_select(s, _Note.__table__, ("id", "no_such_column"), "id = :id", {"id": "n1"})


def test_saved_attributes_are_written_and_other_changes_stay_pending(notes: Database):
    with notes.transaction() as s:
        session_store(s, [_note("n1"), _note("n2")])
    with notes.transaction() as s:
        first, second = s.get(_Note, "n1"), s.get(_Note, "n2")
        assert first is not None and second is not None
        first.status, first.count, first.memo = "done", 5, "pending still"
        second.status = "done"
        session_save(s, [first, second], ("status", "count"))
        # The saved values are committed state; the memo is still a pending change.
        history = inspect(first).attrs
        assert not history.status.history.has_changes()
        assert history.memo.history.has_changes()
        # Written on the driver: the rows hold the saved values before any flush.
        with session_cursor(s) as (cursor, _):
            cursor.execute("SELECT id, status, count, memo FROM driver_notes ORDER BY id")
            assert [tuple(row) for row in cursor.fetchall()] == [
                ("n1", "done", 5, None), ("n2", "done", 0, None)]
    with notes.transaction() as s:
        got = {n.id: (n.status, n.count, n.memo) for n in s.scalars(select(_Note))}
        assert got == {"n1": ("done", 5, "pending still"), "n2": ("done", 0, None)}
