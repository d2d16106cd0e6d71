"""SQLite writers of one process queue on a lock (gateway.db._WriterQueue) instead of sleeping
in SQLite's busy handler. Every way a write transaction can end must hand the lock on, or the
next writer would stall for the full busy timeout; and concurrent writers lose nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from gateway.db import Database


@pytest.fixture
def sqlite_db(tmp_path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path}/writers.db")
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield db
    db.dispose()


def queue(db: Database):  # type: ignore[no-untyped-def]
    return db.engine.dialect.writer_queue  # type: ignore[attr-defined]


def rows(db: Database) -> int:
    return db.read_one("SELECT count(*) FROM t", {})[0]  # type: ignore[index]


def test_every_end_of_a_write_hands_the_lock_on(sqlite_db: Database) -> None:
    writers = queue(sqlite_db)
    with sqlite_db.transaction() as s:  # commit
        s.execute(text("INSERT INTO t VALUES (1)"))
        assert writers._holder is not None
    assert writers._holder is None

    with pytest.raises(RuntimeError), sqlite_db.transaction() as s:  # rollback
        s.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("refused")
    assert writers._holder is None

    conn = sqlite_db.engine.connect()  # returned to the pool mid-transaction
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (3)"))
    conn.close()
    assert writers._holder is None

    conn = sqlite_db.engine.connect()  # a connection closed for good mid-transaction
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (4)"))
    conn.invalidate()
    conn.close()
    assert writers._holder is None
    assert rows(sqlite_db) == 1


def test_reads_do_not_queue_behind_a_writer(sqlite_db: Database) -> None:
    from gateway.db import read_only

    with sqlite_db.transaction() as s:
        s.execute(text("INSERT INTO t VALUES (1)"))
        # A deferred read from another thread answers while this write is open.
        with ThreadPoolExecutor(1) as pool:
            def read() -> int:
                with read_only(sqlite_db.engine.connect()) as conn, conn.begin():
                    return conn.execute(text("SELECT count(*) FROM t")).scalar_one()
            assert pool.submit(read).result(timeout=5) == 0


def test_concurrent_writers_lose_nothing(sqlite_db: Database) -> None:
    start = threading.Barrier(8)

    def write(_: int) -> None:
        start.wait()
        for _ in range(25):
            with sqlite_db.transaction() as s:
                n = s.execute(text("SELECT count(*) FROM t")).scalar_one()
                s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    # Each writer saw every earlier commit: the values are exactly 0..199, no duplicates.
    with sqlite_db.engine.connect() as conn:
        values = sorted(v for (v,) in conn.execute(text("SELECT n FROM t")))
    assert values == list(range(200))
    assert queue(sqlite_db)._holder is None
