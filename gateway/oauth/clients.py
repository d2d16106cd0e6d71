"""Creating and revoking OAuth clients (used by the CLI, sandbox sign-up and the console)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock
from gateway.errors import NotFound, ValidationFailed
from gateway.ids import new_id
from gateway.jose import CLIENT_ALGORITHMS, KeyRefused, check_client_jwk, import_key_set
from gateway.oauth.jwks_fetch import validate_url_setting
from gateway.oauth.models import OAuthClient, hash_secret
from gateway.oauth.scopes import ALL_SCOPES, OPERATIONS_SCOPES
from gateway.tenancy import Partner, ensure_tenant


def rate_plans() -> dict[str, tuple[int, int]]:
    """Plan name -> (requests per second, requests per day), from settings."""
    from gateway.settings import get_settings

    return get_settings().rate_plans


class _RatePlans(Mapping[str, tuple[int, int]]):
    """A live read-only view of the configured plans (settings are the one source)."""

    def __getitem__(self, name: str) -> tuple[int, int]:
        return rate_plans()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(rate_plans())

    def __len__(self) -> int:
        return len(rate_plans())


RATE_PLANS: Mapping[str, tuple[int, int]] = _RatePlans()


@dataclass
class IssuedClient:
    client: OAuthClient
    secret: str | None


def _check_jwks(jwks: dict[str, Any]) -> None:
    try:
        for data in jwks["keys"]:
            check_client_jwk(data)
        keyset = import_key_set(jwks)
    except KeyRefused as exc:
        raise ValidationFailed(f"Key refused: {exc}", code="invalid_jwks") from None
    except Exception as exc:
        raise ValidationFailed(f"The JWKS is not valid: {exc}", code="invalid_jwks") from None
    if not keyset.keys:
        raise ValidationFailed("The JWKS has no keys.", code="invalid_jwks")
    for key in keyset.keys:
        if key.is_private:
            raise ValidationFailed("Register public keys only.", code="invalid_jwks")
        alg = key.get("alg")
        if alg is not None and alg not in CLIENT_ALGORITHMS:
            raise ValidationFailed(f"Key algorithm {alg} is not accepted.", code="invalid_jwks")


def check_client_keys(jwks: dict[str, Any] | None, jwks_uri: str | None, *,
                      environment: str) -> None:
    """The one check of a client's public keys, when a client is created (`create_client`)
    and when its keys are rotated (partners.credentials): a JWKS or a jwks_uri, not both; a
    JWKS of accepted public keys; a production jwks_uri https and on public addresses."""
    if jwks and jwks_uri:
        raise ValidationFailed("Register either a JWKS or a jwks_uri, not both.",
                               code="invalid_client_keys")
    if jwks:
        _check_jwks(jwks)
    if jwks_uri and environment == "production":
        # The rule of webhook URLs: https, public addresses. Fetching checks the address again
        # (DNS may change), but an http URI would never work; say so now.
        validate_url_setting(jwks_uri, production=True, allow_loopback=False)


def create_client(session: Session, *, partner: Partner, environment: str, name: str,
                  scopes: list[str], jwks: dict[str, Any] | None = None,
                  jwks_uri: str | None = None, with_secret: bool = False,
                  require_dpop: bool | None = None, rate_plan: str | None = None) -> IssuedClient:
    """Create a client for a partner in one environment. Production requires keys and DPoP."""
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValidationFailed(f"Unknown scopes: {' '.join(unknown)}", code="invalid_scope")
    if not partner.is_operations and any(s in OPERATIONS_SCOPES for s in scopes):
        raise ValidationFailed("Operations scopes are for the bank's own clients.",
                               code="invalid_scope")
    check_client_keys(jwks, jwks_uri, environment=environment)
    if environment == "production":
        if with_secret:
            raise ValidationFailed("Production clients authenticate with private_key_jwt only.",
                                   code="secret_not_allowed")
        if not (jwks or jwks_uri):
            raise ValidationFailed("Production clients need a JWKS or a jwks_uri.",
                                   code="invalid_client_keys")
    elif not (jwks or jwks_uri or with_secret):
        with_secret = True
    plan = rate_plan or ("sandbox" if environment == "sandbox" else "standard")
    if plan not in rate_plans():
        raise ValidationFailed(f"Unknown rate plan {plan}.", code="invalid_rate_plan")
    tenant = ensure_tenant(session, partner.id, environment)
    secret = "qls_" + secrets.token_urlsafe(32) if with_secret else None
    client = OAuthClient(
        id=new_id("cli"), partner_id=partner.id, tenant_id=tenant.id, environment=environment,
        name=name, auth_method="private_key_jwt" if (jwks or jwks_uri) else "client_secret_basic",
        secret_sha256=hash_secret(secret) if secret else None, jwks=jwks, jwks_uri=jwks_uri,
        scopes=" ".join(sorted(set(scopes))),
        require_dpop=(environment == "production") if require_dpop is None else require_dpop,
        rate_plan=plan, status="active", created_at=clock.utcnow(), revoked_at=None,
    )
    session.add(client)
    session.flush()
    return IssuedClient(client, secret)


def revoke_client(session: Session, client_id: str) -> OAuthClient:
    """Revoke a client: its tokens are refused on the next call."""
    client = session.get(OAuthClient, client_id)
    if client is None:
        raise NotFound("No such client.", code="client_not_found")
    if client.status != "revoked":
        client.status = "revoked"
        client.revoked_at = clock.utcnow()
        session.flush()
    return client


def rotate_secret(session: Session, client_id: str) -> str:
    client = session.get(OAuthClient, client_id)
    if client is None:
        raise NotFound("No such client.", code="client_not_found")
    if client.environment != "sandbox":
        raise ValidationFailed("Only sandbox clients have secrets.", code="secret_not_allowed")
    secret = "qls_" + secrets.token_urlsafe(32)
    client.secret_sha256 = hash_secret(secret)
    session.flush()
    return secret


def partner_clients(session: Session, partner_id: str) -> list[OAuthClient]:
    return list(session.scalars(select(OAuthClient).where(OAuthClient.partner_id == partner_id)
                                .order_by(OAuthClient.id)))
