"""Throw-away databases for tests and benchmarks: a SQLite file, or a fresh PostgreSQL database
created next to QUANLIAN_TEST_DATABASE_URL (so parallel runs never share tables)."""

from __future__ import annotations

import atexit
import gc
import os
import queue
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from gateway.app import import_models
from gateway.db import Base, Database


def redis_database(url: str, down: int) -> str:
    """The same Redis server, the numbered database `down` below the URL's (15, 1 -> 14;
    wrapping within the default 16)."""
    parts = urlsplit(url)
    number = (int(parts.path.strip("/") or 0) - down) % 16
    return urlunsplit(parts._replace(path=f"/{number}"))


def _own_redis(url: str | None) -> str | None:
    """Each pytest-xdist worker (gw0, gw1, ...) counts in a Redis database of its own: tests
    count per-address limits there, and one of them empties its database."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    return redis_database(url, int(worker[2:]))


PG_URL = os.environ.get("QUANLIAN_TEST_DATABASE_URL")
REDIS_URL = _own_redis(os.environ.get("QUANLIAN_TEST_REDIS_URL"))
REQUIRE_SERVICES = os.environ.get("QUANLIAN_TEST_REQUIRE_SERVICES", "").lower() == "true"


def backend_name() -> str:
    return "postgresql" if PG_URL else "sqlite"


@contextmanager
def empty_database_url(base_url: str | None = PG_URL, *, template: str | None = None) -> Iterator[str]:
    """A URL to a brand-new database, dropped afterwards: empty, or a copy of `template` (a
    PostgreSQL database's name, or a SQLite file's path)."""
    if base_url:
        url = make_url(base_url)
        name = "qt_" + uuid.uuid4().hex[:16]
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        copy = f' TEMPLATE "{template}"' if template else ""
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                    {"n": name})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            admin.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="quanlian-test-") as tmp:
            if template:
                shutil.copyfile(template, f"{tmp}/test.db")
            yield f"sqlite:///{tmp}/test.db"


# The schema is made once per process, in a template, and each fresh database is a copy of it:
# on PostgreSQL an empty CREATE DATABASE and the schema's tables and indexes took about 0.8 s
# together, a copy (CREATE DATABASE .. TEMPLATE) about 0.3-0.4 s, and nearly every test makes
# a fresh database.
_templates: dict[str | None, str] = {}
_templates_lock = threading.Lock()


def _template(base_url: str | None) -> str:
    """The name of a PostgreSQL database, or the path of a SQLite file, holding the whole schema
    and nothing else; made on first use, removed when the process ends."""
    with _templates_lock:
        if base_url in _templates:
            return _templates[base_url]
        import_models()
        if base_url:
            url = make_url(base_url)
            name = "qt_template_" + uuid.uuid4().hex[:12]
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            atexit.register(_drop_template, admin, name)
            template = Database(url.set(database=name).render_as_string(hide_password=False))
            location = name
        else:
            folder = tempfile.mkdtemp(prefix="quanlian-template-")
            atexit.register(shutil.rmtree, folder, True)
            location = os.path.join(folder, "template.db")
            template = Database(f"sqlite:///{location}")
        try:
            Base.metadata.create_all(template.engine)
            stamp_head(template)
        finally:
            template.dispose()  # a PostgreSQL template is copied only with no one connected
        _templates[base_url] = location
        return location


def stamp_head(database: Database) -> None:
    """Record the head revision in a schema made from the models, as `quanlian db upgrade` would
    have: the processes and commands a test starts check it (`gateway.startup`), and
    tests/gateway/test_schema.py proves the migrated head and the models the same schema."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from gateway.migrate import alembic_config

    with database.engine.begin() as conn:
        scripts = ScriptDirectory.from_config(alembic_config(database.url))
        MigrationContext.configure(conn).stamp(scripts, "head")


def _drop_template(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@contextmanager
def fresh_database(base_url: str | None = PG_URL) -> Iterator[Database]:
    """An empty database with the whole schema (a copy of the process's template), disposed
    afterwards."""
    if not base_url:
        with empty_database_url(base_url, template=_template(base_url)) as url:
            database = Database(url)
            try:
                yield database
            finally:
                database.dispose()
        return
    copies = _copies(base_url)
    name = copies.take()
    database = Database(make_url(base_url).set(database=name).render_as_string(hide_password=False))
    try:
        yield database
    finally:
        database.dispose()
        if copies.connected(name):
            _close_strays(name)
        copies.discard(name)


class _Copies:
    """PostgreSQL copies of the template, made and dropped by a thread of their own while tests
    run. A copy takes 0.25-0.6 s, nearly all of it waiting on the server's disk flushes rather
    than working (copies made side by side finish several times faster each), and nearly every
    test takes one: made in advance, the wait leaves the tests' critical path."""

    AHEAD = 3

    def __init__(self, base_url: str) -> None:
        self._url = make_url(base_url)
        self._template = _template(base_url)
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT")
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="test-database-copies",
                                        daemon=True)
        self._thread.start()
        for _ in range(self.AHEAD):
            self._order()
        atexit.register(self._close)

    def _order(self) -> None:
        self._work.put(("make", "qt_" + uuid.uuid4().hex[:16]))

    def take(self) -> str:
        """A ready copy (waiting for one if none is), and another ordered in its place."""
        self._order()
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def connected(self, name: str) -> bool:
        """Whether anything is still connected to copy `name` (a query, where looking through
        the process's objects for a stray connection takes up to a second in a long run)."""
        with self._admin.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :n"), {"n": name}).scalar())

    def discard(self, name: str) -> None:
        self._work.put(("drop", name))

    def _serve(self) -> None:
        while (job := self._work.get()) is not None:
            action, name = job
            if action == "make" and self._closing:
                continue
            try:
                with self._admin.connect() as conn:
                    if action == "make":
                        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
                    else:
                        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                          " WHERE datname = :n"), {"n": name})
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            except BaseException as error:  # noqa: BLE001 - handed to the test that waits
                if action == "make":
                    self._ready.put(error)
                continue
            if action == "make":
                self._ready.put(name)

    def _close(self) -> None:
        """Stop making copies and drop those nobody took (before the template itself is
        dropped: atexit runs this first, having registered it later)."""
        self._closing = True
        self._work.put(None)
        self._thread.join(timeout=60)
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, str):
                with self._admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{item}"'))
        self._admin.dispose()


_copy_makers: dict[str, _Copies] = {}
_copy_makers_lock = threading.Lock()


def _copies(base_url: str) -> _Copies:
    with _copy_makers_lock:
        if base_url not in _copy_makers:
            _copy_makers[base_url] = _Copies(base_url)
        return _copy_makers[base_url]


def _close_strays(name: str) -> None:
    """Close what is still connected to a test database about to be dropped (its backends are
    terminated anyway), before the garbage collector finds the connection open and turns the
    warning into a failure of whichever later test it happens to run in. Says so on stderr:
    a connection outliving its test is a leak to find, not to hide."""
    import psycopg

    for obj in gc.get_objects():
        if isinstance(obj, psycopg.Connection) and not obj.closed:
            try:
                if obj.info.dbname != name:
                    continue
            except Exception:  # noqa: S112 - a broken connection: closed below all the same
                pass
            print(f"\nstray connection to {name} left open by the test; closed",
                  file=sys.stderr)
            obj.close()
