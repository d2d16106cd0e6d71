"""`GET /v1/me`: the calling client, its partner, environment and granted scopes."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Depends
from pydantic import BaseModel, Field

from gateway.auth import authenticate
from gateway.clock import Timestamp, to_rfc3339
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
    token_expires_at: Timestamp = Field(
        description="When the access token of this call expires (its `exp`), RFC 3339 in UTC.",
        examples=["2026-11-02T02:10:00Z"], json_schema_extra={"format": "date-time"})


@router.get("/me", summary="The calling client", response_model=Me)
async def me(principal: Principal = Depends(authenticate)) -> Me:
    return Me(client_id=principal.client_id, partner_id=principal.partner_id,
              tenant_id=principal.tenant_id, environment=principal.environment,
              scopes=sorted(principal.scopes),
              token_expires_at=to_rfc3339(datetime.fromtimestamp(principal.expires_at, UTC)))
