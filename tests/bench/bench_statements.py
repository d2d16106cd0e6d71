"""Client CPU per statement, by the way it is sent: the floor under every POST.

One indexed SELECT by primary key and one INSERT, each sent N times on one connection in one
transaction: raw through the driver (the baseline), as a SQLAlchemy `text()`, as a Core
statement built anew per call (as the services build theirs), and through the ORM
(`Session.get`, and `add` + `flush`); and two rows at once, by the driver's executemany and by
`gateway.bulk.driver_insert` (one multi-row statement); and one row committed by itself, in a transaction of its own
(`Database.driver_transaction`: BEGIN, INSERT, COMMIT) and as a statement that commits alone
(`Database.driver_statement`: autocommit on PostgreSQL), as an Idempotency-Key claim is; and,
on PostgreSQL, a transaction of one and of four INSERTs and its COMMIT, the INSERTs sent at once
or kept for the COMMIT (`gateway.deferred`), with the wall time of those too. Client CPU is the
process's own time (user and system); the database's is not counted.

Run: `python -m tests.bench.bench_statements` (PostgreSQL when QUANLIAN_BENCH_DATABASE_URL is
set; BENCH_STATEMENTS, default 2000).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import BigInteger, String, create_engine, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gateway.bulk import (
    _driver_run,
    _driver_statement,
    driver_insert,
    session_insert,
    session_insert_later,
)
from gateway.db import Database
from tests.bench.load import report
from tests.tools.databases import empty_database_url

N = int(os.environ.get("BENCH_STATEMENTS", "2000"))


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "bench_rows"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(String(40))


def _cpu_us(work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return (time.process_time() - start) / N * 1e6


def in_transactions(database: Database, rows: int, kept: bool) -> None:
    """N transactions of `rows` one-row INSERTs each and a COMMIT, the INSERTs sent at once or
    kept for the COMMIT (`gateway.bulk.session_insert_later`: alone plainly, several in one
    pipeline), as a request's last writes are."""
    write = session_insert_later if kept else session_insert
    prefix = f"k{rows}{int(kept)}_"
    for i in range(N):
        with database.transaction() as session:
            for j in range(rows):
                write(session, Row.__table__, [{"id": f"{prefix}{i}_{j}", "amount": i,
                                                "memo": "m"}])


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    table = Row.__table__
    with empty_database_url(base_url) as url:
        engine = create_engine(url)
        _Base.metadata.create_all(engine)
        mark = "%s" if engine.dialect.paramstyle in ("format", "pyformat") else "?"
        with Session(engine) as session:
            conn = session.connection()
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            figures: dict[str, float] = {}

            def raw_insert() -> None:
                for i in range(N):
                    cursor.execute(f"INSERT INTO bench_rows (id, amount, memo) VALUES "
                                   f"({mark}, {mark}, {mark})", (f"r{i}", i, "m"))
            figures["raw driver INSERT"] = _cpu_us(raw_insert)

            def raw_select() -> None:
                for i in range(N):
                    cursor.execute(f"SELECT amount FROM bench_rows WHERE id = {mark}", (f"r{i}",))
                    cursor.fetchone()
            figures["raw driver SELECT"] = _cpu_us(raw_select)

            # Two rows, as a journal entry's postings go: by executemany, as
            # `gateway.bulk.driver_insert` sent them before, and by `driver_insert` (one
            # multi-row statement). Each figure is per call of two rows.
            dialect = engine.dialect

            def two_rows(prefix: str, i: int) -> list[dict[str, object]]:
                return [{"id": f"{prefix}{i}a", "amount": i, "memo": "m"},
                        {"id": f"{prefix}{i}b", "amount": i, "memo": "m"}]
            figures["INSERT 2 rows by executemany"] = _cpu_us(lambda: [_driver_run(
                cursor, _driver_statement(dialect, table, ("id", "amount", "memo")),
                two_rows("e", i)) for i in range(N)])
            figures["INSERT 2 rows, driver_insert"] = _cpu_us(lambda: [
                driver_insert(dialect, cursor, table, two_rows("d", i)) for i in range(N)])

            by_text = text("SELECT amount FROM bench_rows WHERE id = :id")
            figures["text() SELECT"] = _cpu_us(
                lambda: [conn.execute(by_text, {"id": f"r{i}"}).first() for i in range(N)])
            figures["Core INSERT built per call"] = _cpu_us(
                lambda: [conn.execute(insert(table).values(id=f"c{i}", amount=i, memo="m"))
                         for i in range(N)])
            figures["Core SELECT built per call"] = _cpu_us(
                lambda: [conn.execute(select(table.c.amount).where(table.c.id == f"c{i}")).first()
                         for i in range(N)])

            def orm_insert() -> None:
                for i in range(N):
                    session.add(Row(id=f"o{i}", amount=i, memo="m"))
                    session.flush()
            figures["ORM add + flush"] = _cpu_us(orm_insert)
            session.expunge_all()
            figures["ORM Session.get"] = _cpu_us(
                lambda: [session.get(Row, f"c{i}") for i in range(N)])
            session.rollback()
        engine.dispose()
        database, row = Database(url), ("id", "amount", "memo")

        def committed(begin_commit: bool, prefix: str) -> None:
            write = database.driver_transaction if begin_commit else database.driver_statement
            for i in range(N):
                with write() as alone:
                    driver_insert(dialect, alone, table, [dict(zip(row, (f"{prefix}{i}", i, "m"),
                                                                   strict=True))])
        figures["INSERT committed, transaction"] = _cpu_us(lambda: committed(True, "t"))
        figures["INSERT committed, statement"] = _cpu_us(lambda: committed(False, "s"))
        walls: dict[str, float] = {}
        if base_url:  # PostgreSQL keeps writes (gateway.deferred); SQLite makes them at once
            for rows in (1, 4):
                for kept in (False, True):
                    name = f"{rows} INSERT + COMMIT, {'kept' if kept else 'at once'}"
                    start = time.perf_counter()
                    figures[name] = _cpu_us(partial(in_transactions, database, rows, kept))
                    walls[name] = (time.perf_counter() - start) / N * 1e6
        database.dispose()
    base = {"INSERT": figures["raw driver INSERT"], "SELECT": figures["raw driver SELECT"]}
    lines = []
    for name, us in figures.items():
        kind = "INSERT" if ("INSERT" in name or "flush" in name) else "SELECT"
        lines.append(f"{name:<30} {us:7.1f} µs client CPU   ratio {us / base[kind]:5.2f} "
                     f"of the raw driver {kind}"
                     + (f"   {walls[name]:7.1f} µs wall" if name in walls else ""))
    backend = "PostgreSQL" if base_url else "SQLite"
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    report(f"client CPU per statement on {backend}, {N} of each, {when}", lines)


if __name__ == "__main__":
    main()
