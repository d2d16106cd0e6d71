"""Webhook delivery: the outbox (`events` rows with `dispatched = false`) fanned out into one
delivery per subscribed endpoint, then sent with Standard Webhooks signatures, at least once.

Two jobs run in `quanlian worker` (or the worker thread of `quanlian serve`):

* `webhooks.fan_out` claims undispatched events (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and,
  in the same short transaction, inserts their deliveries and marks them dispatched.
* `webhooks.deliver` claims due deliveries (`FOR UPDATE SKIP LOCKED`, then a lease written
  in that transaction so no other worker takes them while they are being sent), sends them
  outside any transaction, and records each attempt in its own transaction.

Failures are retried with exponential backoff and jitter (30 s doubling up to 8 h, ±20 %)
for `webhook_retry_hours` (72 h). An endpoint failing for that long is disabled and a
`webhook_endpoint.disabled` event tells the partner. Due times come from the tenant clock,
so a sandbox test clock drives retries; the signed `webhook-timestamp` is real time so that
receivers' replay windows work.

In production (and in the sandbox unless QUANLIAN_WEBHOOK_ALLOW_LOOPBACK=true) the host is
resolved at send time, every address must be public, and the connection goes to the checked
address (TLS still verifies the host name), so DNS rebinding cannot reach inside. Redirects
are never followed: a 3xx is a failed attempt.
"""

from __future__ import annotations

import json
import logging
import random
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.db import Database
from gateway.events import Event, publish
from gateway.ids import new_id
from gateway.oauth.jwks_fetch import UnsafeURL, pinned, tls_context
from gateway.tenancy import Partner, Tenant, clock_for
from partners.settings import PartnerSettings, get_partner_settings
from partners.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.webhooks.service import endpoint_view, event_view, subscribed
from partners.webhooks.signing import signature_header

log = logging.getLogger("quanlian.webhooks")

USER_AGENT = "Quanlian-Webhooks/1.0"
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=8)
JITTER = 0.2
EXCERPT_BYTES = 1024
PAUSED_PARTNER_STATES = ("suspended", "offboarded")


@dataclass
class WebhookConfig:
    """Delivery settings of one app (tests shorten the timeout)."""

    allow_loopback: bool = False
    timeout: float = 10.0
    retry_window: timedelta = timedelta(hours=72)
    batch_size: int = 100
    concurrency: int = 8
    transport: httpx.BaseTransport | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout * 3 + 60)

    @classmethod
    def from_settings(cls, allow_loopback: bool,
                      settings: PartnerSettings | None = None) -> WebhookConfig:
        s = settings or get_partner_settings()
        return cls(allow_loopback=allow_loopback, timeout=s.webhook_timeout_seconds,
                   retry_window=timedelta(hours=s.webhook_retry_hours),
                   batch_size=s.webhook_batch_size, concurrency=s.webhook_concurrency)


_configs: weakref.WeakKeyDictionary[Database, WebhookConfig] = weakref.WeakKeyDictionary()


def configure(database: Database, config: WebhookConfig) -> WebhookConfig:
    _configs[database] = config
    return config


def config_for(database: Database) -> WebhookConfig:
    config = _configs.get(database)
    if config is None:
        from gateway.settings import get_settings

        config = configure(database, WebhookConfig.from_settings(
            get_settings().webhook_allow_loopback))
    return config


def backoff(attempt: int, rng: random.Random | None = None) -> timedelta:
    """Delay after the `attempt`-th failure: 30 s doubling, capped at 8 h, with ±20 % jitter."""
    base = min(FIRST_RETRY * (2 ** max(0, attempt - 1)), MAX_RETRY)
    factor = 1 + JITTER * (2 * (rng or random).random() - 1)
    return base * factor


def _skip_locked(session: Session) -> dict[str, Any]:
    return {} if session.get_bind().dialect.name == "sqlite" else {"skip_locked": True}


# --- fan-out ------------------------------------------------------------------------------

def _ulid(value: str) -> str:
    """The ULID behind an id's prefix (`evt_01J...` -> `01J...`)."""
    return value.partition("_")[2]


