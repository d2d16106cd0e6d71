"""Shared fixtures. Tests talk to the app over HTTP with real tokens; no mocks of our code."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.db import Database
from tests.tools.databases import PG_URL, REDIS_URL, REQUIRE_SERVICES, fresh_database


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"quanlian database backend: {'PostgreSQL ' + PG_URL if PG_URL else 'SQLite'}",
            f"quanlian redis: {REDIS_URL or 'not configured (in-memory)'}"]


@pytest.fixture(autouse=True)
def _strict_jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's failure for one tenant is logged and the others are served (gateway.jobs); in
    tests it is raised too, once the job has served the others, unless the test is about that
    (`tolerant_jobs`)."""
    if request.node.get_closest_marker("tolerant_jobs") is None:
        monkeypatch.setenv("QUANLIAN_STRICT_JOBS", "1")


def pytest_configure(config: pytest.Config) -> None:
    if REQUIRE_SERVICES and not REDIS_URL:
        raise pytest.UsageError("CI requires QUANLIAN_TEST_REDIS_URL")


@pytest.fixture
def database() -> Iterator[Database]:
    """A database of this test's own (SQLite file or a fresh PostgreSQL database)."""
    with fresh_database() as db:
        yield db


@pytest.fixture
def redis_url() -> str:
    """The test Redis; skipped locally when absent, a failure in CI."""
    if not REDIS_URL:
        if REQUIRE_SERVICES:
            pytest.fail("QUANLIAN_TEST_REDIS_URL is required in CI")
        pytest.skip("QUANLIAN_TEST_REDIS_URL not set")
    return REDIS_URL


os.environ.setdefault("QUANLIAN_LOG_LEVEL", "WARNING")


@pytest.fixture
def app(database: Database, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The whole platform on this test's database (no background threads)."""
    from tests.gateway.probe import router as probe_router
    from tests.tools.api import make_app

    application = make_app(database, tmp_path_factory.mktemp("data"))
    application.include_router(probe_router)
    return application


@pytest.fixture
def http(app):  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def partner(app, http):  # type: ignore[no-untyped-def]
    """A sandbox partner with every partner scope, using a client secret."""
    from tests.tools.api import new_partner_client

    return new_partner_client(app, http)
