"""Refused authentications at protected routes are limited per address
(QUANLIAN_AUTH_FAILURE_LIMITS): once an address has used up its failures, its further calls
without a valid token get 429 with `Retry-After` and `RateLimit-*`; a valid token from the
same address is still served, and valid calls never count. A call without a valid token to a
path no route matches, or with a method its path does not allow (under the recorded prefixes),
is such a failure too; and a throttled call of nobody leaves no evidence entry (it is still in
the metrics)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from joserfc import jwt
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.testclient import TestClient

from gateway.errors import TooManyRequests
from gateway.evidence.models import EvidenceEntry
from gateway.jose import CLIENT_REGISTRY
from gateway.ratelimit import RateLimiter
from tests.partners.helpers import csrf_of
from tests.tools.api import (
    ASSERTION_TYPE_JWT,
    ISSUER,
    basic,
    client_assertion,
    make_app,
    new_ec_key,
    new_partner_client,
)

TOKEN = "/oauth/token"


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


def client_at(app, address: str) -> TestClient:  # type: ignore[no-untyped-def]
    """A caller at its own address: the failures are counted per address."""
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


def assert_throttled(response, limit: int = 3) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 0 < int(response.headers["ratelimit-reset"]) <= 60


@pytest.fixture
def shared_address(database, tmp_path):  # type: ignore[no-untyped-def]
    """3 refused calls a minute per address: a guesser, a partner whose server shares its
    address, and a neighbour at another address."""
    app = make_app(database, tmp_path, auth_failure_limits="3/minute")
    guesser, neighbour = client_at(app, "203.0.113.7"), client_at(app, "203.0.113.8")
    with guesser, neighbour:
        yield guesser, new_partner_client(app, guesser), neighbour


def test_an_address_over_its_failures_gets_429_but_valid_tokens_are_served(
        shared_address) -> None:  # type: ignore[no-untyped-def]
    guesser, partner, neighbour = shared_address
    for _ in range(5):
        assert me(guesser, partner.token).status_code == 200  # valid calls never count
    refused = [me(guesser), me(guesser, forged_token(partner.client_id)),
               me(guesser, "not-a-token")]
    assert [r.status_code for r in refused] == [401, 401, 401]

    for response in (me(guesser, forged_token(partner.client_id)), me(guesser)):
        assert_throttled(response)

    assert me(guesser, partner.token).status_code == 200  # a valid token still works
    assert me(neighbour, forged_token(partner.client_id)).status_code == 401  # per address


def test_unknown_paths_and_methods_without_a_valid_token_count_as_refused_authentications(
        shared_address) -> None:  # type: ignore[no-untyped-def]
    scanner, partner, neighbour = shared_address
    valid = {"Authorization": f"Bearer {partner.token}"}
    for _ in range(5):  # a partner's own mistakes are plain 404s and 405s and never count
        assert scanner.get("/v1/no-such-thing", headers=valid).status_code == 404
        assert scanner.delete("/v1/me", headers=valid).status_code == 405
    for _ in range(5):  # nor do paths the evidence log does not keep
        assert scanner.get("/wp-login.php").status_code == 404
    probes = [scanner.get("/v1/no-such-thing"), scanner.delete("/v1/me"),
              scanner.get("/v1/.env", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})]
    assert [r.status_code for r in probes] == [404, 405, 404]
    assert probes[0].json()["code"] == "not_found"

    # Over its failures: unknown paths and methods, with no token or a forged one, and
    # refused tokens at real routes alike (one count per address).
    for response in (scanner.get("/v1/admin"), scanner.get("/sandbox/x", headers={
            "Authorization": f"Bearer {forged_token(partner.client_id)}"}),
            scanner.put("/v1/me"), me(scanner)):
        assert_throttled(response)
    oauth = scanner.get("/oauth/.git/config")
    assert_throttled(oauth)
    assert oauth.json()["error"] == "invalid_request"  # as this path's 404 would say

    assert scanner.get("/v1/no-such-thing", headers=valid).status_code == 404
    assert scanner.delete("/v1/me", headers=valid).status_code == 405
    assert me(scanner, partner.token).status_code == 200  # a valid token still works
    assert neighbour.get("/v1/admin").status_code == 404  # per address


def test_refused_tokens_and_unknown_paths_share_one_count(
        database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(database, tmp_path, auth_failure_limits="3/minute")
    with client_at(app, "203.0.113.9") as http:
        assert me(http).status_code == 401
        assert http.get("/v1/.env").status_code == 404
        assert me(http, "not-a-token").status_code == 401
        assert_throttled(http.get("/v1/.env"))


def test_refused_client_authentications_at_the_token_endpoint_count_too(
        shared_address) -> None:  # type: ignore[no-untyped-def]
    """A wrong secret, an unknown client, a client assertion no key of the client verifies:
    each `invalid_client` counts against its address, in the same count as refused tokens at
    protected routes; over the limit they are 429s that an OAuth client library reads as an
    error (RFC 6749 `error`). A valid client at that address is still issued its tokens."""
    guesser, partner, neighbour = shared_address
    app = guesser.app
    signer = new_partner_client(app, guesser, private_key=True)
    grant = {"grant_type": "client_credentials"}

    def assertion_form(key) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {**grant, "client_assertion_type": ASSERTION_TYPE_JWT,
                "client_assertion": client_assertion(signer.client_id, key)}

    for _ in range(5):  # tokens issued never count
        assert partner.fetch_token()["access_token"]
        assert guesser.post(TOKEN, data=assertion_form(signer.key)).status_code == 200
    for _ in range(3):  # nor do a valid client's other mistakes
        response = guesser.post(TOKEN, data={**grant, "scope": "no:such-scope"},
                                headers=basic(partner.client_id, partner.secret))
        assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")
    refused = [
        guesser.post(TOKEN, data=grant, headers=basic(partner.client_id, "qls_wrong")),
        guesser.post(TOKEN, data=grant, headers=basic("cli_" + uuid.uuid4().hex, "qls_wrong")),
        guesser.post(TOKEN, data=assertion_form(new_ec_key())),
    ]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [(401, "invalid_client")] * 3

    for response in (guesser.post(TOKEN, data=grant, headers=basic(partner.client_id, "x")),
                     guesser.post(TOKEN, data=assertion_form(new_ec_key())),
                     me(guesser)):  # one count with the protected routes' refusals
        assert_throttled(response)
    throttled = guesser.post(TOKEN, data=grant)  # no credentials at all
    assert_throttled(throttled)
    assert throttled.headers["content-type"].startswith("application/problem+json")
    assert throttled.headers["cache-control"] == "no-store"
    assert throttled.json()["error"] == "rate_limited" and throttled.json()["error_description"]

    assert partner.fetch_token()["access_token"]  # a valid client is still issued tokens
    assert guesser.post(TOKEN, data=assertion_form(signer.key)).status_code == 200
    assert me(guesser, partner.token).status_code == 200
    wrong = neighbour.post(TOKEN, data=grant, headers=basic(partner.client_id, "qls_wrong"))
    assert wrong.status_code == 401  # per address


@pytest.mark.parametrize("endpoint", ["/oauth/introspect", "/oauth/revoke"])
def test_refused_client_authentications_at_introspection_and_revocation_count_too(
        shared_address, endpoint) -> None:  # type: ignore[no-untyped-def]
    """Introspection and revocation authenticate their caller as the token endpoint does, so
    guessing a secret there is limited alike: each `invalid_client` counts against the address
    (one count with the other refusals), then 429 with the OAuth `error`; a valid client at that
    address is still answered."""
    guesser, partner, _ = shared_address
    form = {"token": partner.token}
    for _ in range(3):  # a valid client's calls never count
        assert guesser.post(endpoint, data=form,
                            headers=basic(partner.client_id, partner.secret)).status_code == 200
    refused = [guesser.post(endpoint, data=form, headers=basic(partner.client_id, "qls_wrong"))
               for _ in range(3)]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [(401, "invalid_client")] * 3
    throttled = guesser.post(endpoint, data=form, headers=basic(partner.client_id, "qls_wrong"))
    assert_throttled(throttled)
    assert throttled.json()["error"] == "rate_limited"
    assert_throttled(me(guesser))  # the same count as refused tokens
    answered = guesser.post(endpoint, data=form, headers=basic(partner.client_id, partner.secret))
    assert answered.status_code == 200


def call_entries(app) -> int:  # type: ignore[no-untyped-def]
    with app.state.database.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(EvidenceEntry)
                            .where(EvidenceEntry.kind == "call")).scalar_one()


def requests_counted(http: TestClient, route: str, status: int) -> float:
    """quanlian_http_requests_total for GET `route` answered `status`, as /metrics shows it."""
    pattern = re.compile(r'^quanlian_http_requests_total\{(?=[^}]*method="GET")'
                         rf'(?=[^}}]*route="{re.escape(route)}")(?=[^}}]*status="{status}")'
                         r"[^}]*\} (\S+)$", re.M)
    found = pattern.search(http.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def test_throttled_calls_of_nobody_leave_no_evidence_but_are_counted_in_metrics(
        database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(database, tmp_path, auth_failure_limits="3/minute",
                   rate_plans={"unlimited": (1_000_000, 10**10), "sandbox": (1000, 2)})
    with client_at(app, "203.0.113.10") as http:
        partner = new_partner_client(app, http)
        assert me(http, partner.token).status_code == 200
        unmatched_429s = requests_counted(http, "unmatched", 429)
        me_429s = requests_counted(http, "/v1/me", 429)
        before = call_entries(app)

        refused = [http.get("/v1/no-such-thing"), me(http), http.get("/v1/admin")]
        assert [r.status_code for r in refused] == [404, 401, 404]
        assert all("evidence-entry" in r.headers for r in refused)  # kept, up to the limit
        assert call_entries(app) == before + 3

        throttled = [http.get("/v1/.env") for _ in range(4)] + [me(http) for _ in range(2)]
        for response in throttled:
            assert_throttled(response)
            assert "evidence-entry" not in response.headers  # there is no entry to name
        assert call_entries(app) == before + 3  # the log stopped growing
        assert requests_counted(http, "unmatched", 429) == unmatched_429s + 4
        assert requests_counted(http, "/v1/me", 429) == me_429s + 2

        # A partner's calls are kept as before: its 404, and its own plan's 429s too.
        assert "evidence-entry" in http.get("/v1/nope", headers=partner.auth()).headers
        assert call_entries(app) == before + 3 + 1
        small = new_partner_client(app, http, rate_plan="sandbox").token  # 2 calls a day here
        before = call_entries(app)
        assert [me(http, small).status_code for _ in range(3)] == [200, 200, 429]
        assert call_entries(app) == before + 3


def test_other_throttled_calls_of_nobody_leave_no_evidence_either(
        database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same rule for the console's failed logins and the public endpoints' limit."""
    app = make_app(database, tmp_path, console_login_failure_limits="2/minute",
                   public_endpoint_limits="1/minute")
    with client_at(app, "203.0.113.11") as http:
        before = call_entries(app)
        page, logins = http.get("/console/login"), []
        for _ in range(3):  # each answer is the form again, with a fresh CSRF token
            page = http.post("/console/login", data={
                "username": "nobody", "password": "guess", "csrf_token": csrf_of(page.text)})
            logins.append(page)
        assert [r.status_code for r in logins] == [401, 401, 429]
        assert "retry-after" in logins[2].headers
        applications = [http.post("/v1/partner-applications", json={}) for _ in range(2)]
        assert [r.status_code for r in applications] == [422, 429]
        throttled = (logins[2], applications[1])
        assert [("evidence-entry" in r.headers) for r in (*logins, *applications)] == [
            True, True, False, True, False]
        assert call_entries(app) == before + 1 + 2 + 1  # the login page, two logins, one 422
        assert all(r.headers.get("x-request-id") for r in throttled)


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
