"""Sandbox self-service: sign-up, test clock, sample events, reset."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from gateway.events import Event
from gateway.oauth.scopes import PARTNER_SCOPES
from gateway.tenancy import Tenant
from tests.tools.api import (
    ASSERTION_TYPE_JWT,
    PartnerClient,
    client_assertion,
    new_ec_key,
    new_partner_client,
    problem,
    public_jwks,
)


def signup(http, **extra):
    body = {"name": "Acme SCF Platform", "email": "dev@acme.example", **extra}
    return http.post("/sandbox/v1/signup", json=body)


def test_signup_gives_working_credentials_at_once(app, http):
    response = signup(http)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body["scopes"]) == set(PARTNER_SCOPES)
    assert body["token_endpoint"].endswith("/oauth/token")
    pc = PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                       tenant_id=body["tenant_id"], secret=body["client_secret"])
    me = pc.get("/v1/me").json()
    assert me["environment"] == "sandbox" and me["tenant_id"] == body["tenant_id"]


def test_signup_with_jwks_allows_private_key_jwt(http):
    key = new_ec_key()
    body = signup(http, jwks=public_jwks(key)).json()
    assert "private_key_jwt" in body["token_endpoint_auth_methods"]
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
            "client_assertion": client_assertion(body["client_id"], key)}
    assert http.post("/oauth/token", data=form).status_code == 200


def test_signup_validation_and_rate_limit(app, http, database, tmp_path):
    body = problem(http.post("/sandbox/v1/signup", json={"name": "", "email": "nope"}), 422)
    assert {e["field"] for e in body["errors"]} == {"body.name", "body.email"}
    problem(signup(http, jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}), 422)
    from starlette.testclient import TestClient

    from tests.tools.api import make_app
    limited = make_app(database, tmp_path, public_endpoint_limits="2/minute")
    with TestClient(limited) as client:
        codes = [signup(client).status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_clock_advances_forward_only_and_per_tenant(app, http, partner):
    start = datetime.fromisoformat(partner.get("/sandbox/v1/clock").json()["now"])
    moved = partner.post("/sandbox/v1/clock/advance", {"seconds": 86400}).json()
    assert datetime.fromisoformat(moved["now"]) - start >= timedelta(days=1)
    target = (datetime.fromisoformat(moved["now"]) + timedelta(days=30)).isoformat()
    to = partner.post("/sandbox/v1/clock/advance", {"to": target}).json()
    assert abs((datetime.fromisoformat(to["now"]) - datetime.fromisoformat(target)).total_seconds()) < 5
    problem(partner.post("/sandbox/v1/clock/advance", {"to": start.isoformat()}), 422, "clock_backwards")
    problem(partner.post("/sandbox/v1/clock/advance", {"seconds": -5}), 422)
    problem(partner.post("/sandbox/v1/clock/advance", {}), 422)
    other = new_partner_client(app, http)
    other_now = datetime.fromisoformat(other.get("/sandbox/v1/clock").json()["now"])
    assert other_now - start < timedelta(hours=1)


def test_clock_moved_by_another_process_holds_from_the_next_call(app, partner):
    """A call reads its tenant's clock with its credentials' status, so a clock moved in the
    database by another process (or server) holds from the very next call, for the clock and
    for the business rules' own times."""
    start = datetime.fromisoformat(partner.get("/sandbox/v1/clock").json()["now"])
    with app.state.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.id == partner.tenant_id)
                        .values(clock_offset_seconds=3 * 86400.0))
    clock = partner.get("/sandbox/v1/clock").json()
    assert clock["offset_seconds"] == 3 * 86400
    assert datetime.fromisoformat(clock["now"]) - start >= timedelta(days=3)
    event = partner.post("/sandbox/v1/events/payables_certificate.transferred")
    assert event.status_code == 201, event.text
    assert datetime.fromisoformat(event.json()["created_at"]) - start >= timedelta(days=3)
    # Moved in this process within a call, the clock that call answers with is the new one.
    moved = partner.post("/sandbox/v1/clock/advance", {"seconds": 86400}).json()
    assert datetime.fromisoformat(moved["now"]) - start >= timedelta(days=4)


