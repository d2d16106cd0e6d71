"""Client keys meet FAPI 2.0's bar (RSA of at least 2048 bits, EC on P-256, OKP Ed25519):
weaker keys are refused at registration, never verify a client assertion, and never carry a
DPoP proof."""

from __future__ import annotations

import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway.oauth.models import OAuthClient
from tests.tools.api import (
    ASSERTION_TYPE_JWT,
    ISSUER,
    basic,
    client_assertion,
    dpop_proof,
    new_partner_client,
    problem,
    public_jwks,
)

# joserfc warns as it imports an RSA key under 2048 bits: an error under this suite's
# warnings-as-errors, a mere log line in a server. Ignored here, so that these tests see the
# server as it runs, where only our own rule refuses such keys.
IGNORE_JOSERFC_KEY_WARNING = pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
pytestmark = IGNORE_JOSERFC_KEY_WARNING


def weak_rsa_key(kid: str = "weak") -> RSAKey:
    # joserfc will not generate one (and warns as it imports one); a partner's old tooling would.
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return RSAKey.import_key(pem, parameters={"kid": kid})


WEAK_KEYS = {
    "rsa-1024": weak_rsa_key,
    "ec-p384": lambda: ECKey.generate_key("P-384", parameters={"kid": "p384"}, private=True),
    "ed448": lambda: OKPKey.generate_key("Ed448", parameters={"kid": "ed448"}, private=True),
}


@pytest.mark.parametrize("make_key", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
def test_sandbox_signup_refuses_a_weak_key(http, make_key):
    response = http.post("/sandbox/v1/signup", json={
        "name": "Weak keys Ltd", "email": "dev@weak.example",
        "jwks": public_jwks(make_key())})
    problem(response, 422, "invalid_jwks")


def test_a_weak_registered_key_never_verifies_an_assertion(app, http):
    """A client registered before the rule with a 1024-bit key beside a good one: only the
    good key still works."""
    weak = weak_rsa_key()
    pc = new_partner_client(app, http, private_key=True)
    with app.state.database.transaction() as s:
        s.get(OAuthClient, pc.client_id).jwks = public_jwks(pc.key, weak)

    def token_call(key, alg):
        return http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
            "client_assertion": client_assertion(pc.client_id, key, alg=alg)})

    response = token_call(weak, "PS256")
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"
    assert token_call(pc.key, "ES256").status_code == 200


def test_dpop_proof_with_a_weak_key_is_refused(app, http):
    pc = new_partner_client(app, http, dpop=True)
    weak = weak_rsa_key()
    proof = dpop_proof(weak, "POST", ISSUER + "/oauth/token", header={"alg": "PS256"})
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         headers={"DPoP": proof, **basic(pc.client_id, pc.secret)})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_dpop_proof"
    assert "2048" in response.json()["error_description"]
    # At a resource the proof's key is checked the same way, before anything else.
    token = pc.token
    proof = dpop_proof(weak, "GET", ISSUER + "/v1/me", access_token=token,
                       header={"alg": "PS256"})
    response = http.get("/v1/me", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert "2048" in problem(response, 401, "invalid_dpop_proof")["detail"]

