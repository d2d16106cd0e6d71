"""Webhook endpoints and what was delivered to them: the partner's self-service rules.

URLs follow gateway.oauth.jwks_fetch.validate_url_setting: https and public addresses only in
production; in the sandbox private, loopback and link-local addresses are accepted only when
QUANLIAN_WEBHOOK_ALLOW_LOOPBACK=true. The same check runs again at send time (DNS may change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.clock import to_rfc3339
from gateway.errors import ValidationFailed
from gateway.event_types import EVENT_TYPES, PARTNER_EVENT_TYPES
from gateway.events import Event, publish
from gateway.ids import new_id
from gateway.oauth.jwks_fetch import validate_url_setting
from gateway.pagination import page
from gateway.tenancy import clock_for
from partners.errors import (
    DeliveryNotFound,
    EndpointDisabled,
    EndpointNotFound,
    EventNotFound,
    TooManyEndpoints,
)
from partners.settings import get_partner_settings
from partners.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.webhooks.signing import new_secret

MAX_ENDPOINTS = 20
ROTATION_GRACE = timedelta(hours=24)
_EVENT_TYPE = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$")


@dataclass(frozen=True)
class Owner:
    """Whose endpoints: a partner's tenant in one environment, and who acts."""

    tenant_id: str
    partner_id: str
    environment: str
    actor: str


def subscribed(patterns: list[str], event_type: str) -> bool:
    """`*` matches every type, `payroll_batch.*` every type under `payroll_batch.`."""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def _malformed(patterns: list[str]) -> list[str]:
    """The patterns that are neither `resource.action`, `resource.*` nor `*`."""
    return [t for t in patterns if not _EVENT_TYPE.match(t) or len(t) > 80]


def _matching(pattern: str) -> list[str]:
    """The catalogued event types a well-formed pattern matches (none: a typo)."""
    return sorted(known for known in EVENT_TYPES if subscribed([pattern], known))


def check_event_types(types: list[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in types})
    if not cleaned:
        raise ValidationFailed("Subscribe to at least one event type (`*` for all).",
                               code="invalid_event_types")
    bad = _malformed(cleaned)
    if bad:
        raise ValidationFailed(f"Not event types: {', '.join(bad)} (use `resource.action`, "
                               "`resource.*` or `*`).", code="invalid_event_types")
    # A pattern nothing in the catalogue matches is a typo that would deliver nothing, ever.
    unknown = [t for t in cleaned if not _matching(t)]
    if unknown:
        raise ValidationFailed(
            f"No event type is {' or '.join(unknown)}; `known_types` lists them (or subscribe "
            "to `resource.*` or `*`).", code="unknown_event_types",
            extra={"known_types": sorted(PARTNER_EVENT_TYPES)})
    return cleaned


def event_filter(pattern: str) -> list[str] | None:
    """`GET /v1/events?type=`: what a webhook subscription accepts (`resource.action`,
    `resource.*`, `*`), checked as it is there. The catalogued types it matches, or None for
    `*` (every event)."""
    where = "query.type"
    if _malformed([pattern]):
        raise ValidationFailed(
            f"Not an event type: {pattern[:80]!r} (use `resource.action`, `resource.*` or `*`).",
            code="invalid_event_types",
            errors=[{"field": where, "message": "not `resource.action`, `resource.*` or `*`",
                     "code": "invalid_event_types"}])
    if pattern == "*":
        return None
    matching = _matching(pattern)
    if not matching:
        raise ValidationFailed(
            f"No event type is {pattern}; `known_types` lists them (or filter by "
            "`resource.*` or `*`).", code="unknown_event_types",
            errors=[{"field": where, "message": "no such event type", "code": "unknown_event_types"}],
            extra={"known_types": sorted(PARTNER_EVENT_TYPES)})
    return matching


def check_url(url: str, *, environment: str, allow_loopback: bool) -> str:
    url = url.strip()
    if len(url) > 2000:
        raise ValidationFailed("The URL is longer than 2000 characters.", code="unsafe_url")
    if "#" in url or "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise ValidationFailed("URL refused: no fragments or credentials in webhook URLs.",
                               code="unsafe_url")
    if not url.lower().startswith(("https://", "http://")):
        raise ValidationFailed("URL refused: the URL must be absolute http(s).", code="unsafe_url")
    production = environment == "production"
    validate_url_setting(url, production=production, allow_loopback=allow_loopback)
    return url


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.id, "url": endpoint.url, "description": endpoint.description,
            "event_types": list(endpoint.event_types), "status": endpoint.status,
            "disabled_reason": endpoint.disabled_reason, "environment": endpoint.environment,
            "created_at": to_rfc3339(endpoint.created_at),
            "updated_at": to_rfc3339(endpoint.updated_at)}