def happened_after(event_id: str, endpoint_id: str) -> bool:
    """Whether the event was published after the endpoint was registered.

    Not by `created_at`: both are on the tenant's clock, which a sandbox reset moves back (an
    endpoint registered while the test clock was ahead would then hear of nothing until real
    time caught up). Ids are ULIDs of real time, stamped when the row is made: one process
    makes them strictly increasing across all prefixes (`gateway.ids.new_id`), and processes
    order them by their system clocks to the millisecond, as production times are. Neither
    events nor webhook endpoints are drawn from the sandbox seed's deterministic ids
    (`sandbox.seeded_ids`: both survive a reset), so their ids carry real time."""
    return _ulid(event_id) > _ulid(endpoint_id)


def fan_out(database: Database, batch: int = 500) -> int:
    """Turn undispatched events into deliveries. Returns the number of events handled."""
    config = config_for(database)
    with database.transaction() as session:
        query = (select(Event).where(Event.dispatched.is_(False))
                 .order_by(Event.created_at, Event.id).limit(batch))
        events = list(session.scalars(query.with_for_update(**_skip_locked(session))))
        if not events:
            return 0
        tenant_ids = {e.tenant_id for e in events}
        endpoints: dict[str, list[WebhookEndpoint]] = {}
        for endpoint in session.scalars(select(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.status == "enabled")):
            endpoints.setdefault(endpoint.tenant_id, []).append(endpoint)
        clocks = {t: clock_for(session, t).now() for t in tenant_ids if t in endpoints}
        for event in events:
            for endpoint in endpoints.get(event.tenant_id, ()):
                if not happened_after(event.id, endpoint.id):
                    continue  # the endpoint did not exist when this happened
                if not subscribed(endpoint.event_types, event.type):
                    continue
                now = clocks[event.tenant_id]
                session.add(WebhookDelivery(
                    id=new_id("msg"), tenant_id=event.tenant_id, endpoint_id=endpoint.id,
                    event_id=event.id, event_type=event.type, status="pending", attempts=0,
                    next_attempt_at=now, give_up_at=now + config.retry_window,
                    lease_until=None, lease_owner=None, manual_retry=False,
                    last_status_code=None, last_error=None, created_at=now, completed_at=None))
            event.dispatched = True
        session.flush()
        return len(events)


# --- claiming -----------------------------------------------------------------------------

@dataclass
class Claimed:
    """Everything needed to send one attempt, copied out of the claiming transaction."""

    delivery_id: str
    tenant_id: str
    endpoint_id: str
    environment: str
    url: str
    secrets: list[str]
    body: bytes
    number: int
    trigger: str
    owner: str


def payload(event: Event, environment: str) -> bytes:
    """The JSON body: the event as `GET /v1/events` shows it."""
    return json.dumps(event_view(event, environment), ensure_ascii=False,
                      separators=(",", ":"), sort_keys=True, default=str).encode()


def _due(session: Session, now: datetime, base_now: datetime, limit: int,
         tenant_id: str | None) -> list[WebhookDelivery]:
    query = (select(WebhookDelivery)
             .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
             .join(Partner, Partner.id == WebhookEndpoint.partner_id)
             .where(WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                    or_(WebhookDelivery.lease_until.is_(None),
                        WebhookDelivery.lease_until < base_now),
                    WebhookEndpoint.status == "enabled",
                    Partner.status.not_in(PAUSED_PARTNER_STATES))
             .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
             .limit(limit))
    if tenant_id is not None:
        query = query.where(WebhookDelivery.tenant_id == tenant_id)
    return list(session.scalars(query.with_for_update(of=WebhookDelivery,
                                                       **_skip_locked(session))))


