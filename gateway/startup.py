"""What a process checks before it serves or works on the database, and how it refuses.

Every entry point (the app that `quanlian serve`, uvicorn or gunicorn serve, `quanlian
worker`, and the commands that read or write the database) calls `prepare` first:

1. the schema: the database's Alembic revision must be this release's head. Behind it, the
   code would meet columns that do not exist yet; ahead of it (a newer release migrated it),
   this code would write rows without the newer columns' values (`gateway.migrate`).
2. the keys: the data and evidence keys loaded must be those the database was written under
   (`gateway.keyguard`); keys are never generated for a database that holds data.

A refusal is `StartupRefused`, one sentence saying what is wrong and what to do; nothing is
wrong with the code, so entry points print the sentence and exit without a traceback
(`exit_on_refusal`).

The test suite builds its apps with `create_app(..., startup_checks=False)` on throwaway
databases and data dirs (`tests/tools/api.py`); its template databases are stamped at the head
revision, so the commands and the worker it runs go through these checks as in production.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.db import Database
    from gateway.keys import PlatformKeys
    from gateway.settings import Settings

# The exit status of a server process that refuses to start: what uvicorn and gunicorn take as
# "this worker failed to boot", so that a supervisor of several workers stops instead of
# starting them again and again. A database that cannot be reached exits 1 instead: it may
# answer a moment later, and a worker restarted during an outage must not stop the server.
SERVER_REFUSED = 3


class StartupRefused(RuntimeError):
    """A start (or a migration) refused: `str()` is one sentence for the operator."""

    transient = False


class DatabaseUnreachable(StartupRefused):
    """The database did not answer: the start may succeed when it does."""

    transient = True


def check_schema(database: Database) -> None:
    """`StartupRefused` unless the database answers and is at this release's head revision."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from gateway import migrate

    try:
        current = migrate.current_revision(database.engine)
    except DBAPIError as exc:
        where = make_url(database.url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise DatabaseUnreachable(f"The database at {where} cannot be reached ({reason}).") from None
    problem = migrate.schema_problem(current)
    if problem is not None:
        raise StartupRefused(problem[1])


def prepare(settings: Settings, database: Database) -> PlatformKeys:
    """Check the schema, then load the platform's keys and check them against the database
    (recording them on a first start): the keys to run with, or `StartupRefused`."""
    from gateway.keyguard import open_keys

    check_schema(database)
    return open_keys(settings, database)


@contextmanager
def exit_on_refusal(status: int = 1) -> Iterator[None]:
    """Turn a `StartupRefused` into its sentence on standard error and exit `status` (1 when
    the database did not answer)."""
    try:
        yield
    except StartupRefused as refused:
        print(f"error: {refused}", file=sys.stderr, flush=True)
        raise SystemExit(1 if refused.transient else status) from None
