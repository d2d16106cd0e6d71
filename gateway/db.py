"""Database: engine, declarative base, sessions.

A request is one transaction: routes get their Session from `get_session`, services only
`flush()`, and the transaction middleware commits (with the call's evidence entry) or rolls
back once the response is known.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with
`BEGIN IMMEDIATE`, which serializes writers (SQLite's way of having no lost updates).
PostgreSQL uses READ COMMITTED with explicit row locks where money moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import BigInteger, DateTime, MetaData, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError, NoResultFound
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from starlette.requests import Request

from gateway import deferred

_Row = TypeVar("_Row")
_PARAM = re.compile(r":(\w+)")



@functools.lru_cache(maxsize=64)
def _pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql)


def driver_sql(sql: str, dialect_name: str) -> str:
    """A statement written with `:name` parameters, in the driver's own style (SQLite takes
    `:name` as it is; psycopg wants `%(name)s`)."""
    return sql if dialect_name == "sqlite" else _pyformat(sql)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), int: BigInteger()}


class _WriterQueue:
    """One writer at a time within this process, queued on a lock.

    SQLite allows one writer; a second `BEGIN IMMEDIATE` waits in SQLite's busy handler, which
    sleeps with a growing back-off (up to 100 ms a try) instead of waking when the lock is
    free: under concurrent writes that makes for seconds-long tails and idle CPU. Writers of
    this process therefore queue here first, and each is woken as soon as the previous one
    commits or rolls back; the busy handler still arbitrates between processes. The wait is
    bounded (busy_timeout) so that a connection that begins a second write on the same
    thread fails as it would without the queue, never hangs. Never taken on an event-loop
    thread: the holder may need that loop to reach its commit.
    """

    TIMEOUT = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None

    def acquire(self, conn: Any) -> None:
        if asyncio_running_here():
            return
        if self._lock.acquire(timeout=self.TIMEOUT):
            self._holder = _raw_id(conn)

    def release(self, conn: Any) -> None:
        if self._holder is not None and self._holder == _raw_id(conn):
            self._holder = None
            self._lock.release()


def _raw_id(conn: Any) -> int:
    """The DBAPI connection's identity, whether given it or the pool's proxy around it."""
    return id(getattr(conn, "dbapi_connection", None) or conn)


def asyncio_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _sqlite_setup(engine: Engine) -> None:
    writers = _WriterQueue()
    dialect = engine.dialect
    do_commit, do_rollback, do_close = dialect.do_commit, dialect.do_rollback, dialect.do_close

    def commit(dbapi_conn: Any) -> None:
        try:
            do_commit(dbapi_conn)
        finally:
            writers.release(dbapi_conn)

    def rollback(dbapi_conn: Any) -> None:
        try:
            do_rollback(dbapi_conn)
        finally:
            writers.release(dbapi_conn)

    def close(dbapi_conn: Any) -> None:
        writers.release(dbapi_conn)
        do_close(dbapi_conn)

    # Instance attributes on this engine's dialect: every commit and rollback, including the
    # pool's reset when a connection is returned, ends the write (and wakes the next writer).
    dialect.do_commit, dialect.do_rollback, dialect.do_close = commit, rollback, close  # type: ignore[method-assign]
    dialect.writer_queue = writers  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Read-only checks ask for a deferred transaction so they never queue behind writers.
        if conn.get_execution_options().get("sqlite_read_only"):
            # Straight to the driver: a deferred BEGIN cannot wait or fail for want of a lock,
            # and SQLAlchemy's statement machinery cost a checkout page 7% of its CPU.
            conn.connection.dbapi_connection.execute("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        writers.acquire(dbapi_conn)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release(dbapi_conn)
            raise


def _refuse_nul(params: Any) -> None:
    values = params.values() if isinstance(params, dict) else params
    for value in values or ():
        if type(value) is str and "\x00" in value:
            raise sqlite3.DataError(NUL_MESSAGE)


# PostgreSQL's text cannot hold U+0000, and psycopg refuses such a parameter before sending it.
# SQLite could store it; it refuses it the same way, so that a sandbox on SQLite answers what
# production on PostgreSQL does (a 422 `nul_character`, gateway.errors.database_problem).
NUL_MESSAGE = "Text cannot contain NUL (0x00) characters."


class _NulRefusingCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        _refuse_nul(parameters)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        rows = list(seq_of_parameters)
        for params in rows:
            _refuse_nul(params)
        return super().executemany(sql, rows)


class _NulRefusingConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _NulRefusingCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30,
                          "factory": _NulRefusingConnection},
            # As many connections as worker threads (40), so that a thread never waits for a
            # connection; a queued writer holds its connection while it waits its turn.
            pool_size=16,
            max_overflow=32,
            **kwargs,
        )
        _sqlite_setup(engine)
        return engine
    # A bounded connect: the per-call status read runs on the event loop (Database.read_one).
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    engine = create_engine(url, pool_size=20, max_overflow=20, connect_args=connect_args, **kwargs)
    _ping_when_idle(engine)
    deferred.install(engine)
    return engine


# A pooled connection is pinged before it is handed out only when it has sat idle this long, or
# when a connection of its pool was found lost since it was last used. SQLAlchemy's
# pool_pre_ping pinged at every checkout: a round trip that cost about 130 µs of this process's
# CPU and 200 µs of wall time, and a request checks out one to three connections. A busy server
# reuses its connections within milliseconds, so it now pays nothing, while a connection that
# sat idle through a database restart is still found and replaced before a request gets it. One
# broken since its last use is found by its first statement instead: that request gets a 503
# with Retry-After (`gateway.errors.database_problem`), as a request in flight during a restart
# always did, and `note_connection_lost` has every other connection pinged before its next use.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    engine.info_lost_at = 0.0  # type: ignore[attr-defined]

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or (time.monotonic() - since < PING_AFTER_IDLE_SECONDS
                             and since > engine.info_lost_at):  # type: ignore[attr-defined]
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool discards it and connects afresh
            raise DisconnectionError("a pooled connection is gone") from exc

    @event.listens_for(engine, "handle_error")
    def _lost(context: Any) -> None:
        if context.is_disconnect:
            note_connection_lost(engine)


def note_connection_lost(engine: Engine) -> None:
    """A connection to the database was found lost (a restart, a fail-over): ping every pooled
    connection before its next use."""
    if hasattr(engine, "info_lost_at"):
        engine.info_lost_at = time.monotonic()  # type: ignore[attr-defined]


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self.is_sqlite = url.startswith("sqlite")
        self._lock = threading.Lock()
        self._direct: Any = None
        self._direct_lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work outside a request (CLI, worker): commit on success, else roll back."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def read_one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One row, read on this process's own autocommit connection.

        For the few reads every call makes (the caller's status): no pool checkout, no
        transaction, no thread hand-off, so it can run on the event loop. Each statement sees
        the latest committed data, and readers never wait for writers (WAL on SQLite, MVCC on
        PostgreSQL). `sql` uses `:name` parameters."""
        sql = driver_sql(sql, self.engine.dialect.name)
        with self._direct_lock:
            for attempt in (1, 2):
                if self._direct is None:
                    proxied = self.engine.raw_connection()
                    proxied.detach()
                    if not self.is_sqlite:
                        proxied.dbapi_connection.autocommit = True
                    self._direct = proxied
                try:
                    cursor = self._direct.dbapi_connection.cursor()
                    try:
                        cursor.execute(sql, params)
                        return cursor.fetchone()
                    finally:
                        cursor.close()
                except self.engine.dialect.loaded_dbapi.OperationalError:
                    # A dropped connection (a database restart): reconnect once, with a
                    # connection the pool has checked (its others went in the same restart).
                    self._close_direct()
                    note_connection_lost(self.engine)
                    if attempt == 2:
                        raise
        return None

    @contextmanager
    def driver_transaction(self) -> Iterator[Any]:
        """A write transaction straight on the driver: yields a DBAPI cursor; commits on
        success, else rolls back. For the hot batched writes every call makes (evidence entries
        of reads, single-use proof ids), where SQLAlchemy's statement machinery cost more than
        the database did. SQLite's writer queue is kept: the commit and rollback are the
        dialect's, which give the writer's turn back. Statements use the driver's own
        parameter style (`driver_sql`)."""
        proxied = self.engine.raw_connection()
        dbapi = proxied.dbapi_connection
        dialect = self.engine.dialect
        try:
            cursor = dbapi.cursor()
            try:
                if self.is_sqlite:
                    dialect.writer_queue.acquire(dbapi)  # type: ignore[attr-defined]
                    cursor.execute("BEGIN IMMEDIATE")
                yield cursor
            except BaseException:
                dialect.do_rollback(dbapi)
                raise
            else:
                dialect.do_commit(dbapi)
            finally:
                cursor.close()
        finally:
            proxied.close()

    @contextmanager
    def driver_statement(self) -> Iterator[Any]:
        """`driver_transaction` for writes each of which may commit on its own (a single
        statement, or independent single-statement writes). On PostgreSQL the cursor is in
        autocommit: a statement is its own transaction, one round trip where BEGIN, the
        statement and COMMIT took three (a row committed: 135 us of this process's CPU against
        252 us, `python -m tests.bench.bench_statements`). On SQLite it is a
        `driver_transaction`, which keeps the writer's queue."""
        if self.is_sqlite:
            with self.driver_transaction() as cursor:
                yield cursor
            return
        proxied = self.engine.raw_connection()
        dbapi = proxied.dbapi_connection
        try:
            dbapi.autocommit = True
            try:
                cursor = dbapi.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
            finally:
                try:
                    dbapi.autocommit = False  # back to the pool as every pooled connection is
                except self.engine.dialect.loaded_dbapi.Error:
                    proxied.invalidate()  # broken: the pool replaces it, never in autocommit
        finally:
            proxied.close()

    def _close_direct(self) -> None:
        direct, self._direct = self._direct, None
        if direct is None or direct.dbapi_connection is None:
            return
        # Closed on the driver, not through the pool: the pool's close of a detached
        # connection first resets it (a ROLLBACK), and when that fails (a connection left
        # busy or broken) it logs the error and leaves the connection open, for the garbage
        # collector to find later (a ResourceWarning). An autocommit connection has nothing
        # to roll back.
        with contextlib.suppress(Exception):  # closing a broken connection
            self.engine.dialect.do_close(direct.dbapi_connection)

    def dispose(self) -> None:
        with self._direct_lock:
            self._close_direct()
        self.engine.dispose()