def claim(database: Database, owner: str, limit: int) -> list[Claimed]:
    """Lease up to `limit` due deliveries to `owner` and return what to send."""
    config = config_for(database)
    with database.transaction() as session:
        base_now = clock_module.utcnow()
        # Test clocks only move forward, so whatever is due on the base clock is due for
        # every tenant; tenants whose clock runs ahead are looked at one by one.
        rows = _due(session, base_now, base_now, limit, None)
        ahead = session.execute(select(Tenant.id).where(Tenant.clock_offset_seconds > 0)
                                .where(Tenant.id.in_(select(WebhookDelivery.tenant_id).where(
                                    WebhookDelivery.status == "pending")))).scalars().all()
        seen = {r.id for r in rows}
        for tenant_id in ahead:
            if len(rows) >= limit:
                break
            now = clock_for(session, tenant_id).now()
            for row in _due(session, now, base_now, limit - len(rows), tenant_id):
                if row.id not in seen:
                    rows.append(row)
                    seen.add(row.id)
        claimed = []
        endpoints = {e.id: e for e in session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.id.in_({r.endpoint_id for r in rows})))} if rows else {}
        events = {e.id: e for e in session.scalars(select(Event).where(
            Event.id.in_({r.event_id for r in rows})))} if rows else {}
        clocks = {t: clock_for(session, t).now() for t in {r.tenant_id for r in rows}}
        for delivery in rows:
            endpoint, event = endpoints[delivery.endpoint_id], events[delivery.event_id]
            delivery.lease_until = base_now + config.lease
            delivery.lease_owner = owner
            now = clocks[delivery.tenant_id]
            signing = [endpoint.secret]
            if (endpoint.previous_secret and endpoint.previous_secret_expires_at
                    and endpoint.previous_secret_expires_at > now):
                signing.append(endpoint.previous_secret)
            claimed.append(Claimed(
                delivery_id=delivery.id, tenant_id=delivery.tenant_id, endpoint_id=endpoint.id,
                environment=endpoint.environment, url=endpoint.url, secrets=signing,
                body=payload(event, endpoint.environment), number=delivery.attempts + 1,
                trigger="manual" if delivery.manual_retry else "schedule", owner=owner))
        session.flush()
        return claimed


# --- sending ------------------------------------------------------------------------------

@dataclass
class Result:
    timestamp: int
    headers: dict[str, str]
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None
    latency_ms: int = 0
    succeeded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def send(claimed: Claimed, config: WebhookConfig) -> Result:
    """One HTTP attempt (no database access here)."""
    timestamp = int(clock_module.utcnow().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(claimed.secrets, claimed.delivery_id, timestamp,
                                              claimed.body),
    }
    result = Result(timestamp=timestamp, headers={k: v for k, v in headers.items()
                                                  if k != "webhook-signature"})
    production = claimed.environment == "production"
    started = time.perf_counter()
    try:
        url: httpx.URL | str = claimed.url
        extensions: dict[str, Any] = {}
        if production or not config.allow_loopback:
            url, host_header, extensions = pinned(claimed.url, production)
            headers.update(host_header)
        # A client (and connection) per attempt: a pooled connection must never carry a
        # request for one host name over a TLS session checked for another.
        with httpx.Client(timeout=config.timeout, follow_redirects=False, trust_env=False,
                          verify=tls_context(), transport=config.transport) as http:
            request = http.build_request("POST", url, headers=headers, content=claimed.body,
                                         extensions=extensions)
            response = http.send(request, stream=True)
            try:
                result.status_code = response.status_code
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= EXCERPT_BYTES:
                        break
                result.excerpt = b"".join(chunks)[:EXCERPT_BYTES].decode("utf-8", "replace")
            finally:
                response.close()
        result.succeeded = 200 <= response.status_code < 300
        if 300 <= response.status_code < 400:
            result.error = "redirect not followed"
        elif not result.succeeded:
            result.error = f"HTTP {response.status_code}"
    except UnsafeURL as exc:
        result.error = f"refused: {exc}"
    except httpx.TimeoutException:
        result.error = f"timed out after {config.timeout:g} s"
    except httpx.HTTPError as exc:
        result.error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
    result.latency_ms = int((time.perf_counter() - started) * 1000)
    return result


# --- recording ----------------------------------------------------------------------------

def record(database: Database, claimed: Claimed, result: Result) -> None:
    """Store the attempt and schedule what comes next (or finish, or disable the endpoint)."""
    record_many(database, [(claimed, result)])