def _publish(session: Session, endpoint: WebhookEndpoint, type_: str, actor: str,
             at: datetime) -> Event:
    return publish(session, tenant_id=endpoint.tenant_id, type=type_,
                   resource_type="webhook_endpoint", resource_id=endpoint.id,
                   data=endpoint_view(endpoint), actor=actor, at=at)


def create_endpoint(session: Session, owner: Owner, *, url: str, event_types: list[str],
                    description: str | None, allow_loopback: bool) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (shown once)."""
    url = check_url(url, environment=owner.environment, allow_loopback=allow_loopback)
    types = check_event_types(event_types)
    count = len(list(session.scalars(select(WebhookEndpoint.id).where(
        WebhookEndpoint.tenant_id == owner.tenant_id, WebhookEndpoint.status != "deleted"))))
    if count >= MAX_ENDPOINTS:
        raise TooManyEndpoints(f"At most {MAX_ENDPOINTS} webhook endpoints per environment.")
    now = clock_for(session, owner.tenant_id).now()
    secret = new_secret()
    endpoint = WebhookEndpoint(id=new_id("we"), tenant_id=owner.tenant_id,
                               partner_id=owner.partner_id, environment=owner.environment,
                               url=url, description=description, event_types=types,
                               status="enabled", disabled_reason=None, secret=secret,
                               previous_secret=None, previous_secret_expires_at=None,
                               failing_since=None, created_at=now, updated_at=now)
    session.add(endpoint)
    session.flush()
    _publish(session, endpoint, "webhook_endpoint.created", owner.actor, now)
    return endpoint, secret


def get_endpoint(session: Session, tenant_id: str, endpoint_id: str, *,
                 lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                          WebhookEndpoint.tenant_id == tenant_id,
                                          WebhookEndpoint.status != "deleted")
    if lock:
        query = query.with_for_update()
    endpoint = session.scalars(query).first()
    if endpoint is None:
        raise EndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    return endpoint


def list_endpoints(session: Session, tenant_id: str, *, limit: int,
                   cursor: str | None) -> tuple[list[WebhookEndpoint], str | None]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id,
                                          WebhookEndpoint.status != "deleted")
    return page(session, query, WebhookEndpoint.id, limit=limit, cursor=cursor,
                newest_first=False)


def _fail_pending(session: Session, endpoint_id: str, reason: str, at: datetime) -> None:
    session.execute(update(WebhookDelivery)
                    .where(WebhookDelivery.endpoint_id == endpoint_id,
                           WebhookDelivery.status == "pending")
                    .values(status="failed", next_attempt_at=None, completed_at=at,
                            last_error=reason, lease_until=None, lease_owner=None))


def update_endpoint(session: Session, owner: Owner, endpoint_id: str, *,
                    changes: dict[str, Any], allow_loopback: bool) -> WebhookEndpoint:
    """Change the URL, event types, description or status (enabled/disabled)."""
    endpoint = get_endpoint(session, owner.tenant_id, endpoint_id, lock=True)
    now = clock_for(session, owner.tenant_id).now()
    if "url" in changes and changes["url"] is not None:
        endpoint.url = check_url(changes["url"], environment=endpoint.environment,
                                 allow_loopback=allow_loopback)
    if "event_types" in changes and changes["event_types"] is not None:
        endpoint.event_types = check_event_types(changes["event_types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    status = changes.get("status")
    if status is not None:
        if status not in ("enabled", "disabled"):
            raise ValidationFailed("status is enabled or disabled.", code="invalid_status")
        if status == "enabled" and endpoint.status != "enabled":
            endpoint.status, endpoint.disabled_reason, endpoint.failing_since = "enabled", None, None
        elif status == "disabled" and endpoint.status != "disabled":
            endpoint.status, endpoint.disabled_reason = "disabled", "disabled_by_partner"
            _fail_pending(session, endpoint.id, "endpoint disabled", now)
    endpoint.updated_at = now
    session.flush()
    _publish(session, endpoint, "webhook_endpoint.updated", owner.actor, now)
    return endpoint


def delete_endpoint(session: Session, owner: Owner, endpoint_id: str) -> WebhookEndpoint:
    """Delete an endpoint (kept as `deleted` so that its delivery history stays evidence)."""
    endpoint = get_endpoint(session, owner.tenant_id, endpoint_id, lock=True)
    now = clock_for(session, owner.tenant_id).now()
    endpoint.status, endpoint.updated_at = "deleted", now
    _fail_pending(session, endpoint.id, "endpoint deleted", now)
    session.flush()
    _publish(session, endpoint, "webhook_endpoint.deleted", owner.actor, now)
    return endpoint


def rotate_endpoint_secret(session: Session, owner: Owner, endpoint_id: str) -> tuple[WebhookEndpoint, str]:
    """A new signing secret. For 24 hours deliveries carry a second signature made with the
    old secret, so a receiver can switch over without losing messages."""
    endpoint = get_endpoint(session, owner.tenant_id, endpoint_id, lock=True)
    now = clock_for(session, owner.tenant_id).now()
    secret = new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_GRACE
    endpoint.secret = secret
    endpoint.updated_at = now
    session.flush()
    _publish(session, endpoint, "webhook_endpoint.secret_rotated", owner.actor, now)
    return endpoint, secret


def disable_partner_endpoints(session: Session, partner_id: str, *, reason: str) -> int:
    """Disable every endpoint of a partner (offboarding); pending deliveries fail."""
    endpoints = list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.partner_id == partner_id, WebhookEndpoint.status == "enabled")))
    for endpoint in endpoints:
        now = clock_for(session, endpoint.tenant_id).now()
        endpoint.status, endpoint.disabled_reason, endpoint.updated_at = "disabled", reason, now
        _fail_pending(session, endpoint.id, reason.replace("_", " "), now)
        _publish(session, endpoint, "webhook_endpoint.disabled", "system", now)
    session.flush()
    return len(endpoints)


# --- events and deliveries ----------------------------------------------------------------

def event_view(event: Event, environment: str) -> dict[str, Any]:
    """An event as partners see it, in `GET /v1/events` and as a webhook's body alike (one
    handler serves both, e.g. to catch up on missed deliveries): Standard Webhooks' `type`,
    `timestamp` and `data`, plus ids."""
    return {"id": event.id, "type": event.type, "timestamp": to_rfc3339(event.created_at),
            "environment": environment,
            "resource": {"type": event.resource_type, "id": event.resource_id},
            "data": event.data}


def list_events(session: Session, tenant_id: str, *, type_: str | None, limit: int,
                cursor: str | None) -> tuple[list[Event], str | None]:
    query = select(Event).where(Event.tenant_id == tenant_id)
    if type_:
        types = event_filter(type_)
        if types is not None:
            query = query.where(Event.type.in_(types))
    return page(session, query, Event.id, limit=limit, cursor=cursor)


def get_event(session: Session, tenant_id: str, event_id: str) -> Event:
    event = session.scalars(select(Event).where(Event.id == event_id,
                                                Event.tenant_id == tenant_id)).first()
    if event is None:
        raise EventNotFound(f"No event {event_id}.")
    return event


def list_deliveries(session: Session, tenant_id: str, endpoint_id: str, *, status: str | None,
                    limit: int, cursor: str | None) -> tuple[list[WebhookDelivery], str | None]:
    endpoint = get_endpoint(session, tenant_id, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id,
                                          WebhookDelivery.tenant_id == tenant_id)
    if status:
        if status not in ("pending", "succeeded", "failed"):
            raise ValidationFailed("status is pending, succeeded or failed.",
                                   code="invalid_status")
        query = query.where(WebhookDelivery.status == status)
    return page(session, query, WebhookDelivery.id, limit=limit, cursor=cursor)


def get_delivery(session: Session, tenant_id: str, endpoint_id: str, delivery_id: str, *,
                 lock: bool = False) -> WebhookDelivery:
    query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.endpoint_id == endpoint_id,
                                          WebhookDelivery.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    delivery = session.scalars(query).first()
    if delivery is None:
        raise DeliveryNotFound(f"No delivery {delivery_id} for endpoint {endpoint_id}.")
    return delivery


def attempts_of(session: Session, delivery_id: str) -> list[WebhookAttempt]:
    return list(session.scalars(select(WebhookAttempt)
                                .where(WebhookAttempt.delivery_id == delivery_id)
                                .order_by(WebhookAttempt.number)))


def retry_delivery(session: Session, owner: Owner, endpoint_id: str,
                   delivery_id: str) -> WebhookDelivery:
    """Replay a delivery now (same `webhook-id`, so receivers can de-duplicate). A finished
    delivery gets one more attempt; a pending one is simply moved up."""
    endpoint = get_endpoint(session, owner.tenant_id, endpoint_id)
    if endpoint.status != "enabled":
        raise EndpointDisabled("Enable the endpoint before retrying its deliveries.")
    delivery = get_delivery(session, owner.tenant_id, endpoint.id, delivery_id, lock=True)
    now = clock_for(session, owner.tenant_id).now()
    if delivery.status != "pending":
        delivery.status = "pending"
        delivery.give_up_at = now
        delivery.completed_at = None
    delivery.next_attempt_at = now
    delivery.manual_retry = True
    session.flush()
    publish(session, tenant_id=owner.tenant_id, type="webhook_delivery.retry_requested",
            resource_type="webhook_delivery", resource_id=delivery.id,
            data={"id": delivery.id, "endpoint_id": endpoint.id, "event_id": delivery.event_id},
            actor=owner.actor, at=now)
    return delivery


def retry_window() -> timedelta:
    return timedelta(hours=get_partner_settings().webhook_retry_hours)
