"""Seeding a sandbox tenant: each product contributes a seeder; the sandbox runs them in order.

A seeder is `fn(session, tenant_id, fake) -> dict` (a summary of what it created, shown to the
developer). Products register theirs at import; the list of product modules to import lives here
so that the sandbox is the one place that knows which products seed data.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

log = logging.getLogger("quanlian.sandbox")

Seeder = Callable[[Session, str, Any], dict[str, Any]]
_seeders: dict[str, tuple[int, Seeder]] = {}

# Modules whose import registers a seeder (accounts first: the others need its accounts).
SEEDER_MODULES = [
    "products.accounts.seed",
    "products.chain_credit.seed",
    "products.payroll.seed",
    "products.collection.seed",
    "products.egov.seed",
]


def register_seeder(name: str, fn: Seeder, order: int = 100) -> None:
    _seeders[name] = (order, fn)


def _load() -> None:
    for module in SEEDER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # A product that is not installed seeds nothing; any other missing import is a bug.
            if not exc.name or not (module == exc.name or module.startswith(exc.name + ".")):
                raise


def seed_tenant(session: Session, tenant_id: str, seed: int | None = None) -> dict[str, Any]:
    """Create a tenant's realistic sandbox data; deterministic for a given seed, and its ids
    for the tenant."""
    from sandbox.fakedata import FakeData
    from sandbox.seeded_ids import seeded_ids

    _load()
    if seed is None:  # stable across processes (str hash() is salted per process)
        seed = int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:4], "big")
    fake = FakeData(seed)
    summary: dict[str, Any] = {}
    with seeded_ids(session, tenant_id):  # a reset brings back the same ids
        for name, (_, fn) in sorted(_seeders.items(), key=lambda kv: (kv[1][0], kv[0])):
            summary[name] = fn(session, tenant_id, fake)
            session.flush()
    return summary
