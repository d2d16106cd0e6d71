"""Plain factories for accounts tests: tenants, accounts with owners, funded accounts."""

from __future__ import annotations

import random
import uuid
from typing import Any

from sqlalchemy.orm import Session

from gateway.identifiers import generate_resident_id, generate_uscc
from gateway.tenancy import create_partner, ensure_tenant
from products.accounts import service
from products.accounts.models import Account

_rng = random.Random(20261102)


def new_tenant(session: Session, environment: str = "production") -> str:
    partner = create_partner(session, name=f"Partner {uuid.uuid4().hex[:8]}", status="active")
    return ensure_tenant(session, partner.id, environment).id


def enterprise_account(session: Session, tenant_id: str, *, kind: str = "settlement",
                       name: str = "苏州恒达精密机械有限公司", **kwargs: Any) -> Account:
    return service.create_account(session, tenant_id, kind=kind, owner_type="enterprise",
                                  owner_name=name, owner_uscc=generate_uscc(_rng), **kwargs)


def person_account(session: Session, tenant_id: str, *, name: str = "张伟", **kwargs: Any) -> Account:
    return service.create_account(session, tenant_id, kind="settlement", owner_type="person",
                                  owner_name=name, owner_id_number=generate_resident_id(_rng),
                                  **kwargs)


def funded_account(session: Session, tenant_id: str, fen: int, **kwargs: Any) -> Account:
    account = enterprise_account(session, tenant_id, **kwargs)
    if fen:
        service.deposit(session, tenant_id, account.id, fen, journal_ref=f"seed:{account.id}")
    return account
