"""Scheduled work in one place: products register jobs; `quanlian worker` (or the worker
thread inside `quanlian serve`) runs them. A job takes the Database, finds its due work
across tenants (each tenant on its own clock, see gateway.tenancy.clock_for), does it in
short transactions, and returns how many items it handled. Jobs must be safe to run in
several processes at once (row locks / unique journal references), and to re-run after a
crash at any point.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.db import Database

log = logging.getLogger("quanlian.worker")

Job = Callable[[Database], int]


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
