"""Factories for tests: an app on a test database, partners with real OAuth clients, tokens.

Tokens always come from the real token endpoint; nothing here bypasses authentication.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.db import Database
from gateway.jose import CLIENT_REGISTRY, sha256_b64url
from gateway.oauth.clients import create_client
from gateway.oauth.scopes import PARTNER_SCOPES
from gateway.settings import Settings
from gateway.tenancy import Partner, create_partner

ISSUER = "http://testserver"
ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    overrides.setdefault("issuer", ISSUER)
    overrides.setdefault("redis_url", None)
    overrides.setdefault("token_endpoint_limits", "100000/second")
    overrides.setdefault("public_endpoint_limits", "100000/second")
    overrides.setdefault("run_worker", False)
    return Settings(data_dir=data_dir, database_url=database_url, **overrides)


def make_app(database: Database, data_dir: Path, **overrides: Any) -> FastAPI:
    settings = make_settings(data_dir, database.url, **overrides)
    # No start-up checks: tests build apps on throwaway databases and data dirs (some made
    # unreachable on purpose); tests/gateway/test_keyguard.py checks them through the entry points.
    return create_app(settings, database=database, start_background=False, startup_checks=False)


def new_ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex[:12], "alg": "ES256"},
                              private=True)


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def client_assertion(client_id: str, key: Any, *, alg: str = "ES256", aud: str = ISSUER,
                     with_kid: bool = True, **claims: Any) -> str:
    """A private_key_jwt assertion; `with_kid=False` signs as authlib's client does, naming no
    key."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 300,
            "jti": uuid.uuid4().hex}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"} if with_kid else {"alg": alg, "typ": "JWT"}
    return jwt.encode(header, body, key, registry=CLIENT_REGISTRY)


def dpop_proof(key: Any, method: str, url: str, *, access_token: str | None = None,
               **overrides: Any) -> str:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    header.update(overrides.pop("header", {}))
    claims: dict[str, Any] = {"jti": uuid.uuid4().hex, "htm": method, "htu": url,
                              "iat": int(time.time())}
    if access_token is not None:
        claims["ath"] = sha256_b64url(access_token)
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(header, claims, key, registry=CLIENT_REGISTRY)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@dataclass
class PartnerClient:
    """A partner's server: a client id and credentials, and a way to make authorized calls."""

    http: TestClient
    client_id: str
    partner_id: str
    tenant_id: str
    secret: str | None = None
    key: Any = None
    dpop_key: Any = None
    scopes: list[str] = field(default_factory=list)
    _token: str | None = None

    def fetch_token(self, scope: str | None = None) -> dict[str, Any]:
        form = {"grant_type": "client_credentials"}
        if scope:
            form["scope"] = scope
        headers: dict[str, str] = {}
        if self.key is not None:
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = client_assertion(self.client_id, self.key)
        else:
            headers.update(basic(self.client_id, self.secret or ""))
        if self.dpop_key is not None:
            headers["DPoP"] = dpop_proof(self.dpop_key, "POST", ISSUER + "/oauth/token")
        response = self.http.post("/oauth/token", data=form, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    @property
    def token(self) -> str:
        if self._token is None:
            self._token = self.fetch_token()["access_token"]
        return self._token

    def auth(self, method: str = "GET", path: str = "/v1/me") -> dict[str, str]:
        if self.dpop_key is not None:
            return {"Authorization": f"DPoP {self.token}",
                    "DPoP": dpop_proof(self.dpop_key, method, ISSUER + path.split("?")[0],
                                       access_token=self.token)}
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, *, idempotency_key: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        all_headers = self.auth(method, path)
        if idempotency_key is None and method in ("POST", "PUT", "PATCH", "DELETE"):
            idempotency_key = uuid.uuid4().hex
        if idempotency_key:
            all_headers["Idempotency-Key"] = idempotency_key
        all_headers.update(headers or {})
        return self.http.request(method, path, headers=all_headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        if json_body is not None:
            kwargs["json"] = json_body
        return self.request("POST", path, **kwargs)


def new_partner_client(app: FastAPI, http: TestClient, *, environment: str = "sandbox",
                       scopes: list[str] | tuple[str, ...] = PARTNER_SCOPES,
                       private_key: bool = False, dpop: bool = False,
                       name: str | None = None, partner_status: str | None = None,
                       operations: bool = False, partner: Partner | None = None,
                       rate_plan: str | None = None) -> PartnerClient:
    """A new partner (unless given) with one client; sandbox clients use a secret by default."""
    database: Database = app.state.database
    key = new_ec_key() if (private_key or environment == "production") else None
    dpop_key = new_ec_key() if (dpop or environment == "production") else None
    with database.transaction() as session:
        if partner is None:
            partner = create_partner(
                session, name=name or f"Partner {uuid.uuid4().hex[:8]}",
                status=partner_status or ("active" if environment == "production" or operations
                                          else "submitted"),
                is_operations=operations)
        else:
            partner = session.merge(partner)
        issued = create_client(session, partner=partner, environment=environment,
                               name=partner.name, scopes=list(scopes),
                               jwks=public_jwks(key) if key is not None else None,
                               with_secret=key is None, require_dpop=dpop_key is not None,
                               rate_plan=rate_plan or "unlimited")
        return PartnerClient(http=http, client_id=issued.client.id, partner_id=partner.id,
                             tenant_id=issued.client.tenant_id, secret=issued.secret, key=key,
                             dpop_key=dpop_key, scopes=list(scopes))


def problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert a response is an RFC 9457 problem with this status (and code)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and isinstance(body.get("code"), str)
    if code is not None:
        assert body["code"] == code, body
    return body


def dumps(data: Any) -> str:
    return json.dumps(data)


def sandbox_signup(app: FastAPI, http: TestClient, *, name: str = "Acme",
                   email: str = "dev@acme.example") -> tuple[PartnerClient, dict[str, Any]]:
    """A self-serve sandbox sign-up over HTTP (`POST /sandbox/v1/signup`): the developer's client
    and the whole answer. The client is moved off the sandbox rate plan, which a test's burst of
    calls would exhaust."""
    from sqlalchemy import update

    from gateway.oauth.models import OAuthClient

    response = http.post("/sandbox/v1/signup", json={"name": name, "email": email})
    assert response.status_code == 201, response.text
    body = response.json()
    with app.state.database.transaction() as session:
        session.execute(update(OAuthClient).where(OAuthClient.id == body["client_id"])
                        .values(rate_plan="unlimited"))
    return PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                         tenant_id=body["tenant_id"], secret=body["client_secret"]), body
