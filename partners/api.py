"""Partner API: applying (`POST /v1/partner-applications`, unauthenticated, rate limited per
address) and the partner's own profile (`GET /v1/partner`)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Response
from sqlalchemy.orm import Session

from gateway.auth import authenticate
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.ratelimit import rate_limit_public
from gateway.routing import Router
from gateway.tenancy import Principal
from partners import applications
from partners.schemas import ApplicationIn, ApplicationOut, PartnerProfile

router = Router(prefix="/v1", tags=["partners"], responses=error_responses(400, 429))


def application_body(applied: applications.Applied, issuer: str) -> dict[str, Any]:
    app_row, partner, issued = applied.application, applied.partner, applied.issued
    return {
        "id": app_row.id, "partner_id": partner.id, "status": partner.status,
        "legal_name": app_row.legal_name, "uscc": app_row.uscc,
        "partner_type": app_row.partner_type,
        "requested_products": list(app_row.requested_products),
        "contacts": applications.masked_contacts(app_row),
        "submitted_at": app_row.submitted_at,
        "sandbox": {"environment": "sandbox", "tenant_id": applied.sandbox_tenant_id,
                    "client_id": issued.client.id, "client_secret": issued.secret,
                    "scopes": issued.client.scopes.split(),
                    "token_endpoint": issuer.rstrip("/") + "/oauth/token"},
    }


@router.post("/partner-applications", summary="Apply to become a partner", status_code=201,
             response_model=ApplicationOut, responses=error_responses(422),
             dependencies=[Depends(rate_limit_public("partner_applications"))])
def submit_partner_application(body: ApplicationIn, request: Request, response: Response,
                               session: Session = Depends(get_session)) -> dict[str, Any]:
    """No credentials needed. The answer carries sandbox credentials (the secret is shown
    once); production access follows approval by two bank operators."""
    applied = applications.apply(session, body, source="api")
    response.headers["Cache-Control"] = "no-store"
    return application_body(applied, request.app.state.settings.issuer)


@router.get("/partner", summary="The calling partner: profile, products, environments, limits",
            response_model=PartnerProfile, responses=error_responses(401, 404))
def get_partner_profile(request: Request, principal: Principal = Depends(authenticate),
                        session: Session = Depends(get_session)) -> dict[str, Any]:
    return applications.profile(session, principal, request.app.state.settings.rate_plans)
