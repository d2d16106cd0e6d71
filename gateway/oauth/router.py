"""OAuth endpoints: discovery (RFC 8414), JWKS, token, introspection (RFC 7662), revocation (RFC 7009)."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import anyio
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.orm import Session

from gateway.context import state
from gateway.db import get_session
from gateway.errors import (
    PROBLEM_JSON,
    TYPE_PREFIX,
    BadRequest,
    Problem,
    UnsupportedMediaType,
)
from gateway.jose import CLIENT_ALGORITHMS
from gateway.oauth.client_auth import CLIENT_REFUSED
from gateway.oauth.jwks_fetch import JWKSCache
from gateway.oauth.replay import ReplayGuard
from gateway.oauth.scopes import ALL_SCOPES
from gateway.oauth.server import QuanlianAuthorizationServer
from gateway.oauth.tokens import TokenService
from gateway.redis import redis_client, redis_outage
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
    replay = ReplayGuard(app.state.database, redis_client(settings.redis_url),
                         redis_outage(settings.redis_url))
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


# -- documented bodies ---------------------------------------------------------------
# The endpoints read their form themselves (authlib's requests; a repeated parameter is
# refused), so FastAPI cannot see the forms: their schemas go into the operations as they are.

_Text = SkipJsonSchema[None]  # a form field sent or not; never null
ClientAssertionType = Annotated[
    Literal["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"] | _Text,
    Field(description="With `client_assertion`: client authentication with `private_key_jwt` "
                      "(RFC 7523). Sandbox clients may instead send their client id and secret "
                      "with HTTP Basic (`client_secret_basic`).")]
ClientAssertion = Annotated[str | _Text, Field(
    description="A JWT signed with one of the client's registered keys (PS256, ES256 or "
                "EdDSA), single use: `iss` = `sub` = the client id, `aud` the issuer "
                "identifier (a string), `exp` at most 60 minutes after `iat`, and a `jti`.")]
ClientId = Annotated[str | _Text, Field(
    description="Optional beside a client assertion; when sent, it must name the assertion's "
                "client.", examples=["cli_01JD7Q6N3X6M4Y5Z8A9B0C1D2E"])]


class TokenRequest(BaseModel):
    """A token request (RFC 6749, 4.4.2), form-encoded. The client authenticates with a client
    assertion (`private_key_jwt`) or, in the sandbox only, HTTP Basic; a `DPoP` header binds the
    token to the proof's key (production clients must send one)."""

    grant_type: Literal["client_credentials"] = Field(
        description="Always `client_credentials`. Missing: `invalid_request`; any other value: "
                    "`unsupported_grant_type`.")
    scope: str | _Text = Field(
        None, description="Space-separated scopes, each granted to the client; omitted: every "
                          "scope the client holds.", examples=["accounts:read accounts:write"])
    client_assertion_type: ClientAssertionType = None
    client_assertion: ClientAssertion = None
    client_id: ClientId = None


class _TokenAboutRequest(BaseModel):
    """A request about an access token, form-encoded, authenticated as at the token endpoint."""

    token_type_hint: str | _Text = Field(
        None, description="Only a hint, and ignored: every token is looked for.")
    client_assertion_type: ClientAssertionType = None
    client_assertion: ClientAssertion = None
    client_id: ClientId = None


class IntrospectionRequest(_TokenAboutRequest):
    """An introspection request (RFC 7662), form-encoded, authenticated as at the token
    endpoint."""

    token: str = Field(description="The access token to introspect.")


class RevocationRequest(_TokenAboutRequest):
    """A revocation request (RFC 7009), form-encoded, authenticated as at the token endpoint."""

    token: str = Field(description="The access token to revoke; one of the client's own.")


class TokenResponse(BaseModel):
    """An access token (RFC 6749, 5.1): an RFC 9068 JWT."""

    model_config = ConfigDict(extra="allow")
    access_token: str = Field(description="The access token, a JWT (`typ: at+jwt`, ES256).")
    token_type: Literal["Bearer", "DPoP"] = Field(
        description="`DPoP` when the token is bound to the key of the request's DPoP proof: send "
                    "it as `Authorization: DPoP <token>` with a proof on every call; otherwise "
                    "`Bearer`.", examples=["DPoP"])
    expires_in: int = Field(description="Seconds until the token expires.", examples=[600])
    scope: str = Field(description="The granted scopes, space-separated.",
                       examples=["accounts:read accounts:write"])


class TokenConfirmation(BaseModel):
    jkt: str = Field(description="RFC 7638 thumbprint of the DPoP key the token is bound to.")


