"""The bank's own partner and tenant, under which operators' actions are recorded.

Onboarding decisions (an application reviewed, a partner approved, suspended, a production
client issued) are acts of the bank, so their events and evidence entries live in one bank
"operations" tenant: auditors read the whole trail in one place, and a partner's own
tenants only carry events about the partner's own resources.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.events import Event, publish
from gateway.tenancy import Partner, clock_for, ensure_tenant

# A fixed id, so that every process finds (or creates) the same row.
BANK_PARTNER_ID = "ptn_" + "0" * 26
BANK_PARTNER_NAME = "Quanlian operations (the bank)"


def bank_tenant_id(session: Session) -> str:
    """The operations tenant (production environment of the bank's partner), created on first use."""
    if session.get(Partner, BANK_PARTNER_ID) is None:
        try:
            with session.begin_nested():
                session.add(Partner(id=BANK_PARTNER_ID, name=BANK_PARTNER_NAME, uscc=None,
                                    partner_type="bank", email=None, status="active",
                                    is_operations=True, rate_plan="unlimited",
                                    created_at=clock_module.utcnow()))
        except IntegrityError:
            pass  # another transaction created it first
    try:
        with session.begin_nested():
            tenant = ensure_tenant(session, BANK_PARTNER_ID, "production")
    except IntegrityError:
        tenant = ensure_tenant(session, BANK_PARTNER_ID, "production")
    return tenant.id


def publish_operations_event(session: Session, *, type: str, resource_type: str,
                             resource_id: str, data: dict[str, Any], actor: str) -> Event:
    """Publish an event of the bank's own (an operator's act) in the operations tenant."""
    tenant_id = bank_tenant_id(session)
    return publish(session, tenant_id=tenant_id, type=type, resource_type=resource_type,
                   resource_id=resource_id, data=data, actor=actor,
                   at=clock_for(session, tenant_id).now())
