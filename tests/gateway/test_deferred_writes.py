"""Writes sent with the transaction's next statement (`gateway.deferred`, PostgreSQL; made at
once on SQLite): whatever sends the next statement sees them, in order; a broken one fails the
transaction as a statement would; a rollback, of the transaction or of a savepoint, takes them
with it; and nothing is left on a connection for the next transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, ForeignKey, String, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gateway.bulk import (
    row_writer,
    session_execute_later,
    session_insert,
    session_insert_later,
    session_rows,
    session_store,
    session_update_later,
)
from gateway.db import Database


class _Scratch(DeclarativeBase):
    pass


class _Box(_Scratch):
    __tablename__ = "kept_boxes"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class _Item(_Scratch):
    __tablename__ = "kept_items"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    box_id: Mapped[str] = mapped_column(ForeignKey("kept_boxes.id"))


BOXES, ITEMS = _Box.__table__, _Item.__table__


@pytest.fixture
def boxes(database: Database) -> Database:
    _Scratch.metadata.create_all(database.engine)
    return database


def _amounts(session: Session) -> dict[str, int]:
    return dict(session_rows(session, "SELECT id, amount FROM kept_boxes", {}))


def _all(database: Database) -> tuple[dict[str, int], list[str]]:
    with database.transaction() as s:
        return (dict(s.execute(select(_Box.id, _Box.amount)).all()),
                sorted(s.scalars(select(_Item.id))))


def test_every_later_statement_sees_the_writes_made_before_it(boxes: Database):
    with boxes.transaction() as s:
        session_insert_later(s, BOXES, [{"id": "a", "amount": 1}])
        assert _amounts(s) == {"a": 1}  # a read on the driver
        session_update_later(s, BOXES, "id", [{"id": "a", "amount": 2}])
        assert s.scalar(select(_Box.amount).where(_Box.id == "a")) == 2  # a Core query
        session_insert_later(s, BOXES, [{"id": f"m{i}", "amount": i} for i in range(20)])
        session_execute_later(s, "UPDATE kept_boxes SET amount = amount + 100 WHERE id = :id",
                              {"id": "m3"})
        assert s.get(_Box, "m3").amount == 103  # the ORM
        box = _Box(id="b", amount=5)
        session_store(s, [box], later=True)
        box.amount = 6  # the unit of work's UPDATE comes after the kept INSERT
        s.flush()
        s.add(_Item(id="i1", box_id="b"))  # and a row referring to it, after both
    boxes_now, items = _all(boxes)
    assert boxes_now["a"] == 2 and boxes_now["b"] == 6 and boxes_now["m3"] == 103
    assert len(boxes_now) == 22 and items == ["i1"]


def test_a_bulk_copy_comes_after_the_writes_kept_before_it(boxes: Database):
    with boxes.transaction() as s:
        session_insert_later(s, BOXES, [{"id": "a", "amount": 1}])
        with row_writer(s, ITEMS) as write:  # COPY on PostgreSQL: its rows refer to the box
            write({"id": "i1", "box_id": "a"})
            write({"id": "i2", "box_id": "a"})
    assert _all(boxes) == ({"a": 1}, ["i1", "i2"])


def test_writes_kept_until_the_commit_are_in_it(boxes: Database):
    with boxes.transaction() as s:
        session_insert(s, BOXES, [{"id": "a", "amount": 1}])
        session_update_later(s, BOXES, "id", [{"id": "a", "amount": 7}])
        session_insert_later(s, ITEMS, [{"id": "i1", "box_id": "a"}, {"id": "i2", "box_id": "a"}])
    assert _all(boxes) == ({"a": 7}, ["i1", "i2"])


def test_a_broken_write_fails_the_commit_and_leaves_nothing(boxes: Database):
    with pytest.raises(IntegrityError), boxes.transaction() as s:
        session_insert(s, BOXES, [{"id": "a", "amount": 1}])
        session_insert_later(s, ITEMS, [{"id": "i1", "box_id": "nowhere"}])  # no such box
    assert _all(boxes) == ({}, [])
    with pytest.raises(IntegrityError), boxes.transaction() as s:
        session_insert_later(s, BOXES, [{"id": "a", "amount": 1}, {"id": "a", "amount": 2}])
        s.execute(text("SELECT 1"))  # the next statement sends them, and fails with them
    assert _all(boxes) == ({}, [])
    with pytest.raises(IntegrityError), boxes.transaction() as s:
        session_insert_later(s, BOXES, [{"id": "a", "amount": 1}])  # sent together with
        session_insert_later(s, ITEMS, [{"id": "i1", "box_id": "nowhere"}])  # a broken one
    assert _all(boxes) == ({}, [])


def test_a_commit_refused_for_a_kept_write_leaves_its_connection_ready(boxes: Database):
    """A request's session is closed, not rolled back, after its commit fails: its connection
    goes back to the pool ready for the next transaction, whether the broken write was sent
    alone or in a pipeline with others."""
    fresh = Database(boxes.url)  # one pooled connection, used again below
    broken = (ITEMS, [{"id": "i1", "box_id": "nowhere"}])
    try:
        for kept in ([broken], [(BOXES, [{"id": "a", "amount": 1}]), broken]):
            session = fresh.sessions()
            try:
                with pytest.raises(IntegrityError):
                    for table, rows in kept:
                        session_insert_later(session, table, rows)
                    session.commit()
            finally:
                session.close()
            with fresh.transaction() as s:
                assert _amounts(s) == {}
    finally:
        fresh.dispose()


def test_a_rollback_takes_the_kept_writes_and_leaves_none_behind(boxes: Database):
    fresh = Database(boxes.url)  # one pooled connection, used again below
    try:
        with pytest.raises(RuntimeError), fresh.transaction() as s:
            session_insert_later(s, BOXES, [{"id": "gone", "amount": 1}])
            raise RuntimeError("the request failed")
        with fresh.transaction() as s:  # the same connection's next transaction
            session_insert_later(s, BOXES, [{"id": "kept", "amount": 2}])
        with fresh.transaction() as s:
            assert _amounts(s) == {"kept": 2}
    finally:
        fresh.dispose()


def test_a_savepoint_rolled_back_takes_only_what_was_written_inside_it(boxes: Database):
    with boxes.transaction() as s:
        session_insert_later(s, BOXES, [{"id": "before", "amount": 1}])
        savepoint = s.begin_nested()
        session_insert_later(s, BOXES, [{"id": "inside", "amount": 2}])
        savepoint.rollback()
        session_insert_later(s, BOXES, [{"id": "after", "amount": 3}])
    assert _all(boxes)[0] == {"before": 1, "after": 3}
    with boxes.transaction() as s:
        assert s.scalar(select(func.count()).select_from(_Box)) == 2
