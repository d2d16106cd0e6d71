"""Introspection (RFC 7662) and revocation (RFC 7009): what they answer agrees with what the
gateway does with a token, a client assertion used there stays used, and token type hints
are only hints."""

from __future__ import annotations

import pytest

from gateway.oauth.models import OAuthClient
from gateway.tenancy import Partner
from tests.tools.api import (
    ASSERTION_TYPE_JWT,
    basic,
    client_assertion,
    new_partner_client,
    problem,
)


def assertion_form(pc, **extra):
    return {"client_assertion_type": ASSERTION_TYPE_JWT,
            "client_assertion": client_assertion(pc.client_id, pc.key), **extra}


@pytest.mark.parametrize("endpoint", ["/oauth/introspect", "/oauth/revoke"])
def test_an_assertion_stays_used_when_the_request_fails(app, http, endpoint):
    """The request fails after the client was authenticated (no `token`: 400) and its
    transaction rolls back; the assertion's `jti` must not roll back with it."""
    pc = new_partner_client(app, http, private_key=True)
    form = assertion_form(pc)
    failed = http.post(endpoint, data=form)
    assert failed.status_code == 400 and failed.json()["error"] == "invalid_request"
    replay = http.post("/oauth/token", data={"grant_type": "client_credentials", **form})
    assert replay.status_code == 401, replay.text
    assert replay.json()["error"] == "invalid_client"
    again = http.post(endpoint, data={**form, "token": "x"})
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def _suspend_partner(app, pc):
    with app.state.database.transaction() as s:
        s.get(Partner, pc.partner_id).status = "suspended"


def _production_partner_approved(app, pc):
    # "approved" lets a partner hold sandbox tokens, not production ones.
    with app.state.database.transaction() as s:
        s.get(Partner, pc.partner_id).status = "approved"


def _require_dpop_later(app, pc):
    with app.state.database.transaction() as s:
        s.get(OAuthClient, pc.client_id).require_dpop = True


@pytest.mark.parametrize("environment, change", [
    ("sandbox", _suspend_partner),
    ("production", _suspend_partner),
    ("production", _production_partner_approved),
    ("sandbox", _require_dpop_later),
], ids=["sandbox-partner-suspended", "production-partner-suspended",
        "production-partner-not-active", "bearer-token-of-a-dpop-client"])
def test_introspection_is_inactive_for_every_token_the_gateway_refuses(app, http, environment,
                                                                        change):
    ops = new_partner_client(app, http, operations=True, scopes=["operations:read"])
    pc = new_partner_client(app, http, environment=environment)
    token = pc.token
    me = pc.get("/v1/me")
    assert me.status_code == 200, me.text

    def introspect():
        response = http.post("/oauth/introspect", data={"token": token},
                             headers=basic(ops.client_id, ops.secret))
        assert response.status_code == 200, response.text
        return response.json()

    assert introspect()["active"] is True
    change(app, pc)
    assert pc.get("/v1/me").status_code == 401  # the gateway refuses it...
    assert introspect() == {"active": False}  # ...and introspection says so


@pytest.mark.parametrize("hint", ["weird", "id_token"])
def test_token_type_hint_is_only_a_hint(http, partner, hint):
    """RFC 7009, 2.1: a hint the server does not know, or that is wrong, is ignored."""
    auth = basic(partner.client_id, partner.secret)
    token = partner.token
    response = http.post("/oauth/introspect", data={"token": token, "token_type_hint": hint},
                         headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True
    response = http.post("/oauth/revoke", data={"token": token, "token_type_hint": hint},
                         headers=auth)
    assert response.status_code == 200, response.text
    problem(partner.get("/v1/me"), 401, "invalid_token")
