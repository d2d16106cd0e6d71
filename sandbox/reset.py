"""Reset a sandbox tenant: delete its business data and seed it again.

Generic over the schema: every table with a `tenant_id` column is cleared for the tenant, in
reverse dependency order; a child table without `tenant_id` is cleared through its foreign key.
The evidence log and the events history are append-only and never deleted; the tenant's
partner, clients and configuration are kept: webhook endpoints, the e-government portal profile
(its registered origins, which return URLs and framing depend on) and the sandbox regulator with
its clients (`sandbox.regulators`; the regulator's recognition is bank configuration about a
partner, not tenant data). The answers kept for the clients' `Idempotency-Key`s, the sandbox
regulator's clients' too, are forgotten: they name data that no longer exists, so a request sent
again after a reset runs against the new seed instead of replaying a resource that is gone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, or_, select
from sqlalchemy.orm import Session

from gateway.db import Base
from gateway.idempotency import IdempotencyRecord
from gateway.oauth.models import OAuthClient
from gateway.tenancy import Tenant, reset_clock, sandbox_regulator_id
from sandbox.seed import seed_tenant

KEEP = {"tenants", "partners", "oauth_clients", "events", "evidence_entries", "evidence_tiles",
        "evidence_checkpoints", "evidence_state", "idempotency_keys", "revoked_tokens",
        "used_nonces", "egov_portals"}
KEEP_PREFIXES = ("webhook_", "partner_", "operator", "usage_", "console_")


def _kept(table: Table) -> bool:
    return table.name in KEEP or table.name.startswith(KEEP_PREFIXES)


def clear_tenant(session: Session, tenant_id: str) -> int:
    """Delete every business row of a tenant; returns the number of rows deleted."""
    deleted = 0
    for table in reversed(Base.metadata.sorted_tables):
        if _kept(table):
            continue
        if "tenant_id" in table.c:
            result = session.execute(delete(table).where(table.c.tenant_id == tenant_id))
            deleted += int(getattr(result, "rowcount", 0) or 0)
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table
            if "tenant_id" in parent.c and not _kept(parent):
                owned = select(fk.column).where(parent.c.tenant_id == tenant_id)
                result = session.execute(delete(table).where(fk.parent.in_(owned)))
                deleted += int(getattr(result, "rowcount", 0) or 0)
    session.flush()
    return deleted


def forget_idempotency_keys(session: Session, tenant_id: str) -> int:
    """The completed keys of the tenant's clients and of its sandbox regulator's, whose
    decisions were about the tenant's data (a key still in progress, as the reset's own is, is
    left to its request)."""
    clients = select(OAuthClient.id).where(or_(
        OAuthClient.tenant_id == tenant_id,
        OAuthClient.partner_id == sandbox_regulator_id(session, tenant_id)))
    result = session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.client_id.in_(clients), IdempotencyRecord.state == "completed"))
    return int(getattr(result, "rowcount", 0) or 0)


def reset_sandbox(session: Session, tenant_id: str) -> tuple[int, dict[str, Any]]:
    """Clear a tenant's business data, put its clock back on real time and seed it again.

    The tenant's row is locked first: two resets at once would otherwise both seed the same
    (deterministic) ids, and the second would fail on them. `FOR NO KEY UPDATE` (key_share):
    the tenant's other calls insert rows referring to the tenant meanwhile, and their foreign
    key checks must not wait for the reset."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id)
                    .with_for_update(key_share=True))
    deleted = clear_tenant(session, tenant_id) + forget_idempotency_keys(session, tenant_id)
    reset_clock(session, tenant_id)
    return deleted, seed_tenant(session, tenant_id)
