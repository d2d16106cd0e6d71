"""authlib's authorization server core, adapted to FastAPI.

authlib ships no FastAPI server integration, so this module supplies the framework hooks
(`create_oauth2_request`, `handle_response`, `send_signal`), the client look-up and the
token generator, and registers the client credentials grant, private_key_jwt, and the
introspection and revocation endpoints. authlib is synchronous: every call into it runs in
a worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import time
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

# The read every protected call makes, so that introspection answers as the gateway does.
from gateway.auth import STATUS_SQL as CALLER_STATUS_SQL
from gateway.db import Database
from gateway.oauth.client_auth import ClientAuthentication, PrivateKeyJWT, shown
from gateway.oauth.dpop import DPoPInvalid, DPoPVerifier
from gateway.oauth.jwks_fetch import JWKSCache
from gateway.oauth.models import OAuthClient, RevokedToken
from gateway.oauth.replay import ReplayGuard
from gateway.oauth.scopes import ALL_SCOPES
from gateway.oauth.session import bind_session, current_session, unbind_session
from gateway.oauth.tokens import TokenInvalid, TokenService
from gateway.tenancy import partner_states

AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]
GRANT_TYPE = "client_credentials"


class ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: OAuthClient = self.request.client
        if client.require_dpop and not getattr(self.request, "dpop_jkt", None):
            raise InvalidRequestError("This client must present a DPoP proof.")

    def validate_requested_scope(self) -> None:
        client: OAuthClient = self.request.client
        requested = (self.request.payload.scope or "").split()
        allowed = set(client.scopes.split())
        if requested:
            unknown = [s for s in requested if s not in allowed]
            if unknown:
                raise InvalidScopeError("Scopes not granted to this client: "
                                        + shown(" ".join(unknown), 200))
            granted = sorted(set(requested))
        else:
            granted = sorted(allowed)
        self.request.granted_scope = " ".join(granted)  # type: ignore[attr-defined]

    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        scope = self.request.granted_scope  # type: ignore[attr-defined]
        token = self.server.tokens.issue(client_id=self.request.client.id, scope=scope,
                                         jkt=getattr(self.request, "dpop_jkt", None))
        return 200, token, [("Content-Type", "application/json"),
                            ("Cache-Control", "no-store"), ("Pragma", "no-cache")]


class _TokenInfo:
    """A verified access token as authlib's endpoints expect it."""

    def __init__(self, token: str, claims: dict[str, Any], refused: bool) -> None:
        self.token = token
        self.claims = claims
        self.refused = refused

    def is_expired(self) -> bool:
        return self.claims["exp"] <= time.time()

    def is_revoked(self) -> bool:
        # authlib's one question for "no longer usable": any refusal of the gateway counts.
        return self.refused

    def get_client_id(self) -> str:
        return str(self.claims["client_id"])

    def check_client(self, client: OAuthClient) -> bool:
        return self.get_client_id() == client.id


def _refused_on_calls(database: Database, claims: dict[str, Any]) -> bool:
    """Whether the gateway refuses this (valid, unexpired) token on a call: the same read as
    gateway.auth.authenticate, and its rules. Revoked, the client not active, the partner not
    in a state its environment allows, or a Bearer token of a client that must use DPoP."""
    row = database.read_one(CALLER_STATUS_SQL, {"jti": claims["jti"], "cid": claims["client_id"]})
    if row is None:
        return True
    client_status, _, _, environment, require_dpop, partner_status, _, _, revoked, _, _ = row
    return bool(revoked or client_status != "active"
                or partner_status not in partner_states(environment)
                or (require_dpop and not (claims.get("cnf") or {}).get("jkt")))


def _query_token(server: QuanlianAuthorizationServer, token: str) -> _TokenInfo | None:
    try:
        claims = server.tokens.verify(token)
    except TokenInvalid:
        return None
    return _TokenInfo(token, claims, _refused_on_calls(server.database, claims))


