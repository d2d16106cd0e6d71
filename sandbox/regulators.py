"""The sandbox's own regulator: supervision tried self-serve.

In production a regulator is a government partner the bank recognises (`POST
/v1/operations/egov/regulators`), and its users call with their own clients holding
`egov:supervise`; a developer can do neither. So each sandbox tenant may have one regulator of its
own, made on first use: a partner of type `sandbox_regulator` whose id is derived from the tenant
(`gateway.tenancy.sandbox_regulator_id`), recognised for every kind of escrow scheme, and for this
tenant only (`gateway.tenancy.regulator_serves`: no other tenant, sandbox or production, may name
it in a scheme, so it sees this tenant's schemes and nothing else). Every call issues one more
client of it: one regulator user, so that a scheme needing two approvals can be tried with two.

Payroll supervision is not offered: a payroll regulator sees the wage projects of its regions in
every tenant of its environment (`products.payroll.wage`), so a sandbox regulator granted a region
would see other developers' sandbox projects.

A reset keeps the regulator, its recognition and its clients (the partner, its clients and the
recognition are not tenant data), as it keeps the tenant's own credentials.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.oauth.clients import IssuedClient, create_client
from gateway.oauth.models import OAuthClient
from gateway.tenancy import Partner, Tenant, ensure_sandbox_regulator
from products.egov import escrow
from products.egov.models import EscrowRegulator

SCOPES = ("egov:supervise",)


@dataclass
class RegulatorCredentials:
    partner: Partner
    recognition: EscrowRegulator
    created: bool
    issued: IssuedClient


def issue_regulator_client(session: Session, tenant_id: str, *, actor: str,
                           name: str | None = None) -> RegulatorCredentials:
    """The tenant's sandbox regulator (made and recognised on first use) and a new client of it.

    The tenant's row is locked as a reset locks it (`FOR NO KEY UPDATE`): two first calls at
    once cannot both make the regulator, and a reset does not run in between."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id)
                    .with_for_update(key_share=True))
    partner, new_partner = ensure_sandbox_regulator(session, tenant_id)
    recognition, recognised = escrow.recognise_sandbox_regulator(
        session, partner_id=partner.id, tenant_id=tenant_id, actor=actor)
    users = session.scalar(select(func.count()).select_from(OAuthClient)
                           .where(OAuthClient.partner_id == partner.id)) or 0
    issued = create_client(session, partner=partner, environment="sandbox",
                           name=name or f"监管用户 {users + 1} (regulator user)", scopes=list(SCOPES),
                           with_secret=True, require_dpop=False, rate_plan="sandbox")
    return RegulatorCredentials(partner=partner, recognition=recognition,
                                created=new_partner or recognised, issued=issued)
