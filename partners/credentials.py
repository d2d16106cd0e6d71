"""Operators issue, rotate and revoke a partner's OAuth clients (the console's credential page).

Production clients need an approved (or active) partner, public keys (a JWKS, or a jwks_uri
that passes the same address checks as webhook URLs) and, by default, DPoP. The keys are
checked in one place, gateway.oauth.clients.check_client_keys: by `create_client` when a client
is issued, and here when its keys are rotated. Issuing the first production client to an
approved partner activates it (approved -> active).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gateway.errors import ValidationFailed
from gateway.oauth.clients import (
    IssuedClient,
    check_client_keys,
    create_client,
    revoke_client,
    rotate_secret,
)
from gateway.oauth.models import OAuthClient
from gateway.oauth.scopes import PARTNER_SCOPES, SUPERVISOR_SCOPES
from partners.errors import ClientNotFound, PartnerNotReady, RoleRequired
from partners.operations import publish_operations_event
from partners.workflow import Actor, get_partner, transition

CLIENT_MANAGERS = frozenset({"approver", "admin"})
GRANTABLE_SCOPES = PARTNER_SCOPES + SUPERVISOR_SCOPES


SUPERVISOR_PARTNER_TYPE = "government_portal"


def grantable_scopes(partner_type: str) -> tuple[str, ...]:
    """What an operator may grant a partner of this type."""
    return GRANTABLE_SCOPES if partner_type == SUPERVISOR_PARTNER_TYPE else PARTNER_SCOPES


def check_supervisor_scopes(partner_type: str, scopes: list[str]) -> None:
    """Supervisor scopes go to regulators' portals (government_portal partners) only: the one
    rule, for the console (`issue_client`) and the command line (`quanlian clients create`)."""
    supervising = [s for s in scopes if s in SUPERVISOR_SCOPES]
    if supervising and partner_type != SUPERVISOR_PARTNER_TYPE:
        raise ValidationFailed(f"{' '.join(supervising)}: supervisor scopes are for regulators' "
                               f"portals ({SUPERVISOR_PARTNER_TYPE} partners) only, not a "
                               f"{partner_type} partner.", code="invalid_scope")


def client_view(client: OAuthClient) -> dict[str, Any]:
    return {"id": client.id, "partner_id": client.partner_id, "environment": client.environment,
            "name": client.name, "auth_method": client.auth_method,
            "scopes": client.scopes.split(), "rate_plan": client.rate_plan,
            "require_dpop": client.require_dpop, "status": client.status,
            "jwks_uri": client.jwks_uri,
            "kids": [k.get("kid") for k in (client.jwks or {}).get("keys", [])]}


def _require_manager(actor: Actor) -> None:
    if not actor.has_any(CLIENT_MANAGERS):
        raise RoleRequired("Managing credentials needs the approver or admin role.")


def issue_client(session: Session, partner_id: str, *, actor: Actor, environment: str,
                 name: str, scopes: list[str], jwks: dict[str, Any] | None = None,
                 jwks_uri: str | None = None, rate_plan: str | None = None,
                 require_dpop: bool = True) -> IssuedClient:
    """Issue a client to a partner. Production: approved/active partners only, keys required."""
    _require_manager(actor)
    partner = get_partner(session, partner_id, lock=True)
    name = name.strip()
    if not name:
        raise ValidationFailed("Give the client a name.", code="invalid_client_name")
    not_grantable = [s for s in scopes if s not in GRANTABLE_SCOPES]
    if not_grantable:
        raise ValidationFailed(f"Scopes not grantable to partners: {' '.join(not_grantable)}.",
                               code="invalid_scope")
    if not scopes:
        raise ValidationFailed("Grant at least one scope.", code="invalid_scope")
    check_supervisor_scopes(partner.partner_type, scopes)
    if environment == "production":
        if partner.status not in ("approved", "active"):
            raise PartnerNotReady(f"The partner is {partner.status}: production clients need an "
                                  "approved or active partner.")
        issued = create_client(session, partner=partner, environment="production", name=name,
                               scopes=scopes, jwks=jwks, jwks_uri=jwks_uri, with_secret=False,
                               require_dpop=require_dpop, rate_plan=rate_plan)
    elif environment == "sandbox":
        if partner.status in ("suspended", "offboarded"):
            raise PartnerNotReady(f"The partner is {partner.status}.")
        issued = create_client(session, partner=partner, environment="sandbox", name=name,
                               scopes=scopes, jwks=jwks, jwks_uri=jwks_uri,
                               with_secret=not (jwks or jwks_uri), require_dpop=require_dpop,
                               rate_plan=rate_plan)
    else:
        raise ValidationFailed("environment must be sandbox or production",
                               code="invalid_environment")
    publish_operations_event(session, type="partner_client.issued", resource_type="oauth_client",
                             resource_id=issued.client.id, data=client_view(issued.client),
                             actor=actor.id)
    if environment == "production" and partner.status == "approved":
        transition(session, partner.id, "activate", actor=actor,
                   reason=f"first production client {issued.client.id} issued")
    return issued


def _client(session: Session, partner_id: str, client_id: str) -> OAuthClient:
    client = session.get(OAuthClient, client_id)
    if client is None or client.partner_id != partner_id:
        raise ClientNotFound(f"No client {client_id} for this partner.")
    return client


def revoke(session: Session, partner_id: str, client_id: str, *, actor: Actor) -> OAuthClient:
    """Revoke a client; its tokens are refused on the next call."""
    _require_manager(actor)
    client = _client(session, partner_id, client_id)
    revoke_client(session, client.id)
    publish_operations_event(session, type="partner_client.revoked", resource_type="oauth_client",
                             resource_id=client.id, data=client_view(client), actor=actor.id)
    return client


def rotate(session: Session, partner_id: str, client_id: str, *, actor: Actor,
           jwks: dict[str, Any] | None = None, jwks_uri: str | None = None) -> str | None:
    """Rotate a client's credential: a new secret (sandbox secret clients, returned once) or
    new public keys (key-based clients; the old keys stop working at once)."""
    _require_manager(actor)
    client = _client(session, partner_id, client_id)
    if client.status != "active":
        raise PartnerNotReady("A revoked client cannot be rotated.", code="client_revoked")
    secret = None
    if client.auth_method == "client_secret_basic":
        secret = rotate_secret(session, client.id)
    else:
        if not (jwks or jwks_uri) or (jwks and jwks_uri):
            raise ValidationFailed("Give the new JWKS or the new jwks_uri (one of them).",
                                   code="invalid_client_keys")
        # Rotation bypasses create_client: the same check, under the client's environment.
        check_client_keys(jwks, jwks_uri, environment=client.environment)
        client.jwks, client.jwks_uri = (jwks or None), (jwks_uri or None)
        session.flush()
    publish_operations_event(session, type="partner_client.rotated", resource_type="oauth_client",
                             resource_id=client.id, data=client_view(client), actor=actor.id)
    return secret
