"""OAuth endpoints: discovery (RFC 8414), JWKS, token, introspection (RFC 7662), revocation (RFC 7009)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl

import anyio
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from gateway.db import get_session
from gateway.errors import BadRequest, UnsupportedMediaType, error_responses
from gateway.jose import CLIENT_ALGORITHMS
from gateway.oauth.jwks_fetch import JWKSCache
from gateway.oauth.replay import ReplayGuard
from gateway.oauth.scopes import ALL_SCOPES
from gateway.oauth.server import QuanlianAuthorizationServer
from gateway.oauth.tokens import TokenService
from gateway.redis import redis_client
from gateway.routing import Router

router = Router(tags=["oauth"])

TOKEN_PATH = "/oauth/token"
INTROSPECT_PATH = "/oauth/introspect"
REVOKE_PATH = "/oauth/revoke"
JWKS_PATH = "/oauth/jwks"


def setup(app: FastAPI) -> None:
    settings = app.state.settings
    if settings.issuer.startswith("http://"):
        # A plain-http issuer is a local development set-up; authlib refuses it otherwise.
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    replay = ReplayGuard(app.state.database, redis_client(settings.redis_url))
    tokens = TokenService(app.state.keys, settings.issuer, settings.access_token_ttl)
    app.state.replay = replay
    app.state.tokens = tokens
    app.state.oauth = QuanlianAuthorizationServer(
        database=app.state.database, issuer=settings.issuer, tokens=tokens, replay=replay,
        jwks_cache=JWKSCache(allow_private=settings.webhook_allow_loopback))


class FormRequest(OAuth2Request):
    """authlib's request object over an already-parsed form (its framework hook)."""

    def __init__(self, method: str, uri: str, form: dict[str, str],
                 headers: Any) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class TokenResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    access_token: str
    token_type: str = Field(examples=["DPoP"])
    expires_in: int
    scope: str


class ServerMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    issuer: str
    token_endpoint: str
    jwks_uri: str


def _oauth_response(status: int, body: Any, headers: Any) -> Response:
    headers = dict(headers or [])
    headers["Cache-Control"] = "no-store"
    headers["Pragma"] = "no-cache"
    if status >= 400 and isinstance(body, dict) and "error" in body:
        # RFC 6749 error members inside an RFC 9457 problem, so that both OAuth client
        # libraries and problem-aware clients read it.
        problem = {
            "type": "urn:quanlian:problem:" + body["error"],
            "title": "OAuth error",
            "status": status,
            "detail": body.get("error_description") or body["error"],
            "code": body["error"],
            **body,
        }
        headers["Content-Type"] = "application/problem+json"
        return Response(json.dumps(problem), status_code=status, headers=headers)
    headers.pop("Content-Type", None)
    return JSONResponse(body, status_code=status, headers=headers)


async def _form_request(request: Request) -> OAuth2Request:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("OAuth endpoints take application/x-www-form-urlencoded.")
    raw = await request.body()
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequest("The form is not UTF-8.", code="invalid_request") from None
    names = [k for k, _ in pairs]
    duplicated = {k for k in names if names.count(k) > 1}
    if duplicated:
        raise BadRequest(f"Repeated parameters: {', '.join(sorted(duplicated))}.",
                         code="invalid_request")
    return FormRequest(request.method, _url(request, request.url.path), dict(pairs),
                       request.headers)  # type: ignore[arg-type]


def _url(request: Request, path: str) -> str:
    return request.app.state.settings.issuer.rstrip("/") + path


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata",
            response_model=ServerMetadata)
def metadata(request: Request) -> dict[str, Any]:
    issuer = request.app.state.settings.issuer.rstrip("/")
    algs = list(CLIENT_ALGORITHMS)
    return {
        "issuer": request.app.state.settings.issuer,
        "token_endpoint": issuer + TOKEN_PATH,
        "jwks_uri": issuer + JWKS_PATH,
        "introspection_endpoint": issuer + INTROSPECT_PATH,
        "revocation_endpoint": issuer + REVOKE_PATH,
        "grant_types_supported": ["client_credentials"],
        # REQUIRED by RFC 8414, and validators refuse an empty list. There is no
        # authorization endpoint, so no response type yields a credential: "none" (OAuth 2.0
        # Multiple Response Type Encoding Practices) is the registered value saying exactly that.
        "response_types_supported": ["none"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "introspection_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "revocation_endpoint_auth_signing_alg_values_supported": algs,
        "scopes_supported": list(ALL_SCOPES),
        "dpop_signing_alg_values_supported": algs,
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": issuer + "/docs",
    }


@router.get(JWKS_PATH, summary="The platform's public signing keys")
def jwks(request: Request) -> dict[str, Any]:
    return request.app.state.keys.public_jwks()


_FORM_BODY = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "additionalProperties": {"type": "string"}}}}}
}


@router.post(TOKEN_PATH, summary="Token endpoint (client credentials)",
             response_model=TokenResponse, openapi_extra=_FORM_BODY,
             responses=error_responses(400, 401, 415, 429))
async def token(request: Request) -> Response:
    request.app.state.rate_limiter.check_token_endpoint(request)
    oauth_request = await _form_request(request)
    proofs = request.headers.getlist("dpop")
    if len(proofs) > 1:
        raise BadRequest("Send one DPoP header.", code="invalid_dpop_proof")
    server: QuanlianAuthorizationServer = request.app.state.oauth
    status, body, headers = await anyio.to_thread.run_sync(
        server.token, oauth_request, proofs[0] if proofs else None,
        _url(request, TOKEN_PATH))
    return _oauth_response(status, body, headers)


async def _endpoint(name: str, request: Request, session: Session) -> Response:
    oauth_request = await _form_request(request)
    server: QuanlianAuthorizationServer = request.app.state.oauth
    status, body, headers = await anyio.to_thread.run_sync(server.endpoint, name, session,
                                                           oauth_request)
    return _oauth_response(status, body, headers)


@router.post(INTROSPECT_PATH, summary="Token introspection (RFC 7662)", openapi_extra=_FORM_BODY,
             responses=error_responses(400, 401, 415))
async def introspect(request: Request, session: Session = Depends(get_session)) -> Response:
    return await _endpoint("introspection", request, session)


@router.post(REVOKE_PATH, summary="Token revocation (RFC 7009)", openapi_extra=_FORM_BODY,
             responses=error_responses(400, 401, 415))
async def revoke(request: Request, session: Session = Depends(get_session)) -> Response:
    return await _endpoint("revocation", request, session)
