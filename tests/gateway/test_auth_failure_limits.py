"""Refused authentications at protected routes are limited per address
(QUANLIAN_AUTH_FAILURE_LIMITS): once an address has used up its failures, its further calls
without a valid token get 429 with `Retry-After` and `RateLimit-*`; a valid token from the
same address is still served, and valid calls never count."""

from __future__ import annotations

import time
import uuid

import pytest
from joserfc import jwt
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.errors import TooManyRequests
from gateway.jose import CLIENT_REGISTRY
from gateway.ratelimit import RateLimiter
from tests.tools.api import ISSUER, make_app, new_ec_key, new_partner_client


def forged_token(client_id: str) -> str:
    """A well-formed access token signed with a key that is not the platform's."""
    now = int(time.time())
    key = new_ec_key()
    claims = {"iss": ISSUER, "sub": client_id, "aud": ISSUER, "client_id": client_id,
              "scope": "accounts:read", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims, key,
                      registry=CLIENT_REGISTRY)


def me(http: TestClient, token: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get("/v1/me", headers=headers)


def test_an_address_over_its_failures_gets_429_but_valid_tokens_are_served(
        database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(database, tmp_path, auth_failure_limits="3/minute")
    guesser = TestClient(app, raise_server_exceptions=False, client=("203.0.113.7", 40000))
    neighbour = TestClient(app, raise_server_exceptions=False, client=("203.0.113.8", 40000))
    with guesser, neighbour:
        partner = new_partner_client(app, guesser)  # its server shares the guesser's address
        for _ in range(5):
            assert me(guesser, partner.token).status_code == 200  # valid calls never count
        refused = [me(guesser), me(guesser, forged_token(partner.client_id)),
                   me(guesser, "not-a-token")]
        assert [r.status_code for r in refused] == [401, 401, 401]

        for response in (me(guesser, forged_token(partner.client_id)), me(guesser)):
            assert response.status_code == 429, response.text
            assert response.json()["code"] == "rate_limited"
            assert 0 < int(response.headers["retry-after"]) <= 60
            assert response.headers["ratelimit-limit"] == "3"
            assert response.headers["ratelimit-remaining"] == "0"
            assert 0 < int(response.headers["ratelimit-reset"]) <= 60

        assert me(guesser, partner.token).status_code == 200  # a valid token still works
        assert me(neighbour, forged_token(partner.client_id)).status_code == 401  # per address


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_url")


def from_address(address: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/me", "headers": [],
                    "client": (address, 40000), "query_string": b""})


def limiter(storage: str) -> RateLimiter:
    return RateLimiter(storage, "1000/second", "1000/second", {"tiny": (2, 1000)},
                       auth_failure_limits="2/10 minutes")


def test_failures_are_counted_per_address_and_across_processes_with_redis(storage: str) -> None:
    """With Redis, two limiters stand for two server processes sharing the counts."""
    first = limiter(storage)
    second = first if storage == "memory://" else limiter(storage)
    run = uuid.uuid4().int  # a fresh address per run: Redis keeps counts between runs
    guesser = from_address(f"10.{run % 250}.{run // 250 % 250}.1")
    first.count_auth_failure(guesser)
    second.count_auth_failure(guesser)
    with pytest.raises(TooManyRequests) as refused:
        first.count_auth_failure(guesser)
    assert 0 < int(refused.value.headers["Retry-After"]) <= 600
    assert refused.value.headers["RateLimit-Limit"] == "2"
    second.count_auth_failure(from_address(f"10.{run % 250}.{run // 250 % 250}.2"))


def test_no_limits_configured_refuses_no_one() -> None:
    limiter = RateLimiter("memory://", "1000/second", "1000/second", {"tiny": (2, 1000)})
    for _ in range(50):
        limiter.count_auth_failure(from_address("10.0.0.1"))
