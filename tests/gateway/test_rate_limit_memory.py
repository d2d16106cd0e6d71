"""In-memory rate limits without limits' per-hit timer thread: counts still hold within a
window, reset after it, and expired counters are purged (memory does not grow per client)."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.errors import TooManyRequests
from gateway.ratelimit import RateLimiter
from gateway.tenancy import Principal


def principal(client_id: str) -> Principal:
    return Principal(client_id=client_id, partner_id="ptn_x", tenant_id="ten_x",
                     environment="sandbox", scopes=frozenset(), rate_plan="tiny")


def test_memory_limits_hold_reset_and_purge_without_timer_threads() -> None:
    limiter = RateLimiter("memory://", "1000/second", "1000/second", {"tiny": (2, 1000)})
    timers_before = sum(isinstance(t, threading.Timer) for t in threading.enumerate())
    limiter.check_client(None, principal("cli_a"))  # type: ignore[arg-type]
    limiter.check_client(None, principal("cli_a"))  # type: ignore[arg-type]
    with pytest.raises(TooManyRequests):
        limiter.check_client(None, principal("cli_a"))  # type: ignore[arg-type]
    for i in range(50):
        limiter.check_client(None, principal(f"cli_{i}"))  # type: ignore[arg-type]
    assert sum(isinstance(t, threading.Timer) for t in threading.enumerate()) == timers_before

    storage = limiter.strategy.storage
    per_second = [k for k in storage.storage if "second" in k]
    assert len(per_second) >= 50
    time.sleep(1.1)
    limiter.check_client(None, principal("cli_a"))  # type: ignore[arg-type]  # a new window
    limiter._next_purge = 0.0  # the purge is due
    limiter.check_client(None, principal("cli_b"))  # type: ignore[arg-type]
    # Only this second's counters are left of the per-second ones (the day counters remain).
    assert len([k for k in storage.storage if "second" in k]) <= 2
