"""Collection's scheduled work, run by the worker on each tenant's clock.

| job | what |
| --- | --- |
| `collection.expire_orders` | pending virtual-account orders past `expires_at` expire |
| `collection.settle` | daily settlement of every closed business date with activity |
| `collection.subsidy_expiry` | month-end expiry of canteen subsidy grants |
| `collection.dunning` | late fees, overdue bills and reminders |
| `collection.mandate_expiry` | mandates past their expiry date |

Each finds its tenants with one query (in tenant id order), then works tenant by tenant in
short transactions, reading each tenant's now from `gateway.tenancy.clock_for`. Each tenant
runs on its own (`gateway.jobs.for_each_tenant`, shared by every product's jobs): a tenant
whose run fails is logged (with its id) and retried on the next run, and the tenants after it
are served all the same. All are safe to run in several processes at once (row locks, unique
journal references, one settlement run per date).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.jobs import for_each_tenant, register_job
from products.collection import canteen, park, service, settlement
from products.collection.models import Bill, CollectionSettings, Mandate, Order, SubsidyGrant
from products.collection.states import BILL_UNPAID

ACTOR = "system:collection"

log = logging.getLogger("quanlian.collection")


def _each(database: Database, query: Select[Any],
          work: Callable[[Session, str, datetime], int], job: str) -> int:
    """`work` in one transaction per tenant, on the tenant's own clock."""
    def run(tenant_id: str) -> int:
        with database.transaction() as session:
            return work(session, tenant_id, service.now_for(session, tenant_id))

    return for_each_tenant(database, query, run, job, logger=log)


def expire_orders(database: Database) -> int:
    return _each(database, select(Order.tenant_id).where(Order.status == "pending",
                                                         Order.expires_at.is_not(None)),
                 lambda s, t, now: service.expire_orders(s, t, now, ACTOR), "order expiry")


def settle_tenant(database: Database, tenant_id: str) -> int:
    """Settle one tenant's due business dates, one date per transaction."""
    done = 0
    for _ in range(366):
        with database.transaction() as session:
            now = service.now_for(session, tenant_id)
            handled = settlement.settle_due(session, tenant_id, now, ACTOR)
        if not handled:
            break
        done += handled
    return done


def settle(database: Database) -> int:
    """Settle every tenant's due business dates, tenant by tenant in tenant id order."""
    return for_each_tenant(database, select(CollectionSettings.tenant_id),
                           lambda tenant_id: settle_tenant(database, tenant_id),
                           "collection settlement", logger=log)


def expire_subsidies(database: Database) -> int:
    return _each(database, select(SubsidyGrant.tenant_id).where(SubsidyGrant.status == "funded"),
                 lambda s, t, now: canteen.expire_grants(s, t, now, ACTOR), "subsidy expiry")


def dunning(database: Database) -> int:
    return _each(database, select(Bill.tenant_id).where(Bill.status.in_(BILL_UNPAID),
                                                        Bill.dunning_due_on.is_not(None)),
                 lambda s, t, now: park.run_dunning(s, t, now, ACTOR), "dunning")


def expire_mandates(database: Database) -> int:
    return _each(database, select(Mandate.tenant_id).where(Mandate.status == "active"),
                 lambda s, t, now: service.expire_mandates(s, t, now, ACTOR), "mandate expiry")


def register() -> None:
    register_job("collection.expire_orders", expire_orders, interval=5.0)
    register_job("collection.settle", settle, interval=10.0)
    register_job("collection.subsidy_expiry", expire_subsidies, interval=30.0)
    register_job("collection.dunning", dunning, interval=30.0)
    register_job("collection.mandate_expiry", expire_mandates, interval=60.0)
