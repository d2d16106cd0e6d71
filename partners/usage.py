"""Usage per partner per day: calls, errors and p95 latency.

The edge middleware hands every finished call's CallRecord to `app.state.call_observers`;
`UsageAggregator.observe` only adds to an in-memory counter under a lock (no I/O on the
request path). `flush` adds the counters to `usage_daily` rows, one short transaction per
flush; each process flushes its own increments, so several processes add up correctly.
Latency is kept as a histogram with buckets growing by 10 %, so p95 is exact to within one
bucket (at most 10 % high) and rows of several processes merge by adding counts.

Flushing: by the `usage.flush` job of the worker; a server process that runs no worker
thread (`quanlian serve --no-worker`) flushes from its own small thread (this module is in
gateway.app.LIFECYCLE), and every server flushes once more when it stops. Counts not yet
flushed when a process dies are lost (at most `usage_flush_seconds` worth); usage is an
operational view, the evidence log is the record.
"""

from __future__ import annotations

import bisect
import logging
import threading
import weakref
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.clock import business_date
from gateway.context import CallRecord
from gateway.db import Database
from gateway.ids import new_id
from partners.models import UsageDaily

log = logging.getLogger("quanlian.usage")

# Upper bounds (ms) of the latency buckets: 0.5 ms growing by 10 % up to ~10 min.
BOUNDS: list[float] = []
_b = 0.5
while _b < 600_000:
    BOUNDS.append(round(_b, 3))
    _b *= 1.1
BOUNDS.append(float("inf"))


def bucket_of(latency_ms: float) -> int:
    return bisect.bisect_left(BOUNDS, latency_ms)


def percentile(histogram: dict[str, Any], fraction: float) -> float | None:
    """The upper bound of the bucket holding the `fraction` quantile (None if no calls)."""
    counts = sorted((int(k), int(v)) for k, v in histogram.items())
    total = sum(v for _, v in counts)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in counts:
        seen += count
        if seen >= rank:
            bound = BOUNDS[min(index, len(BOUNDS) - 1)]
            return bound if bound != float("inf") else BOUNDS[-2]
    return BOUNDS[-2]


@dataclass
class _Counter:
    partner_id: str
    environment: str
    calls: int = 0
    client_errors: int = 0
    server_errors: int = 0
    latency_total: float = 0.0
    histogram: dict[int, int] = field(default_factory=dict)


class UsageAggregator:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._counters: dict[tuple[str, date], _Counter] = {}

    def observe(self, record: CallRecord) -> None:
        """Count one call (the edge middleware's hook; partners' calls only)."""
        if not record.tenant_id or not record.partner_id:
            return
        day = business_date(record.started_at)
        with self._lock:
            key = (record.tenant_id, day)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = _Counter(record.partner_id,
                                                         record.environment or "sandbox")
            counter.calls += 1
            if 400 <= record.status < 500:
                counter.client_errors += 1
            elif record.status >= 500:
                counter.server_errors += 1
            counter.latency_total += record.latency_ms
            b = bucket_of(record.latency_ms)
            counter.histogram[b] = counter.histogram.get(b, 0) + 1

    def flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:
            log.exception("usage flush failed")

    def flush(self) -> int:
        """Add the counters to the database; returns how many rows were written."""
        with self._flush_lock:
            with self._lock:
                counters, self._counters = self._counters, {}
            if not counters:
                return 0
            try:
                with self.database.transaction() as session:
                    for (tenant_id, day), counter in counters.items():
                        _add(session, tenant_id, day, counter)
            except Exception:
                with self._lock:  # put them back; the next flush tries again
                    for key, counter in counters.items():
                        _merge(self._counters, key, counter)
                raise
            return len(counters)


def _merge(into: dict[tuple[str, date], _Counter], key: tuple[str, date], c: _Counter) -> None:
    mine = into.get(key)
    if mine is None:
        into[key] = c
        return
    mine.calls += c.calls
    mine.client_errors += c.client_errors
    mine.server_errors += c.server_errors
    mine.latency_total += c.latency_total
    for b, n in c.histogram.items():
        mine.histogram[b] = mine.histogram.get(b, 0) + n