def _check_token_param(request: Any) -> None:
    # authlib refuses an unknown token_type_hint; RFC 7009, 2.1 has the server ignore it and
    # search all its tokens (RFC 7662 takes the hints from there). Ours are access tokens.
    if "token" not in request.form:
        raise InvalidRequestError("Missing 'token'.")


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_params(self, request: Any, client: OAuthClient) -> None:
        _check_token_param(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query_token(self.server, token_string)

    def check_permission(self, token: _TokenInfo, client: OAuthClient, request: Any) -> bool:
        # A client may introspect its own tokens; the bank's operations clients any token.
        return token.get_client_id() == client.id or "operations:read" in client.scopes.split()

    def introspect_token(self, token: _TokenInfo) -> dict[str, Any]:
        c = token.claims
        body = {"active": True, "client_id": c["client_id"], "scope": c["scope"],
                "sub": c["sub"], "aud": c["aud"], "iss": c["iss"], "exp": c["exp"],
                "iat": c["iat"], "jti": c["jti"],
                "token_type": "DPoP" if c.get("cnf") else "Bearer"}
        if c.get("cnf"):
            body["cnf"] = c["cnf"]
        return body


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_params(self, request: Any, client: OAuthClient) -> None:
        _check_token_param(request)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query_token(self.server, token_string)

    def authenticate_token(self, request: Any, client: OAuthClient) -> Any:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token is not None and not token.check_client(client):
            # authlib's refusal, with a description (it had none).
            raise InvalidGrantError("The token was issued to another client.")
        return token

    def revoke_token(self, token: _TokenInfo, request: Any) -> None:
        if token.get_client_id() != request.client.id:
            return  # RFC 7009: answer 200 either way, but never revoke another client's token
        session = current_session()
        if session.get(RevokedToken, token.claims["jti"]) is None:
            session.add(RevokedToken(jti=token.claims["jti"], client_id=token.get_client_id(),
                                     expires_at=int(token.claims["exp"])))
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
        self.server.tokens.forget(token.token)


_CLIENT_COLUMNS = ("id", "partner_id", "tenant_id", "environment", "name", "auth_method",
                   "secret_sha256", "jwks", "jwks_uri", "scopes", "require_dpop", "rate_plan",
                   "status")
_CLIENT_SQL = ("SELECT " + ", ".join("c." + c for c in _CLIENT_COLUMNS) + ", p.status "
               "FROM oauth_clients c JOIN partners p ON p.id = c.partner_id WHERE c.id = :cid")


class QuanlianAuthorizationServer(AuthorizationServer):
    def __init__(self, *, database: Database, issuer: str, tokens: TokenService,
                 replay: ReplayGuard, jwks_cache: JWKSCache) -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.database = database
        self.issuer = issuer
        self.tokens = tokens
        self.dpop = DPoPVerifier(replay)
        self.client_authentication = ClientAuthentication(
            self.query_client, PrivateKeyJWT(issuer, replay, jwks_cache))
        self.register_grant(ClientCredentials)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)

    # -- authlib hooks --------------------------------------------------------------
    def query_client(self, client_id: str) -> OAuthClient | None:
        if not isinstance(client_id, str) or len(client_id) > 64:
            return None
        # One statement on the process's autocommit connection (no transaction, no pool
        # checkout): the token endpoint runs this for every token it issues.
        row = self.database.read_one(_CLIENT_SQL, {"cid": client_id})
        if row is None:
            return None
        values = dict(zip(_CLIENT_COLUMNS, row[:-1], strict=True))
        if isinstance(values["jwks"], str):  # SQLite hands JSON back as text
            values["jwks"] = json.loads(values["jwks"])
        values["require_dpop"] = bool(values["require_dpop"])
        client = OAuthClient(**values)
        if not client.is_active or row[-1] not in partner_states(client.environment):
            return None
        return client

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """JWT access tokens are self-contained: nothing to store."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def authenticate_client(self, request: Any, methods: list[str],
                            endpoint: str = "token") -> OAuthClient:
        return self.client_authentication(request, methods, endpoint)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    # -- entry points used by the router (sync; run in a worker thread) -------------
    def token(self, request: OAuth2Request, dpop_proof: str | None,
              url: str) -> tuple[int, Any, Any]:
        """The token endpoint only reads (the client, its partner); its single-use checks
        commit on their own, in groups (gateway.oauth.replay)."""
        grant_type = request.form.get("grant_type")
        # authlib answers both a missing and an unknown grant type with a bare
        # unsupported_grant_type; RFC 6749, 5.2 has a missing parameter be invalid_request.
        if not grant_type:
            return self.handle_error_response(
                request, InvalidRequestError("The grant_type parameter is required."))
        if grant_type != GRANT_TYPE:
            unsupported = UnsupportedGrantTypeError(grant_type)
            unsupported.description = (f"The grant_type '{shown(grant_type)}' is not supported: "
                                       f"this server issues tokens for {GRANT_TYPE} only.")
            return self.handle_error_response(request, unsupported)
        if dpop_proof is not None:
            try:
                request.dpop_jkt = self.dpop.verify(  # type: ignore[attr-defined]
                    dpop_proof, method="POST", url=url)
            except DPoPInvalid as exc:
                return 400, {"error": "invalid_dpop_proof", "error_description": str(exc)}, []
        return self.create_token_response(request)

    def endpoint(self, name: str, session: Session, request: OAuth2Request) -> tuple[int, Any, Any]:
        token = bind_session(session)
        try:
            return self.create_endpoint_response(name, request)
        finally:
            unbind_session(token)


def find_client(session: Session, client_id: str) -> OAuthClient | None:
    return session.scalars(select(OAuthClient).where(OAuthClient.id == client_id)).first()


__all__ = ["QuanlianAuthorizationServer", "InvalidClientError", "find_client"]
