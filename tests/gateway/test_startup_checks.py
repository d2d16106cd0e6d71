"""The schema at start-up (`gateway.startup`, `gateway.migrate`): the app and the worker run only
on a database at this release's head revision; `serve --no-migrate` leaves migrating to
`quanlian db upgrade`; a database migrated by a newer release gets one sentence, never a
traceback; on PostgreSQL a migration waits a bounded time for a table lock."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from gateway import migrate
from gateway.app import create_app
from gateway.db import Database
from gateway.settings import get_settings
from gateway.startup import StartupRefused
from tests.tools.api import make_settings
from tests.tools.databases import PG_URL, empty_database_url

ROOT = Path(__file__).resolve().parents[2]
HEAD = migrate.head_revision()


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()


def revision_of(url: str) -> str:
    engine = create_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


@pytest.fixture
def at_0007() -> Iterator[str]:
    """A database the release before last left: migrated to 0007."""
    with empty_database_url() as url:
        command.upgrade(migrate.alembic_config(url), "0007")
        yield url


@pytest.fixture
def cli(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """`quanlian ...` in this process, on `url`, with uvicorn never really started."""
    import uvicorn

    served: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(True))
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("QUANLIAN_MIGRATE_ON_START", raising=False)

    def invoke(url: str, *args: str, **env: str):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("QUANLIAN_DATABASE_URL", url)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        try:
            from gateway.cli import app

            return CliRunner().invoke(app, list(args)), bool(served)
        finally:
            get_settings.cache_clear()

    return invoke


@pytest.mark.parametrize(("revision", "expected"), [
    ("0007", "The database is at migration 0007, behind this release's " + HEAD
             + ": run `quanlian db upgrade`."),
    ("0999", "The database was migrated by a newer release (revision 0999; this release knows "
             "migrations up to " + HEAD + "): run that release, or restore the backup taken "
             "before the upgrade."),
])
def test_the_app_refuses_a_database_behind_or_ahead_of_the_code(database, tmp_path, revision,
                                                                expected):
    set_revision(database.url, revision)
    with pytest.raises(StartupRefused) as refused:
        create_app(make_settings(tmp_path, database.url), database=database, start_background=False)
    assert str(refused.value) == expected
    assert not (tmp_path / "keys").exists()  # refused before the keys were even looked at


def test_the_worker_refuses_a_database_behind_the_code(cli, at_0007):
    result, _ = cli(at_0007, "worker", "--once")
    assert result.exit_code == 1
    assert "at migration 0007, behind this release's" in result.output
    assert "`quanlian db upgrade`" in result.output
    assert revision_of(at_0007) == "0007"


@pytest.mark.parametrize("how", ["--no-migrate", "QUANLIAN_MIGRATE_ON_START=false"])
def test_serve_without_migrating_refuses_a_database_behind_the_code(cli, at_0007, how):
    if how.startswith("--"):
        result, served = cli(at_0007, "serve", how)
    else:
        name, value = how.split("=")
        result, served = cli(at_0007, "serve", **{name: value})
    assert result.exit_code == 1 and not served
    assert "run `quanlian db upgrade`" in result.output
    assert revision_of(at_0007) == "0007"
    # once migrated as its own step, the same start serves
    assert cli(at_0007, "db", "upgrade")[0].exit_code == 0
    result, served = cli(at_0007, "serve", "--no-migrate")
    assert result.exit_code == 0 and served, result.output


def test_serve_migrates_by_default_and_logs_each_revision_it_runs(cli, at_0007, caplog):
    with caplog.at_level(logging.INFO, logger="quanlian.migrate"):
        result, served = cli(at_0007, "serve")
    assert result.exit_code == 0 and served, result.output
    assert revision_of(at_0007) == HEAD
    ran = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ran migration")]
    assert ran[0] == "ran migration 0008: wage workers: the agreed monthly wage"
    assert ran[-1].startswith(f"ran migration {HEAD}: ")
    assert f"database is at {HEAD}" in result.output


def test_migrating_a_database_ahead_of_the_code_is_one_sentence_and_changes_nothing(tmp_path):
    with empty_database_url() as url:
        migrate.upgrade(url)
        set_revision(url, "0999")
        with pytest.raises(StartupRefused, match=r"newer release \(revision 0999;"):
            migrate.upgrade(url)
        env = {**os.environ, "QUANLIAN_DATABASE_URL": url, "QUANLIAN_DATA_DIR": str(tmp_path)}
        run = subprocess.run([sys.executable, "-m", "gateway.cli", "db", "upgrade"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1
        assert run.stderr == (f"error: The database was migrated by a newer release (revision "
                              f"0999; this release knows migrations up to {HEAD}): run that "
                              "release, or restore the backup taken before the upgrade.\n")
        assert revision_of(url) == "0999"


@pytest.mark.skipif(not PG_URL, reason="lock_timeout is PostgreSQL's")
def test_a_migration_waiting_for_a_table_lock_says_who_holds_it_and_tries_again(at_0007, caplog):
    """A long read holds wage_workers (0008 alters it): the migration gives up its wait after
    the lock timeout, rolls back, logs the relation and the holder, and tries again; the
    holder finishing in between (here: when the wait is logged) lets the next try through."""
    holder = create_engine(at_0007)
    conn = holder.connect()
    conn.execute(text("SELECT count(*) FROM wage_workers"))  # an open transaction's read lock

    class Release(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waited" in record.getMessage() and conn.in_transaction():
                conn.rollback()

    release = Release()
    logging.getLogger("quanlian.migrate").addHandler(release)
    try:
        with caplog.at_level(logging.INFO, logger="quanlian.migrate"):
            assert migrate.upgrade(at_0007, lock_timeout=0.2, attempts=3, pause=0) == HEAD
    finally:
        logging.getLogger("quanlian.migrate").removeHandler(release)
        conn.close()
        holder.dispose()
    [waited] = [r.getMessage() for r in caplog.records if "waited" in r.getMessage()]
    assert "for a lock on wage_workers (held by pid" in waited
    assert "SELECT count(*) FROM wage_workers" in waited
    assert "trying again (2 of 3)" in waited


@pytest.mark.skipif(not PG_URL, reason="lock_timeout is PostgreSQL's")
def test_a_migration_that_never_gets_its_lock_fails_with_one_sentence_and_changes_nothing(at_0007):
    holder = create_engine(at_0007)
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT count(*) FROM wage_workers"))
            with pytest.raises(StartupRefused) as refused:
                migrate.upgrade(at_0007, lock_timeout=0.1, attempts=2, pause=0)
            conn.rollback()
    finally:
        holder.dispose()
    sentence = str(refused.value)
    assert sentence.startswith("The migration could not take a lock on wage_workers in 2 tries of "
                               "0.1 s (held by pid ")
    assert sentence.endswith("and changed nothing: end that transaction, then run "
                             "`quanlian db upgrade` again.")
    assert revision_of(at_0007) == "0007"


def test_readyz_is_served_by_a_checked_app(database, tmp_path):
    """The checks pass on a database at the head: the app starts and is ready."""
    from starlette.testclient import TestClient

    app = create_app(make_settings(tmp_path, database.url), database=Database(database.url),
                     start_background=False)
    try:
        with TestClient(app) as http:
            assert http.get("/readyz").json()["migration"] == HEAD
    finally:
        app.state.database.dispose()

