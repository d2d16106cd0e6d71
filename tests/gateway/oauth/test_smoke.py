from tests.tools.api import new_partner_client, problem


def test_secret_client_gets_token_and_calls_me(partner):
    response = partner.get("/v1/me")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["client_id"] == partner.client_id
    assert body["environment"] == "sandbox"
    assert "accounts:read" in body["scopes"]


def test_private_key_jwt_with_dpop(app, http):
    pc = new_partner_client(app, http, environment="production")
    token = pc.fetch_token()
    assert token["token_type"] == "DPoP"
    response = pc.get("/v1/me")
    assert response.status_code == 200, response.text
    assert response.json()["environment"] == "production"


def test_no_token(http):
    problem(http.get("/v1/me"), 401, "unauthorized")
