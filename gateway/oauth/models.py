"""OAuth clients, revoked tokens and single-use values."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base


def hash_secret(secret: str) -> str:
    # Client secrets are 256-bit random values, not passwords: a fast hash is enough and keeps
    # the token endpoint fast; the comparison is constant-time.
    return hashlib.sha256(secret.encode()).hexdigest()


class OAuthClient(Base, ClientMixin):
    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    environment: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(200))
    auth_method: Mapped[str] = mapped_column(String(40))
    secret_sha256: Mapped[str | None] = mapped_column(String(64))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)
    require_dpop: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_plan: Mapped[str] = mapped_column(String(20), default="standard")
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]

    # authlib's ClientMixin contract
    def get_client_id(self) -> str:
        return self.id

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = self.scopes.split()
        if not scope:
            return " ".join(allowed)
        return " ".join(s for s in scope.split() if s in allowed)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.secret_sha256:
            return False
        return hmac.compare_digest(self.secret_sha256, hash_secret(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method == "client_secret_basic":
            # Secrets are a sandbox convenience; production clients prove a private key.
            return self.environment == "sandbox" and self.secret_sha256 is not None
        if method == "private_key_jwt":
            return bool(self.jwks or self.jwks_uri)
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40), index=True)
    expires_at: Mapped[int]


class UsedNonce(Base):
    """Single-use values (client assertion and DPoP `jti`s) until they expire."""

    __tablename__ = "used_nonces"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)
