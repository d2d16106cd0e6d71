"""The seeded rows' ids: the same at sign-up and after every reset.

A developer configures the ids the sign-up answer lists; a reset must bring back those ids,
not new ones. So seeding draws the ids of these prefixes from `gateway.ids.deterministic_ids`,
keyed by the tenant and stamped with the tenant's creation time (they sort before anything the
tenant makes later). Only prefixes of rows that the reset deletes are listed: a kept row (an
event, a webhook delivery, evidence, ...) made during seeding keeps a random id, or the next
seeding would make its id again and collide with it. `tests/sandbox/test_reset_keeps_ids.py`
checks this list against the tables `sandbox.reset.clear_tenant` clears and keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

from sqlalchemy.orm import Session

from gateway.ids import deterministic_ids
from gateway.tenancy import get_tenant

SEEDED_ID_PREFIXES = frozenset({
    "acct", "jnl", "pst",  # accounts, journal entries, postings
    "cmem", "cfac",  # chain credit
    "csm", "cmd", "cva", "cemp", "cdin", "cgrt", "clot", "ctop", "cpark", "cptn", "cbill",  # collection
    "wproj", "wfund", "wworker",  # payroll
})


@contextmanager
def seeded_ids(session: Session, tenant_id: str) -> Iterator[None]:
    created = get_tenant(session, tenant_id).created_at
    if created.tzinfo is None:  # SQLite gives back naive UTC
        created = created.replace(tzinfo=UTC)
    with deterministic_ids(f"sandbox-seed:{tenant_id}", int(created.timestamp() * 1000),
                           SEEDED_ID_PREFIXES):
        yield
