"""The OpenAPI document describes the token, introspection and revocation endpoints as they
are: their form fields, and bodies that the endpoints' real answers validate against."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from tests.tools.api import ASSERTION_TYPE_JWT, basic, client_assertion, new_partner_client

FORM = "application/x-www-form-urlencoded"
PROBLEM = "application/problem+json"
FIELDS = {
    "/oauth/token": {"grant_type", "scope", "client_assertion_type", "client_assertion",
                     "client_id"},
    "/oauth/introspect": {"token", "token_type_hint", "client_assertion_type",
                          "client_assertion", "client_id"},
    "/oauth/revoke": {"token", "token_type_hint", "client_assertion_type", "client_assertion",
                      "client_id"},
}
REQUIRED = {"/oauth/token": ["grant_type"], "/oauth/introspect": ["token"],
            "/oauth/revoke": ["token"]}


@pytest.fixture
def spec(app):
    return app.openapi()


def _operation(spec, path):
    return spec["paths"][path]["post"]


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_every_form_field_is_documented(spec, path):
    schema = _operation(spec, path)["requestBody"]["content"][FORM]["schema"]
    assert schema["type"] == "object" and "additionalProperties" not in schema
    assert set(schema["properties"]) == FIELDS[path]
    for name, field in schema["properties"].items():
        assert field["type"] == "string", (path, name)  # a form field: never null
        assert field.get("description"), (path, name)
    assert schema["required"] == REQUIRED[path]
    assert schema["properties"]["client_assertion_type"]["const"] == ASSERTION_TYPE_JWT
    if path == "/oauth/token":
        assert schema["properties"]["grant_type"]["const"] == "client_credentials"


def test_success_and_error_bodies_are_documented(spec):
    success = {"/oauth/token": "TokenResponse", "/oauth/introspect": "IntrospectionResponse",
               "/oauth/revoke": "RevocationResponse"}
    for path, name in success.items():
        responses = _operation(spec, path)["responses"]
        assert responses["200"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{name}"}
        for status in ("400", "401", "415"):
            schema = responses[status]["content"][PROBLEM]["schema"]
            oauth = schema["allOf"][1]
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/ProblemDetails"}
            assert oauth["required"] == ["error", "error_description"], (path, status)
        assert "WWW-Authenticate" in responses["401"]["headers"]
    assert "429" in _operation(spec, "/oauth/token")["responses"]
    token = spec["components"]["schemas"]["TokenResponse"]["properties"]
    assert all(token[name].get("description") for name in
               ("access_token", "token_type", "expires_in", "scope"))


def _validator(spec, schema):
    return Draft202012Validator({**schema, "components": spec["components"]})


def _conforms(spec, response, path):
    documented = _operation(spec, path)["responses"][str(response.status_code)]
    media = response.headers["content-type"].split(";")[0]
    schema = documented["content"][media]["schema"]
    errors = [e.message for e in _validator(spec, schema).iter_errors(response.json())]
    assert not errors, (path, response.status_code, response.text, errors)


def test_real_answers_validate_against_the_document(app, http, spec):
    keyed = new_partner_client(app, http, private_key=True, dpop=True)
    partner = new_partner_client(app, http)
    auth = basic(partner.client_id, partner.secret)

    def assertion():
        return {"client_assertion_type": ASSERTION_TYPE_JWT,
                "client_assertion": client_assertion(keyed.client_id, keyed.key)}

    answers = [
        ("/oauth/token", http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   headers=auth)),
        ("/oauth/token", http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                         "scope": "accounts:read"},
                                   headers=auth)),
        ("/oauth/token", http.post("/oauth/token", data={"scope": "x"}, headers=auth)),
        ("/oauth/token", http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                   headers=basic(partner.client_id, "qls_wrong"))),
        ("/oauth/token", http.post("/oauth/token", json={})),
        ("/oauth/introspect", http.post("/oauth/introspect", data={"token": keyed.token},
                                        headers=auth)),  # another client's token: inactive
        ("/oauth/introspect", http.post("/oauth/introspect",
                                        data={"token": keyed.token, **assertion()})),
        ("/oauth/introspect", http.post("/oauth/introspect", data={}, headers=auth)),
        ("/oauth/introspect", http.post("/oauth/introspect", data={"token": "x"})),
        ("/oauth/revoke", http.post("/oauth/revoke", data={"token": "x"}, headers=auth)),
        ("/oauth/revoke", http.post("/oauth/revoke", data={"token": keyed.token},
                                    headers=auth)),
        ("/oauth/revoke", http.post("/oauth/revoke", content=b"token=a&token=b",
                                    headers=auth | {"content-type": FORM})),
    ]
    statuses = {(path, response.status_code) for path, response in answers}
    assert statuses >= {("/oauth/token", 200), ("/oauth/token", 400), ("/oauth/token", 401),
                        ("/oauth/token", 415), ("/oauth/introspect", 200),
                        ("/oauth/introspect", 401), ("/oauth/revoke", 200),
                        ("/oauth/revoke", 400)}, statuses
    for path, response in answers:
        _conforms(spec, response, path)
    active = answers[6][1].json()
    assert active["active"] is True and active["token_type"] == "DPoP" and active["cnf"]["jkt"]
