"""Access tokens (RFC 9068), DPoP (RFC 9449), scopes (RFC 6750), introspection and revocation."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from gateway.jose import PLATFORM_REGISTRY, StrictRegistry
from gateway.oauth.clients import revoke_client
from gateway.tenancy import Partner
from tests.tools.api import ISSUER, basic, dpop_proof, new_ec_key, new_partner_client, problem


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def call(http, token, scheme="Bearer", **headers):
    return http.get("/v1/me", headers={"Authorization": f"{scheme} {token}", **headers})


def invalid_token(response, scheme="Bearer"):
    body = problem(response, 401)
    assert body["code"] in ("invalid_token", "invalid_dpop_proof"), body
    assert response.headers["www-authenticate"].startswith(scheme)
    return body


def forged_claims(client_id):
    now = int(time.time())
    return {"iss": ISSUER, "sub": client_id, "aud": ISSUER, "client_id": client_id,
            "scope": "accounts:read", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300}


def test_token_shape_rfc9068(app, partner):
    token = partner.token
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    keys = app.state.keys.signing_keys
    claims = jwt.decode(token, keys, registry=PLATFORM_REGISTRY).claims
    for name in ("iss", "sub", "aud", "client_id", "scope", "jti", "iat", "exp"):
        assert name in claims
    assert claims["exp"] - claims["iat"] <= 600


def test_jwks_and_discovery(http):
    jwks = http.get("/oauth/jwks").json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])
    meta = http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert set(meta["token_endpoint_auth_signing_alg_values_supported"]) >= {"PS256", "ES256", "EdDSA"}
    assert "RS256" not in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert meta["dpop_signing_alg_values_supported"]
    assert "client_credentials" in meta["grant_types_supported"]


def test_forged_tokens_refused(app, http, partner):
    claims = forged_claims(partner.client_id)
    none = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()) + "." + b64(
        json.dumps(claims).encode()) + "."
    invalid_token(call(http, none))
    foreign = new_ec_key()
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": app.state.keys.active_signing_key.kid},
                       claims, foreign, registry=PLATFORM_REGISTRY)
    invalid_token(call(http, token))
    public = json.dumps(app.state.keys.public_jwks()["keys"][0]).encode()
    hs = jwt.encode({"alg": "HS256", "typ": "at+jwt"}, claims, OctKey.import_key(public),
                    registry=StrictRegistry(algorithms=["HS256"]))
    invalid_token(call(http, hs))
    real = partner.token
    head, body, sig = real.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[3] ^= 0x01
    invalid_token(call(http, f"{head}.{body}.{b64(bytes(raw))}"))
    invalid_token(call(http, "not-a-jwt"))


def test_expired_and_wrong_typ_platform_signed(app, http, partner):
    key = app.state.keys.active_signing_key
    expired = forged_claims(partner.client_id) | {"exp": int(time.time()) - 1}
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, expired, key,
                       registry=PLATFORM_REGISTRY)
    invalid_token(call(http, token))
    token = jwt.encode({"alg": "ES256", "typ": "JWT", "kid": key.kid},
                       forged_claims(partner.client_id), key, registry=PLATFORM_REGISTRY)
    invalid_token(call(http, token))


@pytest.mark.parametrize("query", ["access_token={}", "a=1&access%5Ftoken={}",
                                   "%61ccess_token={}"], ids=["plain", "encoded", "encoded-first"])
def test_token_in_query_string_refused(http, partner, query):
    response = http.get("/v1/me?" + query.format(partner.token))
    assert response.status_code == 400
    assert "query" in response.json()["detail"]


def test_revoked_token_refused_on_next_call(http, partner):
    token = partner.token
    assert call(http, token).status_code == 200
    response = http.post("/oauth/revoke", data={"token": token},
                         headers=basic(partner.client_id, partner.secret))
    assert response.status_code == 200
    invalid_token(call(http, token))
    intro = http.post("/oauth/introspect", data={"token": token},
                      headers=basic(partner.client_id, partner.secret))
    assert intro.json() == {"active": False}


def test_introspection(http, partner, app):
    token = partner.token
    intro = http.post("/oauth/introspect", data={"token": token},
                      headers=basic(partner.client_id, partner.secret)).json()
    assert intro["active"] is True and intro["client_id"] == partner.client_id
    other = new_partner_client(app, http)
    foreign = http.post("/oauth/introspect", data={"token": token},
                        headers=basic(other.client_id, other.secret)).json()
    assert foreign == {"active": False}
    unauth = http.post("/oauth/introspect", data={"token": token})
    assert unauth.status_code in (400, 401)


def test_revoked_client_and_suspended_partner(app, http):
    pc = new_partner_client(app, http)
    token = pc.token
    with app.state.database.transaction() as s:
        s.get(Partner, pc.partner_id).status = "suspended"
    invalid_token(call(http, token))
    with app.state.database.transaction() as s:
        s.get(Partner, pc.partner_id).status = "active"
    assert call(http, token).status_code == 200
    with app.state.database.transaction() as s:
        revoke_client(s, pc.client_id)
    invalid_token(call(http, token))
    assert http.post("/oauth/token", data={"grant_type": "client_credentials"},
                     headers=basic(pc.client_id, pc.secret)).status_code == 401


def test_insufficient_scope(app, http):
    pc = new_partner_client(app, http, scopes=["accounts:read"])
    from fastapi import Depends

    from gateway.auth import require_scope

    @app.get("/v1/scope-probe", include_in_schema=False)
    def probe(_=Depends(require_scope("payroll:write"))):
        return {}

    response = pc.get("/v1/scope-probe")
    body = problem(response, 403, "insufficient_scope")
    assert 'scope="payroll:write"' in response.headers["www-authenticate"]
    assert "payroll:write" in body["detail"]


# -- DPoP ------------------------------------------------------------------------------

@pytest.fixture
def dpop_client(app, http):
    return new_partner_client(app, http, dpop=True)


def me_with(http, client, proof, scheme="DPoP"):
    return http.get("/v1/me", headers={"Authorization": f"{scheme} {client.token}", "DPoP": proof})


def test_dpop_bound_token_works(http, dpop_client):
    assert dpop_client.fetch_token()["token_type"] == "DPoP"
    response = dpop_client.get("/v1/me")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat", "ath"])
def test_dpop_missing_claim(http, dpop_client, claim):
    proof = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me",
                       access_token=dpop_client.token, **{claim: None})
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


@pytest.mark.parametrize("overrides", [
    {"header": {"typ": "JWT"}},
    {"htm": "POST"},
    {"htu": ISSUER + "/v1/other"},
    {"htu": "https://evil.example/v1/me"},
    {"ath": "x" * 43},
    {"iat": int(time.time()) - 3600},
    {"iat": int(time.time()) + 3600},
], ids=["typ", "htm", "htu-path", "htu-host", "ath", "iat-hour-ago", "iat-hour-ahead"])
def test_dpop_wrong_claims(http, dpop_client, overrides):
    proof = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me",
                       access_token=dpop_client.token, **overrides)
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


@pytest.mark.parametrize(("path", "htu"), [
    ("/v1/accounts/acc%20x", "http://testserver/v1/accounts/acc%20x"),  # sent encoded
    ("/v1/accounts/acc%7ex", "http://testserver/v1/accounts/acc~x"),  # an unreserved escape
    ("/v1/accounts/acc%2fx", "http://testserver/v1/accounts/acc%2Fx"),  # hex case
    ("/v1/me", "HTTP://TestServer/v1/me"),  # scheme and host case
    ("/v1/me", "http://testserver:80/v1/me"),  # the default port
    ("/v1/me", "http://testserver/v1/me?x=1#y"),  # no query or fragment
])
def test_dpop_htu_is_compared_as_rfc_3986_normalizes_it(http, dpop_client, path, htu):
    """RFC 9449, 4.3: the request's and the proof's URLs compared after normalization, so a
    client library's spelling of the same URL is no reason to refuse it."""
    proof = dpop_proof(dpop_client.dpop_key, "GET", htu, access_token=dpop_client.token)
    response = http.get(path, headers={"Authorization": f"DPoP {dpop_client.token}",
                                       "DPoP": proof})
    assert response.status_code in (200, 404), response.text  # authenticated: found or not


