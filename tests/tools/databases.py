"""Throw-away databases for tests and benchmarks: a SQLite file, or a fresh PostgreSQL database
created next to QUANLIAN_TEST_DATABASE_URL (so parallel runs never share tables)."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from gateway.app import import_models
from gateway.db import Base, Database

PG_URL = os.environ.get("QUANLIAN_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("QUANLIAN_TEST_REDIS_URL")
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
        finally:
            template.dispose()  # a PostgreSQL template is copied only with no one connected
        _templates[base_url] = location
        return location


def _drop_template(admin: Engine, name: str) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@contextmanager
def fresh_database(base_url: str | None = PG_URL) -> Iterator[Database]:
    """An empty database with the whole schema (a copy of the process's template), disposed
    afterwards."""
    template = _template(base_url)
    with empty_database_url(base_url, template=template) as url:
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()
            if base_url:
                _close_strays(make_url(url).database or "")


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
