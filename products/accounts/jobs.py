"""The ledger's scheduled work: sandbox transfers that stay pending, then fail, on the clock."""

from __future__ import annotations

import logging

from sqlalchemy import select

from gateway.db import Database
from gateway.jobs import for_each_tenant, register_job
from products.accounts.models import Transfer
from products.accounts.service import resolve_due_transfers

log = logging.getLogger("quanlian.accounts")


def resolve_pending(database: Database) -> int:
    """For every tenant with pending transfers, resolve those due on that tenant's clock (one
    transaction per tenant; a tenant whose run fails is left to the next run)."""
    def run(tenant_id: str) -> int:
        with database.transaction() as session:
            return len(resolve_due_transfers(session, tenant_id))

    return for_each_tenant(database, select(Transfer.tenant_id).where(Transfer.status == "pending"),
                           run, "pending transfer resolution", logger=log)


register_job("accounts.resolve_pending_transfers", resolve_pending, interval=1.0)
