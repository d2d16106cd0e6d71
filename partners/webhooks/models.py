"""Webhook endpoints, deliveries (one per event per endpoint) and their attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from partners.crypto import SecretText


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    environment: Mapped[str] = mapped_column(String(12))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(300))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    # enabled | disabled (by the partner, or by us after failing too long) | deleted
    status: Mapped[str] = mapped_column(String(12), default="enabled")
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    secret: Mapped[str] = mapped_column(SecretText)
    # After a rotation the old secret keeps signing (a second signature) for a grace period.
    previous_secret: Mapped[str | None] = mapped_column(SecretText)
    previous_secret_expires_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WebhookDelivery(Base):
    """One event for one endpoint. Its id is the Standard Webhooks `webhook-id` (stable across
    retries, so receivers can de-duplicate)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(80))
    # pending -> succeeded | failed (a manual retry puts it back to pending)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # Tenant-clock times: the schedule follows the sandbox test clock.
    next_attempt_at: Mapped[datetime | None]
    give_up_at: Mapped[datetime]
    # Base-clock lease: while set in the future, one worker owns the next attempt.
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    manual_retry: Mapped[bool] = mapped_column(default=False)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


Index("ix_webhook_deliveries_due", WebhookDelivery.status, WebhookDelivery.next_attempt_at)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int]
    attempted_at: Mapped[datetime]
    webhook_timestamp: Mapped[int]
    url: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(12))  # succeeded | failed
    status_code: Mapped[int | None]
    latency_ms: Mapped[int]
    error: Mapped[str | None] = mapped_column(String(300))
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(12), default="schedule")  # schedule | manual
    request_headers: Mapped[dict[str, str]] = mapped_column(JSON)
