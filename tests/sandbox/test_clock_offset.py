"""`GET /sandbox/v1/clock`: `offset_seconds` is a number of seconds to the microsecond.

Advancing the test clock `to` an instant moves it by exactly the time to that instant, the
real clock's fraction of a second included, so the offset is not whole by design; it is given
as the clock applies it (a `timedelta`: microseconds), and `now` stays RFC 3339.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway import clock as clock_module
from tests.tools.clock import manual_clock

START = datetime(2026, 11, 2, 2, 0, 0, 700_000, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[clock_module.ManualClock]:
    """A base clock in the middle of a second (tokens keep using real time)."""
    with manual_clock(START) as manual:
        yield manual


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text else 0


def test_offset_is_given_to_the_microsecond_as_the_clock_applies_it(partner, clock):
    first = partner.post("/sandbox/v1/clock/advance", {"to": "2026-11-03T00:00:00Z"})
    assert first.status_code == 200, first.text
    assert first.json()["now"] == "2026-11-03T00:00:00Z"
    assert first.json()["offset_seconds"] == 79199.3  # not whole: the base clock was at .7 s

    clock.advance(0.4)  # the real clock moves on, to the middle of another second
    second = partner.post("/sandbox/v1/clock/advance", {"to": "2026-11-04T00:00:00Z"}).json()
    assert second["now"] == "2026-11-04T00:00:00Z"
    read = partner.get("/sandbox/v1/clock").json()
    offset = read["offset_seconds"]
    assert isinstance(offset, float) and _decimals(offset) <= 6, offset
    assert offset == second["offset_seconds"] == 165598.9  # 79199.3 + 86399.6
    # The offset given is the one the clock applies: real time plus it is the tenant's now.
    now = clock.now() + timedelta(seconds=offset)
    assert now == datetime(2026, 11, 4, tzinfo=UTC)
    assert read["now"] == "2026-11-04T00:00:00Z" and read["business_date"] == "2026-11-04"


def test_offset_precision_is_documented(http):
    schema = http.get("/openapi.json").json()["components"]["schemas"]["ClockOut"]
    offset = schema["properties"]["offset_seconds"]
    assert offset["type"] == "number"
    assert "6 decimals" in offset["description"] and "microsecond" in offset["description"]
    assert "RFC 3339" in schema["properties"]["now"]["description"]
