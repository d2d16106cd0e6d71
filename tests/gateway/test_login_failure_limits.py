"""Failed console logins per address, in memory and in Redis (shared by server processes):
only failures count, an address is refused once a window's failures are used up, and it
learns for how long."""

from __future__ import annotations

import uuid

import pytest
from starlette.requests import Request

from gateway.ratelimit import RateLimiter


def from_address(address: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/console/login", "headers": [],
                    "client": (address, 40000), "query_string": b""})


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_url")


def test_an_address_is_refused_after_its_failures_and_others_are_not(storage: str) -> None:
    limiter = RateLimiter(storage, "1000/second", "1000/second", {"tiny": (2, 1000)},
                          "2/10 minutes")
    # A fresh address per run: Redis keeps counts between runs.
    run = uuid.uuid4().int
    guesser = from_address(f"10.{run % 250}.{run // 250 % 250}.1")
    other = from_address(f"10.{run % 250}.{run // 250 % 250}.2")
    assert limiter.login_refused_for(guesser) is None
    assert limiter.login_refused_for(guesser) is None  # asking does not count
    limiter.count_login_failure(guesser)
    assert limiter.login_refused_for(guesser) is None
    limiter.count_login_failure(guesser)
    wait = limiter.login_refused_for(guesser)
    assert wait is not None and 0 < wait <= 600
    assert limiter.login_refused_for(other) is None


def test_no_limits_configured_refuses_no_one() -> None:
    limiter = RateLimiter("memory://", "1000/second", "1000/second", {"tiny": (2, 1000)})
    request = from_address("10.0.0.1")
    for _ in range(50):
        limiter.count_login_failure(request)
    assert limiter.login_refused_for(request) is None
