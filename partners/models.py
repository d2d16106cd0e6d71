"""Tables of the partners package: applications, status transitions, operators and their
console sessions, daily usage, and (imported below) webhook endpoints and deliveries.

Operators and their sessions are the bank's own staff, not tenant data: they carry no tenant.
Everything a partner owns carries its tenant id like every business table.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from partners.crypto import SecretText


class PartnerApplication(Base):
    """What a partner told us when it applied (one per partner)."""

    __tablename__ = "partner_applications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), unique=True)
    legal_name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18), index=True)
    partner_type: Mapped[str] = mapped_column(String(40))
    # Contacts hold names, e-mail addresses and phone numbers: encrypted at rest.
    contacts: Mapped[str] = mapped_column(SecretText)
    requested_products: Mapped[list[str]] = mapped_column(JSON)
    website: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(12))
    submitted_at: Mapped[datetime] = mapped_column(index=True)
    reviewed_by: Mapped[str | None] = mapped_column(String(40))
    reviewed_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decided_at: Mapped[datetime | None]
    decision: Mapped[str | None] = mapped_column(String(12))
    decision_reason: Mapped[str | None] = mapped_column(Text)


class PartnerTransition(Base):
    """One change of a partner's status: who, when, why (and the event that evidences it)."""

    __tablename__ = "partner_transitions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    event_id: Mapped[str] = mapped_column(String(40))


class Operator(Base):
    """A member of the bank's operations staff who uses the console."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    roles: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str | None] = mapped_column(SecretText)
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int] = mapped_column(default=0)
    # While TOTP is being set up (a secret, not yet enabled): until when that secret may still
    # be confirmed, so that a mistyped code does not throw away the entry just scanned.
    totp_pending_until: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]


class OperatorSession(Base):
    """A console login. The cookie carries a random token; only its SHA-256 is stored."""

    __tablename__ = "operator_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ConsoleFormSubmission(Base):
    """The first submission of a console form that creates something (its one-time form token,
    partners.console.forms): a repeated post of that form is sent to this result instead of
    acting again. A secret to show once is held here, encrypted, until its page shows it."""

    __tablename__ = "console_form_submissions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    result_url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str | None] = mapped_column(SecretText)
    created_at: Mapped[datetime] = mapped_column(index=True)


class UsageDaily(Base):
    """Calls per tenant per business day (Asia/Shanghai), with a latency histogram for p95."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("tenant_id", "day"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    environment: Mapped[str] = mapped_column(String(12))
    day: Mapped[date] = mapped_column(Date, index=True)
    calls: Mapped[int] = mapped_column(default=0)
    client_errors: Mapped[int] = mapped_column(default=0)
    server_errors: Mapped[int] = mapped_column(default=0)
    latency_ms_total: Mapped[float] = mapped_column(Float, default=0.0)
    # {bucket index: count}; bucket i covers latencies up to partners.usage.BOUNDS[i] ms.
    latency_histogram: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


Index("ix_partner_transitions_partner_at", PartnerTransition.partner_id, PartnerTransition.at)

from partners.webhooks.models import (  # noqa: E402  (one models module for the app factory)
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = ["PartnerApplication", "PartnerTransition", "Operator", "OperatorSession",
           "ConsoleFormSubmission", "UsageDaily",
           "WebhookEndpoint", "WebhookDelivery", "WebhookAttempt"]