@pytest.mark.parametrize("htu", ["http://testserver/v1/accounts/acc%2520x",  # another path
                                 "http://testserver:8080/v1/me", "https://testserver/v1/me",
                                 "http://testserver/v1/me/", "ftp://testserver/v1/me", "/v1/me"])
def test_dpop_htu_of_another_url_is_refused(http, dpop_client, htu):
    path = "/v1/accounts/acc%20x" if "acc" in htu else "/v1/me"
    proof = dpop_proof(dpop_client.dpop_key, "GET", htu, access_token=dpop_client.token)
    response = http.get(path, headers={"Authorization": f"DPoP {dpop_client.token}",
                                       "DPoP": proof})
    invalid_token(response, "DPoP")
    assert response.json()["title"] == "Invalid DPoP proof"


def test_dpop_private_key_in_jwk(http, dpop_client):
    proof = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me",
                       access_token=dpop_client.token,
                       header={"jwk": dpop_client.dpop_key.as_dict(private=True)})
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


def test_dpop_other_key(http, dpop_client):
    proof = dpop_proof(new_ec_key(), "GET", ISSUER + "/v1/me", access_token=dpop_client.token)
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


def test_two_dpop_headers(http, dpop_client):
    p1 = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me", access_token=dpop_client.token)
    p2 = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me", access_token=dpop_client.token)
    response = http.get("/v1/me", headers=[("Authorization", f"DPoP {dpop_client.token}"),
                                           ("DPoP", p1), ("DPoP", p2)])
    invalid_token(response, "DPoP")


