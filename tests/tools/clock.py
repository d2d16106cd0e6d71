"""A manual base clock for a test: business dates and the tenants' test clocks become
deterministic, while tokens keep using real time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from gateway import clock as clock_module


@contextmanager
def manual_clock(start: datetime) -> Iterator[clock_module.ManualClock]:
    """Install a `ManualClock` at `start` as the base clock, and put the previous one back."""
    previous = clock_module.base_clock()
    manual = clock_module.ManualClock(start)
    clock_module.set_base_clock(manual)
    try:
        yield manual
    finally:
        clock_module.set_base_clock(previous)
