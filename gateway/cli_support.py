"""What a `quanlian` command that works on the database needs before its first query.

A command runs in a process of its own, where no app factory has run: the models must be
imported and the vault for personal data installed here, exactly as `gateway.app.create_app`
does, or the first personal value written (an account owner's name, an operator's TOTP seed)
fails with `VaultNotConfigured`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.settings import Settings, get_settings


@contextmanager
def cli_transaction(settings: Settings | None = None) -> Iterator[Session]:
    """One unit of work on the configured database (or that of `settings`), set up as the app
    is (models imported, the vault of `QUANLIAN_DATA_DIR` / `QUANLIAN_ENCRYPTION_KEY`
    installed); commits on success, rolls back on an exception, and disposes of the engine
    either way."""
    from gateway import pii
    from gateway.app import import_models
    from gateway.keys import PlatformKeys

    import_models()
    settings = settings or get_settings()
    pii.set_vault(pii.Vault(PlatformKeys(settings.data_dir, settings.encryption_key)))
    database = Database(settings.effective_database_url)
    try:
        with database.transaction() as session:
            yield session
    finally:
        database.dispose()