def _add(session: Session, tenant_id: str, day: date, counter: _Counter) -> None:
    query = select(UsageDaily).where(UsageDaily.tenant_id == tenant_id,
                                     UsageDaily.day == day).with_for_update()
    row = session.scalars(query).first()
    if row is None:
        try:
            with session.begin_nested():
                row = UsageDaily(id=new_id("use"), tenant_id=tenant_id,
                                 partner_id=counter.partner_id, environment=counter.environment,
                                 day=day, calls=0, client_errors=0, server_errors=0,
                                 latency_ms_total=0.0, latency_histogram={},
                                 updated_at=clock_module.utcnow())
                session.add(row)
        except IntegrityError:  # another process inserted the row first
            row = session.scalars(query).one()
    row.calls += counter.calls
    row.client_errors += counter.client_errors
    row.server_errors += counter.server_errors
    row.latency_ms_total += counter.latency_total
    histogram = dict(row.latency_histogram or {})
    for b, n in counter.histogram.items():
        histogram[str(b)] = int(histogram.get(str(b), 0)) + n
    row.latency_histogram = histogram
    row.updated_at = clock_module.utcnow()


_aggregators: weakref.WeakKeyDictionary[Database, UsageAggregator] = weakref.WeakKeyDictionary()


def install(app: Any) -> UsageAggregator:
    """Create the app's aggregator and hook it into the edge middleware's call observers."""
    database = app.state.database
    aggregator = UsageAggregator(database)
    _aggregators[database] = aggregator
    observers = list(getattr(app.state, "call_observers", None) or [])
    observers.append(aggregator.observe)
    app.state.call_observers = observers
    app.state.usage_aggregator = aggregator
    return aggregator


def flush_job(database: Database) -> int:
    aggregator = _aggregators.get(database)
    return aggregator.flush() if aggregator is not None else 0


class _Flusher:
    """The server's own flushing thread (when no worker thread runs in the process)."""

    def __init__(self, aggregator: UsageAggregator, interval: float | None) -> None:
        self.aggregator = aggregator
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(target=self._run, name="usage-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            self.aggregator.flush_quietly()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.aggregator.flush_quietly()


def start(app: Any) -> _Flusher:
    """gateway.app.LIFECYCLE hook: flush periodically unless the in-process worker's
    `usage.flush` job does it, and once more at shutdown."""
    from partners.settings import get_partner_settings

    aggregator = getattr(app.state, "usage_aggregator", None) or install(app)
    interval = None if app.state.settings.run_worker else get_partner_settings().usage_flush_seconds
    return _Flusher(aggregator, interval)


@dataclass
class UsageRow:
    partner_id: str
    partner_name: str
    environment: str
    day: date
    calls: int
    errors: int
    client_errors: int
    server_errors: int
    p95_ms: float | None
    mean_ms: float | None


def usage_rows(session: Session, *, partner_id: str | None = None, since: date | None = None,
               until: date | None = None, limit: int = 500) -> list[UsageRow]:
    """Daily usage, newest day first (the console's usage page and partner detail)."""
    from gateway.tenancy import Partner

    query = (select(UsageDaily, Partner.name).join(Partner, Partner.id == UsageDaily.partner_id)
             .order_by(UsageDaily.day.desc(), Partner.name, UsageDaily.environment).limit(limit))
    if partner_id:
        query = query.where(UsageDaily.partner_id == partner_id)
    if since:
        query = query.where(UsageDaily.day >= since)
    if until:
        query = query.where(UsageDaily.day <= until)
    out = []
    for row, name in session.execute(query):
        out.append(UsageRow(
            partner_id=row.partner_id, partner_name=name, environment=row.environment,
            day=row.day, calls=row.calls, errors=row.client_errors + row.server_errors,
            client_errors=row.client_errors, server_errors=row.server_errors,
            p95_ms=percentile(row.latency_histogram or {}, 0.95),
            mean_ms=(row.latency_ms_total / row.calls) if row.calls else None))
    return out