class IntrospectionResponse(BaseModel):
    """What the platform knows of a token (RFC 7662). `active` is false, and nothing else is
    said, for every token a call would be refused with: unknown, expired, revoked, of a client
    or partner no longer active, or introspected by a client it was not issued to (the bank's
    operations clients may introspect any)."""

    active: bool
    client_id: str | _Text = None
    scope: str | _Text = Field(None, description="Granted scopes, space-separated.")
    sub: str | _Text = None
    aud: str | _Text = None
    iss: str | _Text = None
    exp: int | _Text = Field(None, description="Expiry, seconds since the epoch (RFC 7662).")
    iat: int | _Text = Field(None, description="Issue time, seconds since the epoch.")
    jti: str | _Text = None
    token_type: Literal["Bearer", "DPoP"] | _Text = None
    cnf: TokenConfirmation | _Text = Field(None, description="For a DPoP-bound token.")


class RevocationResponse(BaseModel):
    """Empty: RFC 7009 answers 200 whether the token was revoked, had already expired or was
    never valid."""

    model_config = ConfigDict(extra="forbid")


class OAuthErrorMembers(BaseModel):
    """An OAuth 2.0 error (RFC 6749, 5.2; RFC 7009, RFC 7662, RFC 9449): `error` and
    `error_description` inside the RFC 9457 problem, whose `code` is the same as `error` (but
    `unsupported_media_type` for a 415) and whose `request_id` is the `X-Request-Id`."""

    model_config = ConfigDict(title="OAuthError")
    error: str = Field(description="The OAuth error code: `invalid_request`, `invalid_client`, "
                                   "`invalid_grant`, `unsupported_grant_type`, `invalid_scope`, "
                                   "`invalid_dpop_proof` or `rate_limited`.",
                       examples=["invalid_client"])
    error_description: str = Field(description="What was wrong, for the developer.")


# ProblemDetails is the platform's component (gateway.app.build_openapi); the OAuth members
# are added beside it, so that a problem-aware client and an OAuth client both find theirs.
_OAUTH_ERROR_SCHEMA = {"allOf": [{"$ref": "#/components/schemas/ProblemDetails"},
                                 OAuthErrorMembers.model_json_schema()]}


class ServerMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    issuer: str
    token_endpoint: str
    jwks_uri: str


_TITLES = {
    "invalid_request": "Invalid request",
    "invalid_client": "Client authentication failed",
    "invalid_grant": "Invalid grant",
    "unauthorized_client": "Unauthorized client",
    "unsupported_grant_type": "Unsupported grant type",
    "invalid_scope": "Invalid scope",
    "unsupported_token_type": "Unsupported token type",
    "invalid_dpop_proof": "Invalid DPoP proof",
}


def _oauth_response(request: Request, status: int, body: Any, headers: Any, *,
                    code: str | None = None, title: str | None = None) -> Response:
    headers = dict(headers or [])
    headers["Cache-Control"] = "no-store"
    headers["Pragma"] = "no-cache"
    if status >= 400 and isinstance(body, dict) and "error" in body:
        # RFC 6749 error members inside an RFC 9457 problem, so that both OAuth client
        # libraries and problem-aware clients read it; with the request id, as every other
        # problem of the platform.
        if not body.get("error_description"):  # documented as always there
            body = {**body, "error_description": _TITLES.get(body["error"], "OAuth error")}
        problem = {
            "type": TYPE_PREFIX + (code or body["error"]),
            "title": title or _TITLES.get(body["error"], "OAuth error"),
            "status": status,
            "detail": body.get("error_description") or body["error"],
            "code": code or body["error"],
            **body,
        }
        request_id = state(request).get("request_id")
        if request_id:
            problem["request_id"] = request_id
        headers["Content-Type"] = PROBLEM_JSON
        return Response(json.dumps(problem), status_code=status, headers=headers)
    headers.pop("Content-Type", None)
    return JSONResponse(body, status_code=status, headers=headers)


def _problem_response(request: Request, problem: Problem) -> Response:
    """A problem the endpoint raised itself (a form it cannot read, a rate limit), with the
    RFC 6749 members too, so that an OAuth client library reads it as an error and not as a
    token: a request of the wrong media type is `invalid_request` there."""
    error = "invalid_request" if problem.status == 415 else problem.code
    body = {"error": error, "error_description": problem.detail or problem.title}
    return _oauth_response(request, problem.status, body, problem.headers, code=problem.code,
                           title=problem.title)


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


def _form_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": model.model_json_schema()}}}}


