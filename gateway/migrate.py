"""Alembic, driven from code: upgrade, current and head revisions.

An upgrade holds a lock that serializes it across processes, so that several servers (or
replicas of a container) starting together on a fresh database do not all run the migrations at
once: the first migrates, the others wait for it, then find the schema current and carry on.
On PostgreSQL the lock is a session-level advisory lock (`pg_advisory_lock`, a fixed key, within
that database); on SQLite, which serves one host, an exclusive `flock` on a file beside the
database (`<database>-migrate.lock`). Within a process a thread lock serializes upgrades too
(Alembic's context is process-global).

Before migrating, an upgrade reads the database's revision: one this release does not know was
made by a newer release, which `upgrade` refuses in one sentence (`StartupRefused`) rather than
Alembic's resolution error. Each revision run is logged (`quanlian.migrate`).

On PostgreSQL a migration's statements wait at most `LOCK_TIMEOUT` seconds for a table lock
(`SET LOCAL lock_timeout`): an `ALTER TABLE` queued behind a long transaction would otherwise
wait without end, and every later query of that table would queue behind it. A migration that
times out rolls back whole, logs the relation it waited for and who holds it, and is tried again
up to `LOCK_ATTEMPTS` times; then it fails with one sentence, having changed nothing.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from gateway.startup import StartupRefused

ROOT = Path(__file__).resolve().parents[1]
# The advisory lock's key: any fixed 64-bit number (here the first 8 bytes of
# sha256(b"quanlian:migrate"), read as a signed integer).
ADVISORY_LOCK_KEY = 1325545732728801633
_IN_PROCESS = threading.Lock()
# How long a migration's statement waits for a table lock on PostgreSQL, and how many times a
# migration that timed out is tried.
LOCK_TIMEOUT = 10.0
LOCK_ATTEMPTS = 5
# The codes `schema_problem` (and /readyz) give a database behind and ahead of the code.
BEHIND = "migrations_pending"
AHEAD = "schema_newer_than_code"

log = logging.getLogger("quanlian.migrate")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, engine: Engine | None = None, *, lock_timeout: float = LOCK_TIMEOUT,
            attempts: int = LOCK_ATTEMPTS, pause: float = 1.0) -> str:
    """Migrate the database at `url` to the head revision, holding the migration lock (see
    the module's docstring), and return the revision it is at. A process that waited for
    another's migration finds nothing to do. `StartupRefused` when the database is ahead of
    the code, or a lock stayed taken through every attempt (`pause` seconds apart)."""
    cfg = alembic_config(url)
    cfg.attributes["on_version_apply"] = _log_step
    owned = engine is None
    if engine is None:
        engine = create_engine(url, poolclass=NullPool)
    try:
        with _IN_PROCESS, _migration_lock(engine) as conn:
            current = _revision_of(conn)
            problem = schema_problem(current)
            if problem is None:
                return current
            if problem[0] == AHEAD:
                raise StartupRefused(problem[1])
            log.info("migrating the database from %s to %s", current, head_revision())
            for attempt in range(1, attempts + 1):
                try:
                    with conn.begin():
                        if conn.dialect.name == "postgresql":
                            conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'"))
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                    return head_revision()
                except OperationalError as exc:
                    if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                        raise
                    relation, holders = _lock_holders(conn, exc.statement or "")
                    if attempt == attempts:
                        raise StartupRefused(
                            f"The migration could not take a lock on {relation} in {attempts} "
                            f"tries of {lock_timeout:g} s ({holders}), and changed nothing: end "
                            "that transaction, then run `quanlian db upgrade` again.") from None
                    log.warning("the migration waited %g s for a lock on %s (%s); rolled back, "
                                "trying again (%d of %d)", lock_timeout, relation, holders,
                                attempt + 1, attempts)
                    time.sleep(pause)
            raise AssertionError("unreachable")
    finally:
        if owned:
            engine.dispose()


def _revision_of(conn: Connection) -> str:
    """The revision of the database on `conn`, read in a transaction of its own."""
    try:
        return MigrationContext.configure(conn).get_current_revision() or "base"
    finally:
        conn.rollback()


def _log_step(*, step: Any, **_: Any) -> None:
    revision = step.up_revision
    log.info("ran migration %s: %s", step.up_revision_id,
             " ".join(revision.doc.split()) if revision is not None and revision.doc else "")


# The relation a statement locks: its first table name after one of these words.
_LOCKED = re.compile(r'\b(?:TABLE|INTO|UPDATE|FROM|ON|REFERENCES)\s+(?:ONLY\s+|IF\s+(?:NOT\s+)?'
                     r'EXISTS\s+)?("?[A-Za-z_][\w$]*"?(?:\."?[A-Za-z_][\w$]*"?)?)', re.IGNORECASE)


def _lock_holders(conn: Connection, statement: str) -> tuple[str, str]:
    """The relation the timed-out `statement` waited for, and who holds locks on it now."""
    found = _LOCKED.search(statement)
    if found is None:
        return "a table", f"statement `{' '.join(statement.split())[:120]}`"
    relation = found.group(1)
    try:
        rows = conn.execute(text(
            "SELECT a.pid, left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120) "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.relation = to_regclass(:relation) AND l.granted "
            "AND l.pid <> pg_backend_pid() ORDER BY a.xact_start"), {"relation": relation}).all()
    finally:
        conn.rollback()
    holders = "; ".join(f"held by pid {pid}: `{query}`" for pid, query in rows)
    return relation.replace('"', ""), holders or "its holder has finished since"


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


@functools.lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def head_revision() -> str:
    return _scripts().get_current_head() or "base"


def current_revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() or "base"


def schema_problem(current: str) -> tuple[str, str] | None:
    """None when a database at revision `current` suits this release; else a code (`BEHIND`
    or `AHEAD`) and one sentence saying what to do."""
    head = head_revision()
    if current == head:
        return None
    if current == "base":
        return BEHIND, (f"The database has no migration applied, and this release needs {head}: "
                        "run `quanlian db upgrade`.")
    try:
        known = _scripts().get_revision(current) is not None
    except CommandError:
        known = False
    if known:
        return BEHIND, (f"The database is at migration {current}, behind this release's {head}: "
                        "run `quanlian db upgrade`.")
    return AHEAD, (f"The database was migrated by a newer release (revision {current}; this "
                   f"release knows migrations up to {head}): run that release, or restore the "
                   "backup taken before the upgrade.")
