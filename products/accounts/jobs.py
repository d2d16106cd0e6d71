"""The ledger's scheduled work: sandbox transfers that stay pending, then fail, on the clock."""

from __future__ import annotations

from sqlalchemy import select

from gateway.db import Database
from gateway.jobs import register_job
from products.accounts.models import Transfer
from products.accounts.service import resolve_due_transfers


def resolve_pending(database: Database) -> int:
    """For every tenant with pending transfers, resolve those due on that tenant's clock."""
    with database.transaction() as session:
        tenants = list(session.scalars(select(Transfer.tenant_id)
                                       .where(Transfer.status == "pending").distinct()))
    done = 0
    for tenant_id in tenants:
        with database.transaction() as session:
            done += len(resolve_due_transfers(session, tenant_id))
    return done


register_job("accounts.resolve_pending_transfers", resolve_pending, interval=1.0)