_ERROR_STATUSES = {
    400: "`invalid_request` (a parameter missing, repeated or malformed; the form not UTF-8; "
         "several `Authorization` or `DPoP` headers)",
    401: "`invalid_client`: client authentication failed (no credentials, a wrong secret, or a "
         "client assertion refused; the description says why). `WWW-Authenticate: Basic` "
         "when the client used the `Authorization` header or sent no credentials",
    415: "`invalid_request` (`code`: `unsupported_media_type`): the body must be "
         "`application/x-www-form-urlencoded`",
    429: "`rate_limited`: too many refused client authentications (`invalid_client`) from "
         "this address (at the token endpoint also: too many token requests from it); retry "
         "after `Retry-After` seconds",
}
_EXTRA_400 = {
    "token": ", `unsupported_grant_type`, `invalid_scope` (a scope the client does not hold), "
             "`invalid_dpop_proof`",
    "revocation": ", `invalid_grant` (the token was issued to another client)",
}


def _oauth_errors(endpoint: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for an OAuth endpoint's errors (OAuthError bodies)."""
    content = {PROBLEM_JSON: {"schema": _OAUTH_ERROR_SCHEMA}}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = _ERROR_STATUSES[status]
        if status == 400:
            description += _EXTRA_400.get(endpoint, "")
        out[status] = {"description": description, "content": content}
    out[401]["headers"] = {"WWW-Authenticate": {
        "schema": {"type": "string"}, "description": "`Basic realm=\"quanlian\"`"}}
    return out


_DPOP_HEADER = {"name": "DPoP", "in": "header", "required": False, "schema": {"type": "string"},
                "description": "A DPoP proof (RFC 9449) for `POST` to this endpoint: the token "
                               "is then bound to its key (`token_type` `DPoP`). Required for "
                               "production clients."}


@router.post(TOKEN_PATH, summary="Token endpoint (client credentials)",
             description="Issues an access token to an authenticated client (RFC 6749, 4.4). "
                         "Errors carry RFC 6749's `error` and `error_description` inside a "
                         "problem (RFC 9457) with `request_id`.",
             response_model=TokenResponse,
             openapi_extra=_form_body(TokenRequest) | {"parameters": [_DPOP_HEADER]},
             responses=_oauth_errors("token", 400, 401, 415, 429))
async def token(request: Request) -> Response:
    try:
        request.app.state.rate_limiter.check_token_endpoint(request)
        oauth_request = await _form_request(request)
        proofs = request.headers.getlist("dpop")
        if len(proofs) > 1:
            raise BadRequest("Send one DPoP header.", code="invalid_dpop_proof")
    except Problem as problem:
        return _problem_response(request, problem)
    server: QuanlianAuthorizationServer = request.app.state.oauth
    status, body, headers = await anyio.to_thread.run_sync(
        server.token, oauth_request, proofs[0] if proofs else None,
        _url(request, TOKEN_PATH))
    return _refused_client(request) or _oauth_response(request, status, body, headers)


def _refused_client(request: Request) -> Response | None:
    """The 429 for a refused client authentication from an address over its limit, or None.

    A refused client authentication (at the token, introspection or revocation endpoint)
    counts against its address as a refused access token does at a protected route
    (QUANLIAN_AUTH_FAILURE_LIMITS); over the limit it is a 429 instead. Only refusals count,
    after the credentials were checked: a valid client is served whatever its address's count."""
    if not state(request).get(CLIENT_REFUSED):
        return None
    try:
        request.app.state.rate_limiter.count_auth_failure(request)
    except Problem as problem:
        return _problem_response(request, problem)
    return None


async def _endpoint(name: str, request: Request, session: Session) -> Response:
    try:
        oauth_request = await _form_request(request)
    except Problem as problem:
        return _problem_response(request, problem)
    server: QuanlianAuthorizationServer = request.app.state.oauth
    status, body, headers = await anyio.to_thread.run_sync(server.endpoint, name, session,
                                                           oauth_request)
    return _refused_client(request) or _oauth_response(request, status, body, headers)


@router.post(INTROSPECT_PATH, summary="Token introspection (RFC 7662)",
             response_model=IntrospectionResponse, openapi_extra=_form_body(IntrospectionRequest),
             responses=_oauth_errors("introspection", 400, 401, 415, 429))
async def introspect(request: Request, session: Session = Depends(get_session)) -> Response:
    return await _endpoint("introspection", request, session)


@router.post(REVOKE_PATH, summary="Token revocation (RFC 7009)",
             response_model=RevocationResponse, openapi_extra=_form_body(RevocationRequest),
             responses=_oauth_errors("revocation", 400, 401, 415, 429))
async def revoke(request: Request, session: Session = Depends(get_session)) -> Response:
    return await _endpoint("revocation", request, session)
