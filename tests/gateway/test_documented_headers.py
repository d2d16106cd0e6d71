"""The published document declares the response headers the platform sends, and it is true: a
sample of real calls (a read with a token, its 401 and 403, a 429 of nobody and of a client, a
replayed idempotent call, the token endpoint, a public read) carries only headers the document
declares on that operation and status, and every header it declares as always sent."""

from __future__ import annotations

import json
import uuid

import pytest
from starlette.testclient import TestClient

from gateway.cli import openapi_document
from tests.tools.api import basic, make_app, new_partner_client

UNHELD = "x_00000000000000000000000000"
RATE_LIMIT = {"retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
              "ratelimit-policy"}


@pytest.fixture(scope="module")
def spec():
    return json.loads(openapi_document())


def declared(spec, method: str, path: str, status: int) -> dict[str, dict]:
    """The headers the document declares on this response (lower-case names), resolved."""
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    found = {}
    for name, header in response.get("headers", {}).items():
        if "$ref" in header:
            header = spec["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
        found[name.lower()] = header
    return found


def assert_documented(spec, method: str, path: str, response) -> set[str]:  # type: ignore[no-untyped-def]
    """Every documented header the answer carries is declared on its operation and status, and
    every header declared as required is carried. Returns the documented headers it carried."""
    where = f"{method} {path} -> {response.status_code}"
    documented = {name.lower() for name in spec["components"]["headers"]}
    here = declared(spec, method, path, response.status_code)
    carried = {name for name in documented if name in response.headers}
    assert carried <= set(here), (where, carried - set(here))
    required = {name for name, header in here.items() if header.get("required")}
    assert required <= carried, (where, required - carried)
    return carried


def test_the_headers_are_declared_once_and_referenced_on_every_response(spec):
    headers = spec["components"]["headers"]
    assert {"X-Request-Id", "X-Client-Request-Id", "x-fapi-interaction-id", "Evidence-Entry",
            "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
            "RateLimit-Policy", "Idempotent-Replayed", "WWW-Authenticate"} <= set(headers)
    assert all(header.get("description") and header.get("schema") for header in headers.values())
    unused = set(headers)
    for path, item in spec["paths"].items():
        for method, op in item.items():
            idempotent = any(p["name"] == "Idempotency-Key" for p in op.get("parameters", ()))
            for status, response in op["responses"].items():
                where = f"{method.upper()} {path} {status}"
                here = declared(spec, method, path, int(status))
                unused -= {ref["$ref"].rsplit("/", 1)[1]
                           for ref in response.get("headers", {}).values() if "$ref" in ref}
                assert {"x-request-id", "x-client-request-id",
                        "x-fapi-interaction-id"} <= set(here), where
                assert ("evidence-entry" in here) == path.startswith(
                    ("/v1/", "/sandbox/", "/oauth/")), where
                if status == "429":
                    assert set(here) >= RATE_LIMIT, where
                if status == "503":
                    assert "retry-after" in here, where
                if status == "401" or (status == "403" and "security" in op):
                    assert "www-authenticate" in here, where
                if idempotent and status.startswith("2"):
                    assert "idempotent-replayed" in here, where
    assert not unused


def test_a_read_with_a_token_and_its_refusals(spec, app, http, partner):
    answer = http.get("/v1/me", headers={**partner.auth(), "X-Request-Id": "my-call-1",
                                         "x-fapi-interaction-id": str(uuid.uuid4())})
    assert answer.status_code == 200, answer.text
    carried = assert_documented(spec, "GET", "/v1/me", answer)
    assert {"x-request-id", "x-client-request-id", "x-fapi-interaction-id",
            "evidence-entry"} <= carried
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["x-client-request-id"] == "my-call-1"
    assert "; leaf=" in answer.headers["evidence-entry"]

    anonymous = http.get("/v1/me", headers={"X-Request-Id": "not valid"})
    assert anonymous.status_code == 401
    carried = assert_documented(spec, "GET", "/v1/me", anonymous)
    assert {"www-authenticate", "evidence-entry"} <= carried
    assert "x-client-request-id" not in carried

    weak = new_partner_client(app, http, scopes=["evidence:read"])
    refused = http.get("/v1/transfers", headers=weak.auth("GET", "/v1/transfers"))
    assert refused.status_code == 403, refused.text
    assert "www-authenticate" in assert_documented(spec, "GET", "/v1/transfers", refused)
    path = "/sandbox/v1/clock/advance"  # any write scope will do: no challenge names one
    refused = http.post(path, json={"seconds": 1}, headers=weak.auth("POST", path))
    assert refused.status_code == 403, refused.text
    assert_documented(spec, "POST", path, refused)


def test_the_token_endpoint_and_a_public_read(spec, app, http, partner):
    token = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                      headers=basic(partner.client_id, partner.secret))
    assert token.status_code == 200, token.text
    assert_documented(spec, "POST", "/oauth/token", token)
    refused = http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert refused.status_code == 401, refused.text
    assert_documented(spec, "POST", "/oauth/token", refused)
    health = http.get("/healthz")
    assert "evidence-entry" not in assert_documented(spec, "GET", "/healthz", health)


def test_429s_carry_the_rate_limit_headers(spec, database, tmp_path):
    app = make_app(database, tmp_path, auth_failure_limits="1/minute",
                   rate_plans={"unlimited": (1_000_000, 10**10), "sandbox": (1000, 2)})
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/v1/me").status_code == 401
        throttled = http.get("/v1/me")
        assert throttled.status_code == 429, throttled.text
        carried = assert_documented(spec, "GET", "/v1/me", throttled)
        assert carried >= RATE_LIMIT and "evidence-entry" not in carried  # a call of nobody

        client = new_partner_client(app, http, rate_plan="sandbox")
        answers = [http.get("/v1/me", headers=client.auth()) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429], answers[-1].text
        carried = assert_documented(spec, "GET", "/v1/me", answers[-1])
        assert RATE_LIMIT | {"evidence-entry"} <= carried
        assert answers[-1].headers["ratelimit-policy"] == "2;w=86400"


def test_a_replayed_idempotent_call(spec, partner):
    path = "/sandbox/v1/clock/advance"
    key = uuid.uuid4().hex
    first = partner.post(path, {"seconds": 60}, idempotency_key=key)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in assert_documented(spec, "POST", path, first)
    again = partner.post(path, {"seconds": 60}, idempotency_key=key)
    assert again.status_code == 200 and again.json() == first.json()
    assert "idempotent-replayed" in assert_documented(spec, "POST", path, again)

    # A refusal the route made is stored and replayed too (a 404 here).
    template = "/v1/payroll/batches/{batch_id}/cancel"
    url = template.replace("{batch_id}", UNHELD)
    key = uuid.uuid4().hex
    first = partner.post(url, idempotency_key=key)
    assert first.status_code == 404, first.text
    again = partner.post(url, idempotency_key=key)
    assert again.status_code == 404 and again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" in assert_documented(spec, "POST", template, again)