def test_dpop_replayed_jti(http, dpop_client):
    proof = dpop_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me", access_token=dpop_client.token)
    assert me_with(http, dpop_client, proof).status_code == 200
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


def test_dpop_bound_token_as_bearer(http, dpop_client):
    response = http.get("/v1/me", headers={"Authorization": f"Bearer {dpop_client.token}"})
    invalid_token(response, "DPoP")


def test_require_dpop_client_without_proof(http, dpop_client):
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(dpop_client.client_id, dpop_client.secret))
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_bad_dpop_at_token_endpoint(http, dpop_client):
    proof = dpop_proof(dpop_client.dpop_key, "POST", ISSUER + "/elsewhere")
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(dpop_client.client_id, dpop_client.secret) | {"DPoP": proof})
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"


def test_key_rotation_old_tokens_still_validate(app, http, partner):
    old = partner.token
    app.state.keys.rotate_signing_key()
    assert call(http, old).status_code == 200
    partner._token = None
    new = partner.token
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] != json.loads(
        base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"]
    assert call(http, new).status_code == 200


def test_a_superseded_key_is_published_until_its_tokens_have_expired(app, http, partner,
                                                                     monkeypatch):
    """However often keys rotate, a key stays in the JWKS (and valid) for the longest token
    life after it was superseded, then goes."""
    from gateway import keys as keys_module

    now = [1_900_000_000.0]
    monkeypatch.setattr(keys_module.time, "time", lambda: now[0])
    first = {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}
    old = partner.token
    kids = [app.state.keys.rotate_signing_key() for _ in range(4)]  # four rotations at once
    published = {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}
    assert first | set(kids) == published
    assert call(http, old).status_code == 200
    now[0] += keys_module.RETAIN_RETIRED_SECONDS + 1
    latest = app.state.keys.rotate_signing_key()
    assert {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]} == {kids[-1], latest}


@pytest.mark.parametrize("authorization", ["Basic " + base64.b64encode(b"cli_x:qls_y").decode(),
                                           "Digest username=x", "Token abc"])
def test_credentials_of_another_scheme_get_the_plain_challenge(http, authorization):
    """RFC 6750, 3.1: no access token, so no error code; the challenge names the schemes."""
    response = http.get("/v1/me", headers={"Authorization": authorization})
    body = problem(response, 401, "unauthorized")
    assert "Bearer or DPoP" in body["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer, DPoP")
    assert "error=" not in response.headers["www-authenticate"]


def test_ec_key_fixture_is_public_only():
    key = new_ec_key()
    assert "d" not in key.as_dict(private=False)
    assert isinstance(key, ECKey)


def test_a_key_rotated_by_another_process_is_used_and_accepted(app, http, partner):
    """`quanlian keys rotate` runs in a process of its own: a server picks the new key up,
    accepting tokens signed with it at once and signing with it within a second."""
    from gateway.keys import PlatformKeys
    from gateway.oauth.tokens import TokenService

    def kid(token: str) -> str:
        return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]

    old = partner.token
    elsewhere = PlatformKeys(app.state.keys.dir.parent)
    new_kid = elsewhere.rotate_signing_key()
    signed_elsewhere = TokenService(elsewhere, ISSUER).issue(
        client_id=partner.client_id, scope="accounts:read")["access_token"]
    assert kid(signed_elsewhere) == new_kid
    assert call(http, signed_elsewhere).status_code == 200
    assert call(http, old).status_code == 200
    time.sleep(1.1)
    partner._token = None
    assert kid(partner.token) == new_kid
    assert new_kid in {k["kid"] for k in http.get("/oauth/jwks").json()["keys"]}


