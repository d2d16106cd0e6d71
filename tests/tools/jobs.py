"""Helpers for the tests of the worker's jobs: one tenant whose run fails among others."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.tenancy import Tenant

# Seconds beyond any date Python can hold: every read of the tenant's clock raises.
BROKEN_CLOCK_OFFSET = 1e15


def break_clock(database: Any, tenant_id: str) -> None:
    """Corrupt the tenant's test clock (an offset out of range), so that every job trips on
    this tenant the moment it reads the tenant's now, as it would on any bad row of its own."""
    with database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id)
                        .values(clock_offset_seconds=BROKEN_CLOCK_OFFSET))


def assert_failure_logged(caplog: pytest.LogCaptureFixture, tenant_id: str) -> None:
    """The job logged the failed tenant's run with its id and the exception."""
    failures = [r for r in caplog.records if r.exc_info and tenant_id in r.getMessage()]
    assert failures, [r.getMessage() for r in caplog.records]
    assert all(isinstance(r.exc_info[1], OverflowError) for r in failures)  # type: ignore[index]


def statuses(database: Any, model: Any, ids: dict[str, str]) -> dict[str, str]:
    """The status of each row of `model`, by the tenant whose row it is ({tenant: row id})."""
    with database.transaction() as session:
        return {tenant: session.scalar(select(model.status).where(model.id == ident))
                for tenant, ident in ids.items()}