def test_production_has_no_test_clock(app, http):
    prod = new_partner_client(app, http, environment="production")
    problem(prod.get("/sandbox/v1/clock"), 403, "sandbox_only")
    problem(prod.post("/sandbox/v1/clock/advance", {"seconds": 1}), 403, "sandbox_only")


def test_sample_event(app, partner):
    response = partner.post("/sandbox/v1/events/payables_certificate.transferred")
    assert response.status_code == 201, response.text
    event_id = response.json()["id"]
    with app.state.database.engine.connect() as conn:
        row = conn.execute(select(Event.type, Event.tenant_id).where(Event.id == event_id)).one()
    assert row == ("payables_certificate.transferred", partner.tenant_id)
    problem(partner.post("/sandbox/v1/events/NotAType"), 422, "invalid_event_type")


def test_reset_restores_clock(app, partner):
    partner.post("/sandbox/v1/clock/advance", {"seconds": 3600 * 24 * 40})
    response = partner.post("/sandbox/v1/reset")
    assert response.status_code == 200, response.text
    assert partner.get("/sandbox/v1/clock").json()["offset_seconds"] == 0


def test_signup_seeds_accounts_and_reset_restores_them(http):
    body = signup(http).json()
    pc = PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                       tenant_id=body["tenant_id"], secret=body["client_secret"])
    accounts = pc.get("/v1/accounts?limit=100").json()["data"]
    assert len(accounts) >= 3
    assert all("*" in a["account_number"] for a in accounts if a.get("account_number"))
    other_body = signup(http, name="Other Platform").json()
    other = PartnerClient(http=http, client_id=other_body["client_id"],
                          partner_id=other_body["partner_id"], tenant_id=other_body["tenant_id"],
                          secret=other_body["client_secret"])
    problem(other.get(f"/v1/accounts/{accounts[0]['id']}"), 404)
    assert pc.post("/sandbox/v1/reset").status_code == 200
    again = pc.get("/v1/accounts?limit=100").json()["data"]
    assert len(again) == len(accounts)


def test_the_magic_values_are_in_the_api_docs(http):
    """A developer reading /docs (or the OpenAPI document) finds every magic value."""
    from products.accounts.magic import MAGIC_ACCOUNT_SUFFIXES, MAGIC_AMOUNTS

    described = http.get("/openapi.json").json()["info"]["description"]
    assert "Sandbox magic values" in described
    for magic in MAGIC_AMOUNTS.values():
        assert f"amount {magic.amount} |" in described and magic.failure_code in described
    for suffix in MAGIC_ACCOUNT_SUFFIXES:
        assert f"ending {suffix}" in described
    assert "户名不符" in described and "退票" in described


def test_a_key_used_before_a_reset_runs_again_after_it(http):
    """A reset forgets the answers kept for Idempotency-Keys: the transfer they name is gone,
    so sending the same request again pays against the new seed instead of replaying it."""
    body = signup(http).json()
    pc = PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                       tenant_id=body["tenant_id"], secret=body["client_secret"])

    def pay():  # type: ignore[no-untyped-def]
        accounts = pc.get("/v1/accounts?limit=100").json()["data"]
        by_label = {a["label"]: a["id"] for a in accounts}
        return pc.post("/v1/transfers", {
            "from_account_id": by_label["operating"], "to_account_id": by_label["supplier"],
            "amount": {"amount": "12.34", "currency": "CNY"}}, idempotency_key="pay-invoice-1")

    first = pay()
    assert first.status_code == 201 and first.json()["status"] == "completed", first.text
    assert pay().headers.get("idempotent-replayed") == "true"  # before the reset: a replay
    assert pc.post("/sandbox/v1/reset").status_code == 200
    again = pay()
    assert again.status_code == 201 and again.json()["status"] == "completed", again.text
    assert again.headers.get("idempotent-replayed") != "true"
    assert again.json()["id"] != first.json()["id"]
    assert pc.get(f"/v1/transfers/{again.json()['id']}").status_code == 200
