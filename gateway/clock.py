"""The one source of time. Products never call datetime.now(); they ask a Clock.

The process has a base clock (system time, or a manual clock in tests). A sandbox tenant
sees the base clock shifted by its test-clock offset, so advancing one tenant's clock
never touches another's.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, WithJsonSchema

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        """The business date in Asia/Shanghai."""
        return self.now().astimezone(SHANGHAI).date()


class ManualClock(Clock):
    """A clock that only moves when told to; used by tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


class OffsetClock(Clock):
    """A base clock shifted by a fixed offset: a sandbox tenant's test clock."""

    def __init__(self, base: Clock, offset_seconds: float) -> None:
        self.base = base
        self.offset = timedelta(seconds=offset_seconds)

    def now(self) -> datetime:
        return self.base.now() + self.offset


_base: Clock = Clock()


def base_clock() -> Clock:
    return _base


def set_base_clock(clock: Clock) -> None:
    global _base
    _base = clock


def utcnow() -> datetime:
    return _base.now()


def to_rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def business_date(value: datetime) -> date:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(SHANGHAI).date()


def start_of_business_day(day: date) -> datetime:
    """The UTC instant at which a Shanghai business date begins."""
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI).astimezone(UTC)


# --- dates and times in requests ----------------------------------------------------------
# pydantic reads a number, or a string of digits, given for a date or a time as Unix seconds:
# "20261210" became 1970-08-23T12:06:50Z, or an error about "zero time". Requests name dates
# as YYYY-MM-DD and instants as RFC 3339, and anything else is refused saying so.

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_text(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        return value.strip()
    raise ValueError("must be a date written YYYY-MM-DD, e.g. 2026-12-10")


def _instant_text(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339_START.match(value.strip()):
        return value.strip()
    raise ValueError("must be a time in RFC 3339, e.g. 2026-12-10T09:30:00+08:00")


IsoDate = Annotated[date, BeforeValidator(_date_text)]
"""A business date in a request: YYYY-MM-DD only."""

Instant = Annotated[datetime, BeforeValidator(_instant_text)]
"""A moment in a request: RFC 3339 only (whether a zone is required is the field's rule)."""

Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
"""A moment in a response, written by `to_rfc3339`: documented as a date-time, so a generated
client reads it as one."""
