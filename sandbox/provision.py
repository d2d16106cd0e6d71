"""Provisioning a partner's sandbox: tenant, credentials and seeded data, at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gateway.oauth.clients import IssuedClient, create_client
from gateway.oauth.scopes import PARTNER_SCOPES
from gateway.tenancy import Partner, ensure_tenant
from sandbox.seed import seed_tenant


@dataclass
class Sandbox:
    tenant_id: str
    issued: IssuedClient
    seeded: dict[str, Any]


def provision_sandbox(session: Session, partner: Partner, *, jwks: dict[str, Any] | None = None,
                      seed: int | None = None) -> Sandbox:
    """A seeded sandbox tenant and a client holding every product scope.

    The client authenticates with `client_secret_basic`, and with `private_key_jwt` too when a
    JWKS is given. DPoP is optional in the sandbox.
    """
    tenant = ensure_tenant(session, partner.id, "sandbox")
    issued = create_client(session, partner=partner, environment="sandbox", name=partner.name,
                           scopes=list(PARTNER_SCOPES), jwks=jwks, with_secret=True,
                           require_dpop=False, rate_plan="sandbox")
    seeded = seed_tenant(session, tenant.id, seed)
    return Sandbox(tenant_id=tenant.id, issued=issued, seeded=seeded)