def test_discovery_passes_authlib_metadata_validation(http):
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    meta = http.get("/.well-known/oauth-authorization-server").json()
    AuthorizationServerMetadata(meta).validate()
    assert "authorization_endpoint" not in meta  # none: the types say so
    assert meta["response_types_supported"] == ["none"]


def nan_iat_proof(key, method, url, access_token=None):
    """A proof whose `iat` is JSON NaN, which passes no comparison."""
    from joserfc import jws

    from gateway.jose import CLIENT_REGISTRY, sha256_b64url

    claims = {"jti": uuid.uuid4().hex, "htm": method, "htu": url, "iat": float("nan")}
    if access_token is not None:
        claims["ath"] = sha256_b64url(access_token)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key,
                                 registry=CLIENT_REGISTRY)


def test_dpop_iat_nan_refused(http, dpop_client):
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(dpop_client.client_id, dpop_client.secret)
                         | {"DPoP": nan_iat_proof(dpop_client.dpop_key, "POST",
                                                  ISSUER + "/oauth/token")})
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
    proof = nan_iat_proof(dpop_client.dpop_key, "GET", ISSUER + "/v1/me", dpop_client.token)
    invalid_token(me_with(http, dpop_client, proof), "DPoP")


@pytest.mark.parametrize("bits", [2048, 4096])
def test_ps256_dpop_proofs(app, http, bits):
    """Discovery advertises PS256 for DPoP: a proof carries its RSA key in the header, which
    is then larger than joserfc's default bound."""
    from joserfc.jwk import RSAKey

    pc = new_partner_client(app, http, dpop=True)
    pc.dpop_key = RSAKey.generate_key(bits, parameters={"kid": "rsa-dpop"}, private=True)
    url = ISSUER + "/oauth/token"
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(pc.client_id, pc.secret)
                         | {"DPoP": dpop_proof(pc.dpop_key, "POST", url,
                                               header={"alg": "PS256"})})
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    proof = dpop_proof(pc.dpop_key, "GET", ISSUER + "/v1/me", access_token=token,
                       header={"alg": "PS256"})
    response = http.get("/v1/me", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert response.status_code == 200, response.text
    # Still a bound on the header, parsed before its signature is checked.
    padded = dpop_proof(pc.dpop_key, "POST", url, header={"alg": "PS256", "kid": "k" * 1500})
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(pc.client_id, pc.secret) | {"DPoP": padded})
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
    assert "ExceededSize" in response.json()["error_description"]


def test_json_nested_too_deeply_in_a_token_or_a_proof_is_refused(http, partner, dpop_client):
    """A JWS's header and claims are read before its signature is checked: JSON nested deeper
    than the parser's stack there (found by fuzzing: a 500 from every protected route, the
    token endpoint's DPoP check and introspection) is a malformed token, like any other."""
    deep = b"[" * 5000 + b"]" * 5000
    header = {"alg": "ES256", "typ": "at+jwt"}
    nested_header = b64(b'{"alg":"ES256","typ":"at+jwt","x":' + deep + b"}") + ".e30.sig"
    nested_claims = b64(json.dumps(header).encode()) + "." + b64(deep) + ".sig"
    for token in (nested_header, nested_claims):
        invalid_token(call(http, token))
        response = http.post("/oauth/introspect", data={"token": token},
                             headers=basic(partner.client_id, partner.secret))
        assert response.status_code == 200 and response.json() == {"active": False}, response.text
        response = http.post("/oauth/revoke", data={"token": token},
                             headers=basic(partner.client_id, partner.secret))
        assert response.status_code == 200, response.text
    jwk = json.dumps(dpop_client.dpop_key.as_dict(private=False)).encode()
    nested_proof = (b64(b'{"typ":"dpop+jwt","alg":"ES256","jwk":' + jwk + b',"x":' + deep + b"}")
                    + "." + b64(b'{"jti":"a"}') + ".sig")
    invalid_token(me_with(http, dpop_client, nested_proof), "DPoP")
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(dpop_client.client_id, dpop_client.secret)
                         | {"DPoP": nested_proof})
    assert response.status_code == 400 and response.json()["error"] == "invalid_dpop_proof"
    assert dpop_client.get("/v1/me").status_code == 200  # and the client's own calls still work
