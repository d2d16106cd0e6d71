"""What the token, introspection and revocation endpoints answer when they refuse a request, as
a partner developer (and an OAuth client library) reads it: RFC 6749 errors with a description
that says what was wrong, `invalid_client` always a 401, never a hint of which client ids
exist, and the request id of every other problem of the platform."""

from __future__ import annotations

import base64
import time
import uuid

import pytest
from joserfc import jwt
from starlette.testclient import TestClient

from gateway.jose import CLIENT_REGISTRY
from gateway.oauth.clients import revoke_client
from tests.tools.api import (
    ASSERTION_TYPE_JWT,
    ISSUER,
    basic,
    client_assertion,
    dpop_proof,
    make_app,
    new_ec_key,
    new_partner_client,
)

TOKEN = "/oauth/token"
GRANT = {"grant_type": "client_credentials"}
BASIC_CHALLENGE = 'Basic realm="quanlian"'
SECRET_REFUSED = ("Client authentication failed: the client secret is not valid for this "
                  "client (only sandbox clients have secrets; production clients authenticate "
                  "with a client assertion, private_key_jwt).")


def oauth_error(response, status: int, error: str) -> dict:
    """An RFC 6749 error inside an RFC 9457 problem, with the request id of the response."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"], body
    assert body["status"] == status and body["detail"] == body["error_description"], body
    assert body["request_id"] == response.headers["x-request-id"], body
    return body


def assertion_form(assertion: str, **extra: str) -> dict[str, str]:
    return {**GRANT, "client_assertion_type": ASSERTION_TYPE_JWT, "client_assertion": assertion,
            **extra}


# -- 1. A wrong secret is told as such, and reads as an unknown client ----------------------

def test_a_wrong_secret_is_told_as_such_and_reads_exactly_as_an_unknown_client(app, http):
    sandbox = new_partner_client(app, http)
    production = new_partner_client(app, http, environment="production")
    revoked = new_partner_client(app, http)
    with app.state.database.transaction() as session:
        revoke_client(session, revoked.client_id)
    attempts = {
        "wrong secret": basic(sandbox.client_id, "qls_wrong"),
        "unknown client": basic("cli_" + uuid.uuid4().hex, "qls_wrong"),
        "production client (no secret)": basic(production.client_id, "qls_guess"),
        "revoked client, its real secret": basic(revoked.client_id, revoked.secret),
    }
    answers = {}
    for name, headers in attempts.items():
        response = http.post(TOKEN, data=GRANT, headers=headers)
        body = oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"] == BASIC_CHALLENGE, name
        answers[name] = (body["error_description"], body["title"], body["type"])
    # One answer for all four: nobody learns from it which client ids exist.
    assert set(answers.values()) == {(SECRET_REFUSED, "Client authentication failed",
                                      "urn:quanlian:problem:invalid_client")}, answers
    # The same at introspection and revocation.
    for endpoint in ("/oauth/introspect", "/oauth/revoke"):
        for headers in (attempts["wrong secret"], attempts["unknown client"]):
            body = oauth_error(http.post(endpoint, data={"token": "x"}, headers=headers), 401,
                               "invalid_client")
            assert body["error_description"] == SECRET_REFUSED
    assert http.post(TOKEN, data=GRANT, headers=basic(sandbox.client_id, sandbox.secret)
                     ).status_code == 200


@pytest.mark.parametrize("form, headers, says", [
    ({}, {}, "no client credentials were sent"),
    ({"client_id": "cli_x", "client_secret": "qls_x"}, {}, "client_secret_post) is not accepted"),
    ({}, {"Authorization": "Bearer abc"}, "does not carry HTTP Basic credentials"),
    ({}, {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
     "does not carry HTTP Basic credentials"),
    # Not UTF-8 once decoded: a 500 before.
    ({}, {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
     "does not carry HTTP Basic credentials"),
], ids=["nothing", "secret-in-form", "bearer", "no-colon", "not-utf8"])
def test_missing_or_unusable_credentials_are_told(http, form, headers, says):
    response = http.post(TOKEN, data={**GRANT, **form}, headers=headers)
    body = oauth_error(response, 401, "invalid_client")
    assert body["error_description"].startswith("Client authentication failed: ")
    assert says in body["error_description"], body
    assert "[" not in body["error_description"]  # no Python list of method names
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


def test_an_assertion_no_key_verifies_reads_the_same_whether_the_client_exists(app, http):
    """Before the signature is verified nothing about the client is told: an unknown client, a
    client without keys and a key the client never registered read alike."""
    keyed = new_partner_client(app, http, private_key=True)
    secret_only = new_partner_client(app, http)
    unknown = "cli_" + uuid.uuid4().hex
    stranger = new_ec_key()
    descriptions = set()
    for client_id in (keyed.client_id, secret_only.client_id, unknown):
        assertion = jwt.encode({"alg": "ES256", "kid": "k1"},
                               {"iss": client_id, "sub": client_id, "aud": ISSUER,
                                "exp": int(time.time()) + 60, "jti": uuid.uuid4().hex},
                               stranger, registry=CLIENT_REGISTRY)
        response = http.post(TOKEN, data=assertion_form(assertion))
        body = oauth_error(response, 401, "invalid_client")
        assert "www-authenticate" not in response.headers  # no Authorization header was used
        descriptions.add(body["error_description"].replace(client_id, "<client>"))
    assert descriptions == {
        "Client authentication failed: the client assertion is not valid: its signature does "
        "not verify with any key of client '<client>' (alg ES256, kid 'k1'): sign with a "
        "private key whose public key is registered for the client (its JWKS or jwks_uri)."}


@pytest.mark.parametrize("form, says", [
    ({"client_assertion_type": "urn:example:other", "client_assertion": "x"},
     "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
    ({"client_assertion_type": ASSERTION_TYPE_JWT}, "the client_assertion parameter is missing"),
    ({"client_assertion_type": ASSERTION_TYPE_JWT, "client_assertion": "not-a-jwt"},
     "the client assertion is not valid: it is not a compact JWS"),
], ids=["other-type", "no-assertion", "not-a-jwt"])
def test_a_malformed_assertion_is_told(http, form, says):
    body = oauth_error(http.post(TOKEN, data={**GRANT, **form}), 401, "invalid_client")
    assert says in body["error_description"], body


def test_caller_text_in_a_description_never_makes_a_server_error(app, http):
    """authlib refuses a description with `"`, `\\` or non-ASCII characters: echoing a scope,
    a `kid` or a grant type with one was a 500."""
    partner = new_partner_client(app, http)
    keyed = new_partner_client(app, http, private_key=True)
    auth = basic(partner.client_id, partner.secret)
    for scope in ('accounts:read a"b', "账户:读", "a\\b"):
        body = oauth_error(http.post(TOKEN, data={**GRANT, "scope": scope}, headers=auth), 400,
                           "invalid_scope")
        assert body["error_description"].startswith("Scopes not granted to this client: ")
    assertion = jwt.encode({"alg": "ES256", "kid": "a'\"b\\é"},
                           {"iss": keyed.client_id, "sub": keyed.client_id, "aud": ISSUER,
                            "exp": int(time.time()) + 60, "jti": uuid.uuid4().hex},
                           keyed.key, registry=CLIENT_REGISTRY)
    body = oauth_error(http.post(TOKEN, data=assertion_form(assertion)), 401, "invalid_client")
    assert "kid 'a'?b??'" in body["error_description"], body
    body = oauth_error(http.post(TOKEN, data={"grant_type": 'x"y'}), 400,
                       "unsupported_grant_type")
    assert "'x?y'" in body["error_description"]


# -- 2. Every invalid_client is a 401 ------------------------------------------------------

def _claims(client_id: str, **over):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now, "exp": now + 300,
              "jti": uuid.uuid4().hex}
    claims.update(over)
    return claims


@pytest.mark.parametrize("over, says", [
    ({"aud": "https://elsewhere.example"}, "'aud' must be the issuer identifier as a string"),
    ({"aud": [ISSUER]}, "'aud' must be the issuer identifier as a string"),
    ({"exp": int(time.time()) + 7200}, "lives longer than 60 minutes"),
    ({"iat": None, "exp": int(time.time()) + 7200}, "expires more than 60 minutes from now"),
    ({"exp": int(time.time()) - 5}, "it has expired"),
], ids=["aud-foreign", "aud-array", "exp-too-far", "exp-too-far-no-iat", "expired"])
def test_a_refused_assertion_is_a_401_that_says_why(app, http, over, says):
    pc = new_partner_client(app, http, private_key=True)
    claims = {k: v for k, v in _claims(pc.client_id, **over).items() if v is not None}
    assertion = jwt.encode({"alg": "ES256", "kid": pc.key.kid}, claims, pc.key,
                           registry=CLIENT_REGISTRY)
    response = http.post(TOKEN, data=assertion_form(assertion))
    body = oauth_error(response, 401, "invalid_client")
    assert body["error_description"].startswith(
        "Client authentication failed: the client assertion is not valid: ")
    assert says in body["error_description"], body
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("endpoint", [TOKEN, "/oauth/introspect", "/oauth/revoke"])
def test_a_replayed_assertion_is_a_401_at_every_endpoint(app, http, endpoint):
    pc = new_partner_client(app, http, private_key=True)
    form = assertion_form(client_assertion(pc.client_id, pc.key), token="x")
    assert http.post(endpoint, data=form).status_code == 200
    body = oauth_error(http.post(endpoint, data=form), 401, "invalid_client")
    assert "its 'jti' was used before" in body["error_description"], body


def test_two_ways_of_authenticating_at_once_are_an_invalid_request(app, http):
    """RFC 6749, 5.2: `invalid_request` is the request that "utilizes more than one mechanism
    for authenticating the client". Which client asks must not depend on which one the server
    reads first: a valid assertion beside valid Basic credentials of another client gets no
    token."""
    pc = new_partner_client(app, http, private_key=True)
    other = new_partner_client(app, http)
    basic = (other.client_id, other.secret)
    for assertion in (client_assertion(pc.client_id, pc.key),
                      client_assertion(pc.client_id, pc.key, aud=[ISSUER])):
        response = http.post(TOKEN, data=assertion_form(assertion), auth=basic)
        body = oauth_error(response, 400, "invalid_request")
        assert "not both" in body["error_description"]
    # a form client_id naming another client than HTTP Basic's
    response = http.post(TOKEN, data={"grant_type": "client_credentials",
                                      "client_id": pc.client_id}, auth=basic)
    oauth_error(response, 400, "invalid_request")
    same = http.post(TOKEN, data={"grant_type": "client_credentials",
                                  "client_id": other.client_id}, auth=basic)
    assert same.status_code == 200, same.text


# -- 3. grant_type --------------------------------------------------------------------------

@pytest.mark.parametrize("form", [{"scope": "accounts:read"}, {"grant_type": ""}],
                         ids=["missing", "empty"])
def test_a_missing_grant_type_is_an_invalid_request(partner, http, form):
    response = http.post(TOKEN, data=form, headers=basic(partner.client_id, partner.secret))
    body = oauth_error(response, 400, "invalid_request")
    assert body["error_description"] == "The grant_type parameter is required."


@pytest.mark.parametrize("grant_type", ["password", "authorization_code",
                                        "urn:ietf:params:oauth:grant-type:jwt-bearer"])
def test_an_unknown_grant_type_is_named(partner, http, grant_type):
    response = http.post(TOKEN, data={"grant_type": grant_type},
                         headers=basic(partner.client_id, partner.secret))
    body = oauth_error(response, 400, "unsupported_grant_type")
    assert body["error_description"] == (
        f"The grant_type '{grant_type}' is not supported: this server issues tokens for "
        "client_credentials only.")


def test_a_missing_grant_type_burns_no_dpop_proof(app, http):
    pc = new_partner_client(app, http, dpop=True)
    proof = dpop_proof(pc.dpop_key, "POST", ISSUER + TOKEN)
    auth = basic(pc.client_id, pc.secret)
    oauth_error(http.post(TOKEN, data={"scope": "accounts:read"}, headers=auth | {"DPoP": proof}),
                400, "invalid_request")
    response = http.post(TOKEN, data=GRANT, headers=auth | {"DPoP": proof})
    assert response.status_code == 200, response.text


# -- 4. request_id in every OAuth error -----------------------------------------------------

def test_every_oauth_error_carries_the_request_id(app, http):
    partner = new_partner_client(app, http)
    auth = basic(partner.client_id, partner.secret)
    form = {"content-type": "application/x-www-form-urlencoded"}
    cases = [
        (TOKEN, {"data": GRANT, "headers": basic(partner.client_id, "qls_wrong")}, 401,
         "invalid_client"),
        (TOKEN, {"data": {"grant_type": "password"}, "headers": auth}, 400,
         "unsupported_grant_type"),
        (TOKEN, {"data": {**GRANT, "scope": "operations:write"}, "headers": auth}, 400,
         "invalid_scope"),
        (TOKEN, {"data": GRANT, "headers": auth | {"DPoP": "x"}}, 400, "invalid_dpop_proof"),
        (TOKEN, {"content": b"grant_type=a&grant_type=b", "headers": form | auth}, 400,
         "invalid_request"),
        (TOKEN, {"content": b"grant_type=\xff", "headers": form | auth}, 400, "invalid_request"),
        (TOKEN, {"json": GRANT, "headers": auth}, 415, "invalid_request"),
        (TOKEN, {"data": GRANT, "headers": [("DPoP", "a"), ("DPoP", "b")]}, 400,
         "invalid_dpop_proof"),
        (TOKEN, {"data": GRANT, "headers": [("Authorization", auth["Authorization"])] * 2},
         400, "invalid_request"),
        ("/oauth/introspect", {"data": {"token_type_hint": "x"}, "headers": auth}, 400,
         "invalid_request"),
        ("/oauth/introspect", {"data": {"token": "x"}, "headers": basic("cli_no", "x")}, 401,
         "invalid_client"),
        ("/oauth/introspect", {"json": {"token": "x"}, "headers": auth}, 415, "invalid_request"),
        ("/oauth/revoke", {"data": {"token_type_hint": "x"}, "headers": auth}, 400,
         "invalid_request"),
        ("/oauth/revoke", {"data": {"token": "x"}}, 401, "invalid_client"),
        ("/oauth/revoke", {"content": b"token=a&token=b", "headers": form | auth}, 400,
         "invalid_request"),
    ]
    for path, kwargs, status, error in cases:
        oauth_error(http.post(path, **kwargs), status, error)
    # The body names the call by the platform's request id, as the header does; a request id
    # the caller chose comes back apart (it named the call here until QA F-06).
    response = http.post(TOKEN, data={"grant_type": "password"},
                         headers={"X-Request-Id": "partner-trace-42"})
    body = oauth_error(response, 400, "unsupported_grant_type")
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"].startswith("req_")
    assert response.headers["x-client-request-id"] == "partner-trace-42"


def test_revoking_another_clients_token_is_told(app, http):
    owner = new_partner_client(app, http)
    other = new_partner_client(app, http)
    response = http.post("/oauth/revoke", data={"token": owner.token},
                         headers=basic(other.client_id, other.secret))
    body = oauth_error(response, 400, "invalid_grant")
    assert body["error_description"] == "The token was issued to another client."
    assert owner.get("/v1/me").status_code == 200


def test_a_rate_limited_token_request_is_an_oauth_error(database, tmp_path):
    app = make_app(database, tmp_path, token_endpoint_limits="1/minute")
    with TestClient(app) as http:
        http.post(TOKEN, data=GRANT)
        response = http.post(TOKEN, data=GRANT)
    body = oauth_error(response, 429, "rate_limited")
    assert body["code"] == "rate_limited" and int(response.headers["retry-after"]) >= 1


def test_authlib_client_reads_the_errors(database, tmp_path):
    """A standard OAuth client library (authlib's, over real HTTP) gets its token, and reads a
    refusal, a rate limit included, as an OAuth error with its description (without `error`,
    it took the 429's body for a token)."""
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import OAuth2Client

    from gateway.oauth.clients import create_client
    from gateway.tenancy import create_partner
    from tests.tools.live import free_port, serve

    port = free_port()
    app = make_app(database, tmp_path, issuer=f"http://127.0.0.1:{port}",
                   token_endpoint_limits="2/minute")
    with database.transaction() as s:
        partner = create_partner(s, name="Authlib user", status="active")
        issued = create_client(s, partner=partner, environment="sandbox", name="authlib",
                               scopes=["accounts:read"], with_secret=True)
        client_id, secret = issued.client.id, issued.secret
    with serve(app, port) as base:
        url = base + TOKEN
        with OAuth2Client(client_id, secret) as session:
            assert session.fetch_token(url, grant_type="client_credentials")["token_type"] == (
                "Bearer")
        with OAuth2Client(client_id, "qls_wrong") as session:
            with pytest.raises(OAuthError) as refused:
                session.fetch_token(url, grant_type="client_credentials")
            assert refused.value.error == "invalid_client"
            assert refused.value.description == SECRET_REFUSED
            with pytest.raises(OAuthError) as limited:  # the third request in the minute
                session.fetch_token(url, grant_type="client_credentials")
            assert limited.value.error == "rate_limited"


def test_refusals_before_the_endpoint_are_oauth_errors_too(database, tmp_path):
    """A method the endpoint does not allow, or a body too large, is refused before it runs:
    still an RFC 6749 error an OAuth library reads, and not cached."""
    from starlette.testclient import TestClient

    from tests.tools.api import make_app

    app = make_app(database, tmp_path, max_body_bytes=1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in (TOKEN, "/oauth/introspect", "/oauth/revoke"):
            response = client.get(path)
            body = oauth_error(response, 405, "invalid_request")
            assert "GET is not allowed" in body["error_description"]
            assert response.headers["cache-control"] == "no-store"
        response = client.post(TOKEN, content=b"grant_type=" + b"x" * 4096,
                               headers={"content-type": "application/x-www-form-urlencoded"})
        oauth_error(response, 413, "invalid_request")
        assert response.headers["cache-control"] == "no-store"
        # elsewhere a problem stays a problem
        assert "error" not in client.get("/v1/me", params={}).json()
