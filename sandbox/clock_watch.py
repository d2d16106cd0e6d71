"""Due work runs on the worker's next tick after a sandbox test clock moves.

The worker runs each job on its own interval (settlement every 10 s, dunning every 30 s, ...),
which is right for real time, but a developer who moves a tenant's clock past a cut-off or a
maturity expects to see what falls due at once. The job `sandbox.clock_watch` (every 0.5 s in
every worker process) reads a fingerprint of the tenants' test clocks, one aggregate over the
tenants whose clock was ever moved; when it changed since the last look, it nudges the worker of
its process (`gateway.jobs.nudge`), which then runs every job on its next tick. A clock moved
through the API of another process (API servers run with `--no-worker` beside `quanlian worker`
processes) is seen all the same, since the fingerprint is read from the database.

The first look of a process only remembers the fingerprint (the worker runs every job when it
starts anyway). Reading it takes no write lock (a deferred transaction on SQLite, autocommit on
PostgreSQL), so it never queues behind writers.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import func, select

from gateway import jobs
from gateway.db import Database, read_only
from gateway.tenancy import Tenant

INTERVAL = 0.5

_lock = threading.Lock()
# The last fingerprint seen, per database (tests run many; a process serves one).
_seen: weakref.WeakKeyDictionary[Database, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def fingerprint(database: Database) -> tuple[Any, ...]:
    """What changes whenever a tenant's test clock moves (advanced, or put back by a reset)."""
    moved = Tenant.clock_offset_seconds != 0
    query = select(func.count(), func.coalesce(func.sum(Tenant.clock_offset_seconds), 0),
                   func.coalesce(func.max(Tenant.clock_offset_seconds), 0)).where(moved)
    with database.engine.connect() as conn:
        if not database.is_sqlite:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            return tuple(read_only(conn).execute(query).one())
        finally:
            conn.rollback()


def watch(database: Database) -> int:
    """Nudge the worker when a test clock moved since the last look; handles no items itself."""
    current = fingerprint(database)
    with _lock:
        previous = _seen.get(database)
        _seen[database] = current
    if previous is not None and previous != current:
        jobs.nudge()
    return 0


def register() -> None:
    jobs.register_job("sandbox.clock_watch", watch, interval=INTERVAL)
