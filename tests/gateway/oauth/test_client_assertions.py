"""private_key_jwt at the token endpoint: forged and misused client assertions are refused
(modelled on the OpenID FAPI conformance suite's negative tests)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, OKPKey, RSAKey

from gateway.jose import CLIENT_REGISTRY, StrictRegistry
from tests.tools.api import ISSUER, client_assertion, new_ec_key, new_partner_client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def pkj(app, http):
    return new_partner_client(app, http, private_key=True)


def token_call(http, assertion, **extra):
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, **extra}
    return http.post("/oauth/token", data=form)


def refused(response, error="invalid_client"):
    # RFC 6749, 5.2: a failed client authentication is a 401, whatever the method.
    assert response.status_code == (401 if error == "invalid_client" else 400), response.text
    body = response.json()
    assert body["error"] == error, body
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["cache-control"] == "no-store"
    return body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict) -> str:
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "."


def claims_for(client_id: str, **over):
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": now, "exp": now + 300,
            "jti": uuid.uuid4().hex}
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def test_valid_assertion_gets_token(http, pkj):
    response = token_call(http, client_assertion(pkj.client_id, pkj.key))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("alg", ["PS256", "EdDSA", "Ed25519"])
def test_other_allowed_algorithms(app, http, alg):
    key = (RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True) if alg == "PS256"
           else OKPKey.generate_key("Ed25519", parameters={"kid": "o1"}, private=True))
    pc = new_partner_client(app, http, private_key=True)
    with app.state.database.transaction() as s:
        from gateway.oauth.models import OAuthClient
        s.get(OAuthClient, pc.client_id).jwks = {"keys": [key.as_dict(private=False)]}
    header = {"alg": alg, "kid": key.kid}
    registry = StrictRegistry(algorithms=[alg])
    assertion = jwt.encode(header, claims_for(pc.client_id), key, registry=registry)
    assert token_call(http, assertion).status_code == 200


def test_alg_none(http, pkj):
    refused(token_call(http, unsigned({"alg": "none"}, claims_for(pkj.client_id))))


def test_rs256_refused(app, http):
    key = RSAKey.generate_key(2048, parameters={"kid": "rs"}, private=True)
    pc = new_partner_client(app, http, private_key=True)
    with app.state.database.transaction() as s:
        from gateway.oauth.models import OAuthClient
        s.get(OAuthClient, pc.client_id).jwks = {"keys": [key.as_dict(private=False)]}
    assertion = jwt.encode({"alg": "RS256", "kid": "rs"}, claims_for(pc.client_id), key,
                           registry=StrictRegistry(algorithms=["RS256"]))
    refused(token_call(http, assertion))


def test_hs256_keyed_with_public_key(http, pkj):
    public = json.dumps(pkj.key.as_dict(private=False)).encode()
    key = OctKey.import_key(public)
    assertion = jwt.encode({"alg": "HS256", "kid": pkj.key.kid}, claims_for(pkj.client_id), key,
                           registry=StrictRegistry(algorithms=["HS256"]))
    refused(token_call(http, assertion))


def test_foreign_key(http, pkj):
    foreign = new_ec_key()
    foreign_with_same_kid = foreign.as_dict(private=True) | {"kid": pkj.key.kid}
    from joserfc.jwk import ECKey
    refused(token_call(http, client_assertion(pkj.client_id, ECKey.import_key(foreign_with_same_kid))))


def test_flipped_signature_bit(http, pkj):
    assertion = client_assertion(pkj.client_id, pkj.key)
    head, body, sig = assertion.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[5] ^= 0x01
    refused(token_call(http, f"{head}.{body}.{b64(bytes(raw))}"))


# Times are offsets from the moment the assertion is signed (collection may be long before).
@pytest.mark.parametrize("claims", [
    {"exp": -5},
    {"iat": 60, "exp": 300},
    {"nbf": 60},
    {"iss": "cli_someone_else"},
    {"sub": "cli_someone_else"},
    {"aud": [ISSUER]},
    {"aud": ISSUER + "/oauth/token"},
    {"aud": "https://elsewhere.example"},
    {"jti": None},
    {"exp": None},
    {"iat": 0, "exp": 3700},
], ids=["expired", "iat-ahead", "nbf-ahead", "wrong-iss", "wrong-sub", "aud-array",
        "aud-token-endpoint", "aud-foreign", "no-jti", "no-exp", "too-long-lived"])
def test_bad_claims(http, pkj, claims):
    now = int(time.time())
    over = {k: (now + v if k in ("exp", "iat", "nbf") and v is not None else v)
            for k, v in claims.items()}
    fixed = claims_for(pkj.client_id, **{k: v for k, v in over.items() if v is not None})
    for k, v in over.items():
        if v is None:
            fixed.pop(k, None)
    if "sub" in over and over["sub"]:
        fixed["iss"] = pkj.client_id
    assertion = jwt.encode({"alg": "ES256", "kid": pkj.key.kid}, fixed, pkj.key,
                           registry=CLIENT_REGISTRY)
    refused(token_call(http, assertion))


def test_exactly_sixty_minutes_is_accepted(http, pkj):
    now = int(time.time())
    assertion = client_assertion(pkj.client_id, pkj.key, iat=now, exp=now + 3600)
    assert token_call(http, assertion).status_code == 200


def test_replayed_jti(http, pkj):
    assertion = client_assertion(pkj.client_id, pkj.key)
    assert token_call(http, assertion).status_code == 200
    refused(token_call(http, assertion))


def test_secret_refused_for_production_client(app, http):
    pc = new_partner_client(app, http, environment="production")
    from tests.tools.api import basic
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers=basic(pc.client_id, "qls_guess"))
    refused(response)


def test_unknown_scope_and_unsupported_grant(http, pkj):
    body = refused(token_call(http, client_assertion(pkj.client_id, pkj.key),
                              scope="operations:write"), error="invalid_scope")
    assert "operations:write" in body["error_description"]
    response = http.post("/oauth/token", data={"grant_type": "password"})
    body = refused(response, error="unsupported_grant_type")
    assert body["error_description"] == ("The grant_type 'password' is not supported: this "
                                         "server issues tokens for client_credentials only.")


def test_repeated_parameter_and_wrong_content_type(http, pkj):
    response = http.post("/oauth/token", content=b"grant_type=client_credentials&grant_type=x",
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    response = http.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 415


def test_thousand_parallel_replays_exactly_one_accepted(http, pkj):
    assertion = client_assertion(pkj.client_id, pkj.key)

    def attempt(_):
        return token_call(http, assertion).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(attempt, range(1000)))
    assert statuses.count(200) == 1, {s: statuses.count(s) for s in set(statuses)}
    # A replay is a refused client authentication: past the address's failures
    # (QUANLIAN_AUTH_FAILURE_LIMITS) it is a 429 instead of a 401.
    assert set(statuses) <= {200, 401, 409, 429}


def signed_raw(key, claims: dict, header: dict | None = None) -> str:
    """Sign claims as Python's json writes them: NaN and Infinity included (as a careless or
    hostile client could send them; the JSON parser on the server reads them back)."""
    from joserfc import jws

    return jws.serialize_compact(header or {"alg": "ES256", "kid": key.kid},
                                 json.dumps(claims).encode(), key, registry=CLIENT_REGISTRY)


# NaN passes no comparison, so an unchecked NaN slips through every time check.
@pytest.mark.parametrize("dates", [
    {"exp": float("nan")},
    {"iat": float("nan"), "exp": 10 * 365 * 86400},
    {"nbf": float("nan")},
    {"nbf": float("-inf")},
], ids=["exp-nan", "iat-nan-exp-in-ten-years", "nbf-nan", "nbf-minus-infinity"])
def test_non_finite_dates_refused(http, pkj, dates):
    now = int(time.time())
    over = {k: (now + v if k == "exp" else v) for k, v in dates.items()}
    response = token_call(http, signed_raw(pkj.key, claims_for(pkj.client_id, **over)))
    refused(response)


def _with_keys(app, client_id, *keys):
    from gateway.oauth.models import OAuthClient

    with app.state.database.transaction() as s:
        s.get(OAuthClient, client_id).jwks = {"keys": [k.as_dict(private=False) for k in keys]}


def test_assertion_without_kid_is_checked_against_each_fitting_key(app, http):
    """authlib's client (and others) send no `kid`: with several registered keys, each key of
    the algorithm's type is tried."""
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    pc = new_partner_client(app, http, private_key=True)
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True)
    second = new_ec_key()
    _with_keys(app, pc.client_id, pc.key, rsa, second)
    for key, alg in ((second, "ES256"), (pc.key, "ES256"), (rsa, "PS256")):
        assertion = private_key_jwt_sign(key, pc.client_id, ISSUER, alg=alg)
        assert "kid" not in json.loads(base64.urlsafe_b64decode(
            assertion.split(".")[0] + "=="))
        response = token_call(http, assertion)
        assert response.status_code == 200, response.text
    foreign = private_key_jwt_sign(new_ec_key(), pc.client_id, ISSUER, alg="ES256")
    refused(token_call(http, foreign))


def test_client_id_must_name_the_assertions_client(app, http, pkj):
    other = new_partner_client(app, http, private_key=True)
    refused(token_call(http, client_assertion(pkj.client_id, pkj.key),
                       client_id=other.client_id))
    response = token_call(http, client_assertion(pkj.client_id, pkj.key),
                          client_id=pkj.client_id)
    assert response.status_code == 200, response.text
