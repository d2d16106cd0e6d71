"""Applications (the way in) and the partner's own profile.

Applying creates the partner (status `submitted`), its application and, at once, a sandbox
with credentials; production needs the maker-checker approval of partners.workflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from gateway.ids import new_id
from gateway.oauth.clients import IssuedClient, create_client
from gateway.oauth.models import OAuthClient
from gateway.oauth.scopes import PARTNER_SCOPES
from gateway.tenancy import Partner, Principal, Tenant, clock_for, create_partner, ensure_tenant
from partners.masking import mask_email, mask_name, mask_phone
from partners.models import PartnerApplication
from partners.schemas import ApplicationIn
from partners.workflow import get_partner, record_submission


@dataclass
class Applied:
    application: PartnerApplication
    partner: Partner
    sandbox_tenant_id: str
    issued: IssuedClient


def _provision_sandbox(session: Session, partner: Partner) -> tuple[str, IssuedClient]:
    try:
        from sandbox.provision import provision_sandbox
    except ImportError:  # the sandbox package is optional: plain credentials then
        tenant = ensure_tenant(session, partner.id, "sandbox")
        issued = create_client(session, partner=partner, environment="sandbox",
                               name=partner.name, scopes=list(PARTNER_SCOPES), with_secret=True,
                               require_dpop=False, rate_plan="sandbox")
        return tenant.id, issued
    sandbox = provision_sandbox(session, partner)
    return sandbox.tenant_id, sandbox.issued


def apply(session: Session, data: ApplicationIn, *, source: str) -> Applied:
    """Record an application and give the applicant a sandbox with credentials right away."""
    partner = create_partner(session, name=data.legal_name, uscc=data.uscc,
                             partner_type=data.partner_type, status="submitted")
    tenant_id, issued = _provision_sandbox(session, partner)
    now = clock_for(session, tenant_id).now()
    application = PartnerApplication(
        id=new_id("papp"), tenant_id=tenant_id, partner_id=partner.id,
        legal_name=data.legal_name, uscc=data.uscc, partner_type=data.partner_type,
        contacts=json.dumps([c.model_dump() for c in data.contacts], ensure_ascii=False),
        requested_products=list(data.requested_products), website=data.website,
        description=data.description, source=source, submitted_at=now, reviewed_by=None,
        reviewed_at=None, decided_by=None, decided_at=None, decision=None,
        decision_reason=None)
    session.add(application)
    session.flush()
    record_submission(session, partner, actor="applicant",
                      reason=f"application {application.id} submitted ({source})")
    return Applied(application, partner, tenant_id, issued)


def contacts_of(application: PartnerApplication) -> list[dict[str, Any]]:
    """The contacts in clear (for the console, which shows them masked by default)."""
    return list(json.loads(application.contacts or "[]"))


def masked_contacts(application: PartnerApplication) -> list[dict[str, str]]:
    return [{"name": mask_name(c.get("name", "")), "email": mask_email(c.get("email", "")),
             "phone": mask_phone(c.get("phone", "")), "role": c.get("role", "business")}
            for c in contacts_of(application)]


def application_of(session: Session, partner_id: str) -> PartnerApplication | None:
    return session.scalars(select(PartnerApplication)
                           .where(PartnerApplication.partner_id == partner_id)).first()


def same_uscc(session: Session, application: PartnerApplication) -> list[PartnerApplication]:
    """Other applications with the same credit code (shown to reviewers: duplicates, squatters)."""
    return list(session.scalars(select(PartnerApplication).where(
        PartnerApplication.uscc == application.uscc, PartnerApplication.id != application.id)))


def applications_query(*, statuses: list[str] | None,
                       newest_first: bool = False) -> Select[tuple[PartnerApplication, Partner]]:
    """The console's queue: applications with their partner, oldest first (the order they are
    worked in) unless asked for the newest first."""
    order = ((PartnerApplication.submitted_at.desc(), PartnerApplication.id.desc()) if newest_first
             else (PartnerApplication.submitted_at, PartnerApplication.id))
    query = (select(PartnerApplication, Partner)
             .join(Partner, Partner.id == PartnerApplication.partner_id).order_by(*order))
    if statuses:
        query = query.where(Partner.status.in_(statuses))
    return query


def partners_query(*, status: str | None = None,
                   query_text: str | None = None) -> Select[tuple[Partner]]:
    """The console's partner list, newest first."""
    query = (select(Partner).where(Partner.is_operations.is_(False))
             .order_by(Partner.created_at.desc(), Partner.id.desc()))
    if status:
        query = query.where(Partner.status == status)
    text = (query_text or "").strip()
    if text:
        # autoescape: `%` and `_` typed in the search box are literal characters, not wildcards.
        query = query.where(Partner.name.contains(text, autoescape=True)
                            | Partner.uscc.contains(text, autoescape=True) | (Partner.id == text))
    return query


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Partner.status, func.count()).where(
        Partner.is_operations.is_(False)).group_by(Partner.status))
    return {status: int(count) for status, count in rows}


def _environment_status(partner: Partner, environment: str, tenant: Tenant | None) -> str:
    if partner.status == "offboarded":
        return "unavailable"
    if partner.status == "suspended":
        return "suspended" if environment == "production" else "available"
    if environment == "sandbox":
        return "available"
    if partner.status == "active":
        return "available"
    if partner.status in ("submitted", "in_review", "approved"):
        return "pending_approval"
    return "unavailable"


def profile(session: Session, principal: Principal,
            plans: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """GET /v1/partner: who the caller is, what it may use, and its limits (`plans`: the
    configured rate plans)."""
    partner = get_partner(session, principal.partner_id)
    application = application_of(session, partner.id)
    tenants = {t.environment: t for t in session.scalars(
        select(Tenant).where(Tenant.partner_id == partner.id))}
    client = session.get(OAuthClient, principal.client_id)
    plan = client.rate_plan if client is not None else principal.rate_plan
    per_second, per_day = plans.get(plan, plans.get("standard", (0, 0)))
    return {
        "id": partner.id, "name": partner.name, "uscc": partner.uscc,
        "partner_type": partner.partner_type, "status": partner.status,
        "products": list(application.requested_products) if application else [],
        "environments": [
            {"environment": env, "tenant_id": tenants[env].id if env in tenants else None,
             "status": _environment_status(partner, env, tenants.get(env))}
            for env in ("sandbox", "production")],
        "limits": {"rate_plan": plan, "requests_per_second": per_second,
                   "requests_per_day": per_day},
        "client_id": principal.client_id,
        "created_at": partner.created_at,
    }