def record_many(database: Database, items: list[tuple[Claimed, Result]]) -> None:
    """Record a batch of attempts in one transaction. Endpoints are locked before deliveries,
    each in id order (the endpoint service locks in the same order), so concurrent workers
    and partners' updates cannot deadlock. If the transaction fails, the leases run out and
    the batch is attempted again (at least once)."""
    if not items:
        return
    config = config_for(database)
    with database.transaction() as session:
        endpoints = {e.id: e for e in session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_({c.endpoint_id for c, _ in items}))
            .order_by(WebhookEndpoint.id).with_for_update())}
        deliveries = {d.id: d for d in session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id.in_({c.delivery_id for c, _ in items}))
            .order_by(WebhookDelivery.id).with_for_update())}
        clocks = {t: clock_for(session, t).now() for t in {c.tenant_id for c, _ in items}}
        for claimed, result in items:
            _record_one(session, config, deliveries[claimed.delivery_id],
                        endpoints[claimed.endpoint_id], clocks[claimed.tenant_id],
                        claimed, result)
        session.flush()


def _record_one(session: Session, config: WebhookConfig, delivery: WebhookDelivery,
                endpoint: WebhookEndpoint, now: datetime, claimed: Claimed,
                result: Result) -> None:
    ours = delivery.lease_owner == claimed.owner and delivery.status == "pending"
    number = delivery.attempts + 1
    session.add(WebhookAttempt(
        id=new_id("watt"), tenant_id=claimed.tenant_id, delivery_id=delivery.id,
        number=number, attempted_at=now, webhook_timestamp=result.timestamp,
        url=claimed.url, outcome="succeeded" if result.succeeded else "failed",
        status_code=result.status_code, latency_ms=result.latency_ms,
        error=(result.error or None) and result.error[:300],
        response_excerpt=result.excerpt, trigger=claimed.trigger,
        request_headers=result.headers))
    delivery.attempts = number
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error[:300] if result.error else None
    if not ours:
        # Our lease ran out and another worker owns the delivery now: keep the attempt on
        # record, leave the schedule to the owner.
        return
    delivery.lease_until, delivery.lease_owner, delivery.manual_retry = None, None, False
    if result.succeeded:
        delivery.status, delivery.completed_at, delivery.next_attempt_at = "succeeded", now, None
        endpoint.failing_since = None
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    if number == 1 and claimed.trigger == "schedule":
        # The retry window runs from the first failure, like the endpoint's.
        delivery.give_up_at = max(delivery.give_up_at, now + config.retry_window)
    if now >= delivery.give_up_at:
        delivery.status, delivery.completed_at, delivery.next_attempt_at = "failed", now, None
    else:
        delivery.next_attempt_at = min(now + backoff(number), delivery.give_up_at)
    if endpoint.status == "enabled" and now - endpoint.failing_since >= config.retry_window:
        _disable_failing(session, endpoint, now)


def _disable_failing(session: Session, endpoint: WebhookEndpoint, now: datetime) -> None:
    from partners.webhooks.service import _fail_pending

    endpoint.status, endpoint.disabled_reason, endpoint.updated_at = "disabled", "failing", now
    _fail_pending(session, endpoint.id, "endpoint disabled after failing", now)
    publish(session, tenant_id=endpoint.tenant_id, type="webhook_endpoint.disabled",
            resource_type="webhook_endpoint", resource_id=endpoint.id,
            data=endpoint_view(endpoint) | {"failing_since": clock_module.to_rfc3339(
                endpoint.failing_since or now)}, actor="system", at=now)


# --- jobs ---------------------------------------------------------------------------------

def deliver_due(database: Database, max_seconds: float = 5.0) -> int:
    """Claim, send and record due deliveries, batch after batch while batches come back full
    (for at most about `max_seconds`). Returns attempts made."""
    config = config_for(database)
    owner = new_id("wkr")
    started = time.monotonic()
    total = 0
    with ThreadPoolExecutor(max_workers=max(1, config.concurrency),
                            thread_name_prefix="webhook") as pool:
        while True:
            claimed = claim(database, owner, config.batch_size)
            if claimed:
                results = list(pool.map(lambda item: send(item, config), claimed))
                try:
                    record_many(database, list(zip(claimed, results, strict=True)))
                except Exception:  # the leases run out and the batch is attempted again
                    log.exception("recording %d webhook attempts failed", len(claimed))
            total += len(claimed)
            if len(claimed) < config.batch_size or time.monotonic() - started > max_seconds:
                return total


def fan_out_job(database: Database, max_batches: int = 20) -> int:
    """Fan out undispatched events, batch after batch (bounded per tick)."""
    total = 0
    for _ in range(max_batches):
        done = fan_out(database)
        total += done
        if done == 0:
            break
    return total
