"""Writes sent with the transaction's next statement, on PostgreSQL: one round trip for many.

A request's transaction ends with a run of writes whose outcome nobody reads: ledger postings
and balances, the resource's row, its event, the idempotency record, the evidence entries. Each
cost a round trip to the database (the client's system calls, and the time the locks taken
before are held). Here such a write is kept on the connection instead and sent, with every
other kept write, in one pipeline (psycopg's pipeline mode) just before the connection's next
statement, whatever sends it (the ORM, Core, the driver helpers of `gateway.bulk`, a
SAVEPOINT), or before COMMIT. So the database sees exactly the statements in the order they
were made, and every read sees every write made before it; a write that fails makes the
statement or the commit that sent it fail, and the transaction with it. A rollback drops what
was kept.

On SQLite (one process's file, no round trips) a write is made at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_KEPT = "quanlian_kept_writes"

# A write as the driver runs it: its SQL, its processed values, and whether they are many
# rows' (executemany) or one statement's.
Write = tuple[str, Any, bool]


def keeps(session: Session) -> bool:
    """Whether this session's writes can be kept (PostgreSQL, an engine with `install`)."""
    return getattr(session.get_bind(), "keeps_writes", False)


def keep(session: Session, write: Write) -> None:
    """Keep a write for the transaction's next statement. Only where `keeps(session)`."""
    session.connection().info.setdefault(_KEPT, []).append(write)


def send(connection: Connection) -> None:
    """Send the kept writes of this connection's transaction, in one pipeline; a failure is
    raised as SQLAlchemy's error of the driver's, as from any statement."""
    kept = connection.info.pop(_KEPT, None)
    if not kept:
        return
    dbapi = connection.connection.dbapi_connection
    dialect = connection.dialect
    try:
        cursor = dbapi.cursor()
        try:
            if len(kept) == 1:
                # A pipeline's own cost is more than it saves for one statement (README,
                # Benchmarks: about 100 us more client CPU, and more wall time).
                run(cursor, kept[0])
            else:
                with dbapi.pipeline():
                    for write in kept:
                        run(cursor, write)
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance("(kept writes)", None, exc, dialect.loaded_dbapi.Error,
                                  dialect=dialect) from exc


def run(cursor: Any, write: Write) -> None:
    """Run a write now on a driver cursor."""
    sql, values, many = write
    if many:
        cursor.executemany(sql, values)
    else:
        cursor.execute(sql, values)


def install(engine: Engine) -> None:
    """Keep writes on this (PostgreSQL) engine's connections: send them before any statement
    and before COMMIT, drop them on ROLLBACK and when a connection goes back to its pool."""
    engine.keeps_writes = True  # type: ignore[attr-defined]

    @event.listens_for(engine, "before_cursor_execute")
    def _before_statement(conn: Connection, cursor: Any, statement: str, parameters: Any,
                          context: Any, executemany: bool) -> None:
        if _KEPT in conn.info:
            send(conn)

    @event.listens_for(engine, "commit")
    def _before_commit(conn: Connection) -> None:
        if _KEPT in conn.info:
            try:
                send(conn)
            except BaseException:
                # A COMMIT that fails ends its transaction, and SQLAlchemy counts on it: the
                # connection goes back to its pool without a ROLLBACK. No COMMIT was sent here,
                # so end the failed transaction as one would have.
                try:
                    conn.connection.dbapi_connection.rollback()
                except Exception:
                    conn.connection.invalidate()  # lost: it must not go back to the pool
                raise

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        conn.info.pop(_KEPT, None)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        record.info.pop(_KEPT, None)
