"""`GET /v1/me`: the calling client, its partner, environment and granted scopes."""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel

from gateway.auth import authenticate
from gateway.errors import error_responses
from gateway.routing import Router
from gateway.tenancy import Principal

router = Router(prefix="/v1", tags=["me"], responses=error_responses(400, 401, 429))


class Me(BaseModel):
    client_id: str
    partner_id: str
    tenant_id: str
    environment: str
    scopes: list[str]
    token_expires_at: int


@router.get("/me", summary="The calling client", response_model=Me)
async def me(principal: Principal = Depends(authenticate)) -> Me:
    return Me(client_id=principal.client_id, partner_id=principal.partner_id,
              tenant_id=principal.tenant_id, environment=principal.environment,
              scopes=sorted(principal.scopes), token_expires_at=principal.expires_at)
