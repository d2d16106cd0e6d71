"""Throw-away databases for tests and benchmarks: a SQLite file, or a fresh PostgreSQL database
created next to QUANLIAN_TEST_DATABASE_URL (so parallel runs never share tables)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gateway.app import import_models
from gateway.db import Base, Database

PG_URL = os.environ.get("QUANLIAN_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("QUANLIAN_TEST_REDIS_URL")
REQUIRE_SERVICES = os.environ.get("QUANLIAN_TEST_REQUIRE_SERVICES", "").lower() == "true"


def backend_name() -> str:
    return "postgresql" if PG_URL else "sqlite"


@contextmanager
def empty_database_url(base_url: str | None = PG_URL) -> Iterator[str]:
    """A URL to a brand-new empty database, dropped afterwards."""
    if base_url:
        url = make_url(base_url)
        name = "qt_" + uuid.uuid4().hex[:16]
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
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
            yield f"sqlite:///{tmp}/test.db"


@contextmanager
def fresh_database(base_url: str | None = PG_URL) -> Iterator[Database]:
    """An empty database with the whole schema, disposed afterwards."""
    import_models()
    with empty_database_url(base_url) as url:
        database = Database(url)
        Base.metadata.create_all(database.engine)
        try:
            yield database
        finally:
            database.dispose()