def read_only(conn: Any) -> Any:
    """Mark a connection's transactions read-only (a deferred BEGIN on SQLite)."""
    return conn.execution_options(sqlite_read_only=True)


def get_database(request: Request) -> Database:
    return request.app.state.database


def request_session(request: Request) -> Session:
    """The request's Session, opened on first use; committed or rolled back by the middleware."""
    state = request.scope.setdefault("state", {})
    session = state.get("db_session")
    if session is None:
        session = request.app.state.database.sessions()
        state["db_session"] = session
    return session


async def get_session(request: Request) -> Session:
    """The route dependency for `request_session`. Async because making a Session touches no
    database (it connects on first use, in the route's worker thread): as a plain function
    FastAPI would spend a thread hand-off on it."""
    return request_session(request)


def referenced(session: Session, model: type[_Row], ident: Any) -> _Row:
    """The row that a row of this request refers to, which must exist: the reference was
    checked when it was written (and foreign keys keep it). Found gone, it was deleted under
    the request (a sandbox reset): `NoResultFound`, which the gateway answers with a 409
    `concurrent_update` (`gateway.errors.database_problem`) and a job retries."""
    row = session.get(model, ident)
    if row is None:
        raise NoResultFound(f"{model.__name__} {ident} is gone")
    return row


def insert_unique(session: Session, rows: list[Any],
                  duplicate: Exception | Callable[[], Exception]) -> None:
    """Add `rows` and write them now, in a savepoint. The look-up for an existing reference
    that precedes this cannot see a concurrent request's uncommitted row: when that request
    wins, the unique index refuses this one, and the caller answers `duplicate` (a 409 naming
    the reference, as the look-up would have), not a bare `concurrent_update` at commit.

    `duplicate` may be a function making the problem, called once the savepoint is rolled
    back: on PostgreSQL this insert waited for the winner's commit, so a read now (READ
    COMMITTED) finds the winner's row, and the problem can name it as the look-up does. The
    savepoint covers only this flush: what the request wrote before (a ledger account opened)
    goes when the problem rolls the request's transaction back."""
    # Opening a savepoint flushes what is pending first, outside it: were `rows` among that,
    # their failed INSERT would end the whole transaction (PostgreSQL aborts it, and the
    # Session refuses to read on), so they are added only within the savepoint.
    session.flush()
    try:
        with session.begin_nested():
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        raise (duplicate() if callable(duplicate) else duplicate) from None


def for_update(dialect_name: str) -> dict[str, Any]:
    """Options for `with_for_update` where the database supports row locks."""
    return {} if dialect_name == "sqlite" else {"nowait": False}


def advisory_lock(session: Session, key: str) -> None:
    """Serialize a check-then-act on `key` across transactions until this one ends: a
    transaction-scoped advisory lock on PostgreSQL (re-entrant within the transaction);
    nothing on SQLite, which serializes writers already (`BEGIN IMMEDIATE`)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def advisory_locks(session: Session, keys: list[str]) -> None:
    """`advisory_lock` on several keys, always in the same (sorted) order, so two transactions
    wanting overlapping keys queue instead of deadlocking."""
    for key in sorted(set(keys)):
        advisory_lock(session, key)
