"""Due work runs on the worker's next tick after the test clock moves: with the worker running,
a developer who moves the clock past the collection cut-off sees the day's settlement within a
couple of seconds (it took 35-50 s: settlement waited a grace minute after the cut-off on the
tenant's clock, which passes in real time, then for its job's next 10-second turn)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from gateway import jobs
from sandbox import clock_watch
from tests.products.collection.support import Platform, next_cutoff, setup_platform

SOON = 2.0  # seconds of real time: "within a couple of seconds"


def _settled_within(p: Platform, day: Any, seconds: float) -> float | None:
    """Poll the settlements of `day` over HTTP, as a developer would; how long they took."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        listed = p.get(f"/settlements?settlement_date={day.isoformat()}")
        assert listed.status_code == 200, listed.text
        if listed.json()["data"]:
            return time.monotonic() - start
        time.sleep(0.05)  # a real worker thread is doing the work: wait on real time
    return None


def test_settlement_follows_the_clock_past_the_cut_off_within_seconds(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    first_day = p.today()
    p.order("100.00")
    # Day one is settled by the worker's first round, whatever its job intervals: that round
    # tells the test when the settlement job last ran.
    p.advance_to(next_cutoff(p, 0, 5))
    worker = jobs.Worker(app.state.database).start()
    try:
        assert _settled_within(p, first_day, 20.0) is not None

        p.advance_to(next_cutoff(p, 10))
        second_day = p.today()
        p.order("50.00")
        # A second past the cut-off: the settlement job ran a moment ago (its next turn is
        # 10 s away) and the day closed only just.
        p.advance_to(next_cutoff(p) + timedelta(seconds=1))
        took = _settled_within(p, second_day, SOON)
        assert took is not None, "no settlement within a couple of seconds of the cut-off"
        print(f"settled {took:.2f} s after the clock passed the cut-off")
    finally:
        worker.stop()
    assert p.settings()["settled_through"] == second_day.isoformat()


def test_the_watch_nudges_only_when_a_clock_moved(app, http):
    p = setup_platform(app, http)
    database = app.state.database
    before = clock_watch.fingerprint(database)
    assert clock_watch.watch(database) == 0  # remembers the clocks
    assert clock_watch.fingerprint(database) == before
    nudged = jobs._nudged
    nudged.clear()
    assert clock_watch.watch(database) == 0
    assert not nudged.is_set()  # nothing moved: no nudge
    p.advance(3600)
    assert clock_watch.fingerprint(database) != before
    clock_watch.watch(database)
    assert nudged.is_set()
    nudged.clear()
    clock_watch.watch(database)
    assert not nudged.is_set()
    assert "sandbox.clock_watch" in jobs.registered()
