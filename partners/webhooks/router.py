"""`/v1/webhook-endpoints` and `/v1/events`: the partner manages its webhooks (scope
`webhooks:manage`) in the environment of its credentials."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Query, Request, Response
from sqlalchemy.orm import Session

from gateway.auth import require_scope
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.idempotency import idempotency
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal
from partners.webhooks import service
from partners.webhooks.delivery import payload
from partners.webhooks.models import WebhookDelivery
from partners.webhooks.schemas import (
    DeliveryDetail,
    DeliveryList,
    DeliveryOut,
    EndpointIn,
    EndpointList,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    EventList,
    EventOut,
)

router = Router(prefix="/v1", tags=["webhooks"],
                   responses=error_responses(400, 401, 403, 429))
manage = require_scope("webhooks:manage")
LIMIT = Query(20, ge=1, le=100, description="Page size (1-100)")
CURSOR = Query(None, max_length=MAX_CURSOR_LENGTH,
               description="`next_cursor` of the previous page")


def _owner(principal: Principal) -> service.Owner:
    return service.Owner(tenant_id=principal.tenant_id, partner_id=principal.partner_id,
                         environment=principal.environment, actor=principal.client_id)


def _allow_loopback(request: Request) -> bool:
    return bool(request.app.state.settings.webhook_allow_loopback)


def _delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.id, "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id, "event_type": delivery.event_type,
            "status": delivery.status, "attempts": delivery.attempts,
            "next_attempt_at": delivery.next_attempt_at,
            "last_status_code": delivery.last_status_code, "last_error": delivery.last_error,
            "created_at": delivery.created_at, "completed_at": delivery.completed_at}


@router.post("/webhook-endpoints", summary="Create a webhook endpoint", status_code=201,
             response_model=EndpointWithSecret, responses=error_responses(409, 422),
             dependencies=[Depends(idempotency())])
def create_webhook_endpoint(body: EndpointIn, request: Request,
                            principal: Principal = Depends(manage),
                            session: Session = Depends(get_session)) -> dict[str, Any]:
    endpoint, secret = service.create_endpoint(
        session, _owner(principal), url=body.url, event_types=body.event_types,
        description=body.description, allow_loopback=_allow_loopback(request))
    return service.endpoint_view(endpoint) | {"secret": secret}


@router.get("/webhook-endpoints", summary="List webhook endpoints", response_model=EndpointList,
            responses=error_responses(422))
def list_webhook_endpoints(limit: int = LIMIT, cursor: str | None = CURSOR,
                           principal: Principal = Depends(manage),
                           session: Session = Depends(get_session)) -> dict[str, Any]:
    rows, next_cursor = service.list_endpoints(session, principal.tenant_id, limit=limit,
                                               cursor=cursor)
    return {"data": [service.endpoint_view(e) for e in rows], "next_cursor": next_cursor}


@router.get("/webhook-endpoints/{endpoint_id}", summary="Get a webhook endpoint",
            response_model=EndpointOut, responses=error_responses(404))
def get_webhook_endpoint(endpoint_id: str, principal: Principal = Depends(manage),
                         session: Session = Depends(get_session)) -> dict[str, Any]:
    return service.endpoint_view(service.get_endpoint(session, principal.tenant_id, endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", summary="Update a webhook endpoint",
              response_model=EndpointOut, responses=error_responses(404, 422),
              dependencies=[Depends(idempotency())])
def update_webhook_endpoint(endpoint_id: str, body: EndpointPatch, request: Request,
                            principal: Principal = Depends(manage),
                            session: Session = Depends(get_session)) -> dict[str, Any]:
    endpoint = service.update_endpoint(session, _owner(principal), endpoint_id,
                                       changes=body.model_dump(exclude_unset=True),
                                       allow_loopback=_allow_loopback(request))
    return service.endpoint_view(endpoint)


@router.delete("/webhook-endpoints/{endpoint_id}", summary="Delete a webhook endpoint",
               status_code=204, response_class=Response, responses=error_responses(404))
def delete_webhook_endpoint(endpoint_id: str, principal: Principal = Depends(manage),
                            session: Session = Depends(get_session)) -> Response:
    service.delete_endpoint(session, _owner(principal), endpoint_id)
    return Response(status_code=204)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret",
             summary="Rotate an endpoint's signing secret", response_model=EndpointWithSecret,
             responses=error_responses(404), dependencies=[Depends(idempotency())])
def rotate_webhook_secret(endpoint_id: str, principal: Principal = Depends(manage),
                          session: Session = Depends(get_session)) -> dict[str, Any]:
    endpoint, secret = service.rotate_endpoint_secret(session, _owner(principal), endpoint_id)
    return service.endpoint_view(endpoint) | {"secret": secret}


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", summary="List deliveries",
            response_model=DeliveryList, responses=error_responses(404, 422))
def list_webhook_deliveries(endpoint_id: str, limit: int = LIMIT, cursor: str | None = CURSOR,
                            status: str | None = Query(None, description="pending, succeeded "
                                                                         "or failed"),
                            principal: Principal = Depends(manage),
                            session: Session = Depends(get_session)) -> dict[str, Any]:
    rows, next_cursor = service.list_deliveries(session, principal.tenant_id, endpoint_id,
                                                status=status, limit=limit, cursor=cursor)
    return {"data": [_delivery(d) for d in rows], "next_cursor": next_cursor}


@router.get("/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}",
            summary="Get a delivery with its attempts", response_model=DeliveryDetail,
            responses=error_responses(404))
def get_webhook_delivery(endpoint_id: str, delivery_id: str,
                         principal: Principal = Depends(manage),
                         session: Session = Depends(get_session)) -> dict[str, Any]:
    import json

    delivery = service.get_delivery(session, principal.tenant_id, endpoint_id, delivery_id)
    event = service.get_event(session, principal.tenant_id, delivery.event_id)
    attempts = service.attempts_of(session, delivery.id)
    return _delivery(delivery) | {
        "payload": json.loads(payload(event, principal.environment)),
        "attempt_log": [{"number": a.number, "attempted_at": a.attempted_at,
                         "trigger": a.trigger, "outcome": a.outcome,
                         "status_code": a.status_code, "latency_ms": a.latency_ms,
                         "error": a.error, "response_excerpt": a.response_excerpt,
                         "request_headers": a.request_headers} for a in attempts]}


@router.post("/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry",
             summary="Replay a delivery now", status_code=202, response_model=DeliveryOut,
             responses=error_responses(404, 409), dependencies=[Depends(idempotency())])
def retry_webhook_delivery(endpoint_id: str, delivery_id: str,
                           principal: Principal = Depends(manage),
                           session: Session = Depends(get_session)) -> dict[str, Any]:
    return _delivery(service.retry_delivery(session, _owner(principal), endpoint_id,
                                            delivery_id))


events_router = Router(prefix="/v1", tags=["events"],
                          responses=error_responses(400, 401, 403, 429))


@events_router.get("/events", summary="List events", response_model=EventList,
                   responses=error_responses(422))
def list_events(limit: int = LIMIT, cursor: str | None = CURSOR,
                type: str | None = Query(
                    None, max_length=80,
                    description="Only events of this type (`transfer.completed`), of one "
                                "resource (`transfer.*`) or all (`*`): what a webhook "
                                "subscription takes. An uncatalogued type is a 422 "
                                "(`unknown_event_types`, with `known_types`)."),
                principal: Principal = Depends(manage),
                session: Session = Depends(get_session)) -> dict[str, Any]:
    rows, next_cursor = service.list_events(session, principal.tenant_id, type_=type,
                                            limit=limit, cursor=cursor)
    return {"data": [service.event_view(e, principal.environment) for e in rows], "next_cursor": next_cursor}


@events_router.get("/events/{event_id}", summary="Get an event", response_model=EventOut,
                   responses=error_responses(404))
def get_event(event_id: str, principal: Principal = Depends(manage),
              session: Session = Depends(get_session)) -> dict[str, Any]:
    return service.event_view(service.get_event(session, principal.tenant_id, event_id),
                              principal.environment)
