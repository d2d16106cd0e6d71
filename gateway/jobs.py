"""Scheduled work in one place: products register jobs; `quanlian worker` (or the worker
thread inside `quanlian serve`) runs them. A job takes the Database, finds its due work
across tenants (each tenant on its own clock, see gateway.tenancy.clock_for), does it in
short transactions, and returns how many items it handled. Jobs must be safe to run in
several processes at once (row locks / unique journal references), and to re-run after a
crash at any point.

A job serves each tenant on its own (`for_each_tenant`, or `for_each_tenant_item` where the
work is ordered across tenants): a tenant whose run fails (its transaction rolls back) is
logged with its id and left to the next run, and the tenants after it are served all the same.
With `QUANLIAN_STRICT_JOBS=1` (the test suite sets it) the first such failure is raised again
once every tenant has been served, so that a job's bug fails the test that ran it instead of
hiding in a log line.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

from gateway.db import Database

log = logging.getLogger("quanlian.worker")

Job = Callable[[Database], int]
T = TypeVar("T")


@dataclass
class _Registered:
    name: str
    fn: Job
    interval: float


_jobs: dict[str, _Registered] = {}


def register_job(name: str, fn: Job, interval: float = 1.0) -> None:
    """Register (or replace) a job run every `interval` seconds by the worker."""
    _jobs[name] = _Registered(name, fn, interval)


def registered() -> list[str]:
    return sorted(_jobs)


def for_each_tenant_item(items: Iterable[tuple[str, T]], run: Callable[[str, T], int],
                         job: str, *, logger: logging.Logger = log) -> int:
    """`run(tenant_id, item)` for each `(tenant_id, item)` in turn, adding up what it returns.

    A run that raises (its transaction has rolled back) is logged with the job's name and the
    tenant id, and that tenant's later items are left to the next run of the job; every other
    tenant is served all the same.
    """
    failed: dict[str, Exception] = {}
    done = 0
    for tenant_id, item in items:
        if tenant_id in failed:
            continue
        try:
            done += run(tenant_id, item)
        except Exception as exc:
            failed[tenant_id] = exc
            logger.exception("%s of tenant %s failed; the other tenants go on", job, tenant_id)
    if failed and os.environ.get("QUANLIAN_STRICT_JOBS") == "1":
        raise next(iter(failed.values()))
    return done


def for_each_tenant(database: Database, tenants: Select[Any], run: Callable[[str], int],
                    job: str, *, logger: logging.Logger = log) -> int:
    """`run` each tenant id the `tenants` query selects (read in one short transaction), in
    tenant id order, as `for_each_tenant_item` does: a tenant whose run fails is logged and
    left to the next run, never holding back the tenants after it. `run` opens its own
    transactions, so that each tenant's work commits (or rolls back) on its own."""
    with database.transaction() as session:
        tenant_ids = sorted(set(session.scalars(tenants.distinct())))
    return for_each_tenant_item(((t, t) for t in tenant_ids), lambda t, _: run(t), job,
                                logger=logger)


def run_all_once(database: Database, only: list[str] | None = None) -> dict[str, int]:
    """Run every job once, now (what the worker does each tick; tests call it directly)."""
    done: dict[str, int] = {}
    for name in sorted(_jobs):
        if only is not None and name not in only:
            continue
        done[name] = _jobs[name].fn(database)
    return done


def run_until_idle(database: Database, max_rounds: int = 50) -> dict[str, int]:
    """Run all jobs repeatedly until none has anything left to do (bounded)."""
    total: dict[str, int] = {}
    for _ in range(max_rounds):
        done = run_all_once(database)
        for k, v in done.items():
            total[k] = total.get(k, 0) + v
        if not any(done.values()):
            break
    return total


# Set by `nudge`: the worker runs every job on its next tick, whatever their intervals.
_nudged = threading.Event()


def nudge() -> None:
    """Have the worker of this process run every job on its next tick (a sandbox test clock
    moved, so work may be due at once: `sandbox.clock_watch`)."""
    _nudged.set()


class Worker:
    """A background thread running the registered jobs on their intervals."""

    def __init__(self, database: Database, tick: float = 0.2) -> None:
        self.database = database
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quanlian-worker", daemon=True)
        self._last: dict[str, float] = {}

    def start(self) -> Worker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            if _nudged.is_set():
                _nudged.clear()
                self._last.clear()  # every job is due now
            now = time.monotonic()
            for name, job in list(_jobs.items()):
                if now - self._last.get(name, 0.0) < job.interval:
                    continue
                self._last[name] = now
                try:
                    job.fn(self.database)
                except Exception:
                    log.exception("job %s failed", name)
            self._stop.wait(self.tick)


def start(app: Any) -> Worker | _Noop:
    """Lifecycle hook for the app factory: run the worker in-process unless turned off."""
    if not app.state.settings.run_worker:
        return _Noop()
    return Worker(app.state.database).start()


class _Noop:
    def stop(self) -> None:
        return None
