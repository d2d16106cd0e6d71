"""Alembic, driven from code: upgrade, current and head revisions.

An upgrade holds a lock that serializes it across processes, so that several servers (or
replicas of a container) starting together on a fresh database do not all run the migrations at
once: the first migrates, the others wait for it, then find the schema current and carry on.
On PostgreSQL the lock is a session-level advisory lock (`pg_advisory_lock`, a fixed key, within
that database); on SQLite, which serves one host, an exclusive `flock` on a file beside the
database (`<database>-migrate.lock`). Within a process a thread lock serializes upgrades too
(Alembic's context is process-global).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[1]
# The advisory lock's key: any fixed 64-bit number (here the first 8 bytes of
# sha256(b"quanlian:migrate"), read as a signed integer).
ADVISORY_LOCK_KEY = 1325545732728801633
_IN_PROCESS = threading.Lock()

log = logging.getLogger("quanlian.migrate")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, engine: Engine | None = None) -> None:
    """Migrate the database at `url` to the head revision, holding the migration lock (see
    the module's docstring). A process that waited for another's migration finds nothing to
    do."""
    cfg = alembic_config(url)
    owned = engine is None
    if engine is None:
        engine = create_engine(url, poolclass=NullPool)
    try:
        with _IN_PROCESS, _migration_lock(engine) as conn, conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if owned:
            engine.dispose()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection (not in a transaction) held while no other process migrates this
    database."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn, _advisory_lock(conn):
            yield conn
    elif engine.dialect.name == "sqlite":
        with _file_lock(engine.url.database), engine.connect() as conn:
            yield conn
    else:
        with engine.connect() as conn:
            yield conn


@contextmanager
def _advisory_lock(conn: Connection) -> Iterator[None]:
    key = {"key": ADVISORY_LOCK_KEY}
    taken = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar()
    conn.commit()  # a session-level lock outlives the transaction; the upgrade runs in its own
    if not taken:
        log.info("another process is migrating this database; waiting for it")
        conn.execute(text("SELECT pg_advisory_lock(:key)"), key)
        conn.commit()
    try:
        yield
    finally:
        try:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            conn.commit()
        except Exception:
            # Ending the session releases the lock: never return it to a pool still held.
            conn.invalidate()


@contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # an in-memory database (or a URI one) is this process's own
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite serves one host; rely on the thread lock
        yield
        return
    try:
        fd = os.open(f"{database}-migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # a folder this process may not write to: migrate as before
        log.warning("cannot take the migration lock file (%s); migrating without it", exc)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is migrating this database; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or "base"


def current_revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or "base"
