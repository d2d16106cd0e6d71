"""What a `quanlian` command that works on the database needs before its first query.

A command runs in a process of its own, where no app factory has run: the models must be
imported, the schema and keys checked and the vault for personal data installed here, exactly as
`gateway.app.create_app` does, or the first personal value written (an account owner's name, an
operator's TOTP seed) fails with `VaultNotConfigured`, or is written under a key the database's
other data is not.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.keys import PlatformKeys
from gateway.settings import Settings, get_settings
from gateway.startup import exit_on_refusal, prepare


@contextmanager
def cli_database(settings: Settings | None = None) -> Iterator[tuple[Database, PlatformKeys]]:
    """The configured database (or that of `settings`) and the platform's keys, set up as the
    app is: models imported, the schema and the keys checked (`gateway.startup.prepare`; a
    refusal ends the command with its sentence and status 1), the vault installed. Disposes of
    the engine at the end."""
    from gateway import pii
    from gateway.app import import_models

    import_models()
    settings = settings or get_settings()
    database = Database(settings.effective_database_url)
    try:
        with exit_on_refusal():
            keys = prepare(settings, database)
        pii.set_vault(pii.Vault(keys))
        yield database, keys
    finally:
        database.dispose()


@contextmanager
def cli_transaction(settings: Settings | None = None) -> Iterator[Session]:
    """One unit of work on the configured database (or that of `settings`), set up by
    `cli_database`; commits on success, rolls back on an exception."""
    with cli_database(settings) as (database, _), database.transaction() as session:
        yield session


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory(workers: int) -> Iterator[str | None]:
    """For `quanlian serve`: with several worker processes, a fresh directory of this server's
    own for prometheus-client's multiprocess mode (`gateway.metrics`), in the environment the
    workers inherit, removed when the server stops. Made with `mkdtemp` (empty, mode 0700, a new
    name each time) under `PROMETHEUS_MULTIPROC_DIR` when that names a directory, else under the
    temporary directory: another server's files, or a former run's, are never counted. With one
    process the counts stay in memory, so the variable is removed. To be entered before
    anything imports prometheus_client in this process (it reads the variable once)."""
    inherited = os.environ.pop(MULTIPROC_ENV, None)
    os.environ.pop(MULTIPROC_ENV.lower(), None)  # the old spelling prometheus-client still reads
    if workers <= 1:
        yield None
        return
    parent = inherited if inherited and os.path.isdir(inherited) else None
    path = tempfile.mkdtemp(prefix="quanlian-metrics-", dir=parent)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
