"""JWS headers malformed in ways the JOSE library does not expect (read before any signature
is checked, so from anyone): a `crit` that is not a list of strings, a `kid` that is not a
string. Each is a refusal of the assertion or the token, never a server error (each was a 500
at the token endpoint, on every protected route and at introspection)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from joserfc import jws

from gateway.jose import StrictRegistry
from tests.tools.api import ASSERTION_TYPE_JWT, ISSUER, basic, new_partner_client


class _Unchecked(StrictRegistry):
    """Signs whatever header it is given, as a hostile client would."""

    def check_header(self, header):  # type: ignore[no-untyped-def]
        return None


UNCHECKED = _Unchecked(algorithms=["ES256"])
MALFORMED = [{"crit": None}, {"crit": [1]}, {"kid": ["a"]}, {"kid": {"a": 1}}]
IDS = ["crit-null", "crit-not-strings", "kid-list", "kid-object"]


def _sign(header: dict, claims: dict, key) -> str:
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, registry=UNCHECKED)


@pytest.mark.parametrize("malformed", MALFORMED, ids=IDS)
def test_a_client_assertion(app, http, malformed):
    pc = new_partner_client(app, http, private_key=True)
    now = int(time.time())
    claims = {"iss": pc.client_id, "sub": pc.client_id, "aud": ISSUER, "iat": now,
              "exp": now + 60, "jti": uuid.uuid4().hex}
    assertion = _sign({"alg": "ES256", "kid": pc.key.kid, **malformed}, claims, pc.key)
    response = http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
        "client_assertion": assertion})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("malformed", MALFORMED, ids=IDS)
def test_an_access_token(app, http, partner, malformed):
    key = app.state.keys.active_signing_key
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": partner.client_id, "aud": ISSUER,
              "client_id": partner.client_id, "scope": "accounts:read",
              "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60}
    token = _sign({"alg": "ES256", "typ": "at+jwt", "kid": key.kid, **malformed}, claims, key)
    response = http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"
    response = http.post("/oauth/introspect", data={"token": token},
                         headers=basic(partner.client_id, partner.secret))
    assert response.status_code == 200 and response.json() == {"active": False}, response.text
    assert partner.get("/v1/me").status_code == 200
