"""Request and response bodies of webhook endpoints, events and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPES_EXAMPLE = ["payroll_batch.*", "payables_certificate.transferred"]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, examples=["https://hooks.acme.example/quanlian"],
                     description="https, public addresses only in production")
    event_types: list[str] = Field(min_length=1, max_length=50, examples=[EVENT_TYPES_EXAMPLE],
                                   description="`resource.action`, `resource.*` or `*`")
    description: str | None = Field(None, max_length=300)


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, max_length=2000)
    event_types: list[str] | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=300)
    status: Literal["enabled", "disabled"] | None = None


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    status: Literal["enabled", "disabled", "deleted"]
    disabled_reason: str | None
    environment: str
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="Standard Webhooks signing secret (`whsec_…`); shown once")


class EndpointList(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class EventResource(BaseModel):
    type: str = Field(description="The kind of resource the event is about, e.g. `transfer`")
    id: str


class EventOut(BaseModel):
    """The same document a webhook delivers as its body."""

    id: str
    type: str
    timestamp: datetime = Field(description="When the event happened (RFC 3339)")
    environment: Literal["sandbox", "production"]
    resource: EventResource
    data: dict[str, Any] = Field(description="The resource as its own GET shows it, at the "
                                             "time of the event")


class EventList(BaseModel):
    data: list[EventOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    number: int
    attempted_at: datetime
    trigger: Literal["schedule", "manual"]
    outcome: Literal["succeeded", "failed"]
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None = Field(description="First 1 KB of the response body")
    request_headers: dict[str, str] = Field(description="Headers sent (signature omitted)")


class DeliveryOut(BaseModel):
    id: str = Field(description="Also the `webhook-id` header: the same on every attempt")
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="The body that is sent")
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None
