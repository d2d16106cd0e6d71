"""The published document says which calls need a token and which scopes, and it is true: a
partner's generated client (or /docs) learns how to authenticate from it."""

from __future__ import annotations

import json
import re
import uuid

from gateway.cli import openapi_document
from gateway.oauth.scopes import ALL_SCOPES, OPERATIONS_SCOPES, SUPERVISOR_SCOPES
from tests.tools.api import new_partner_client

UNHELD = "x_00000000000000000000000000"  # fills path parameters: an id nobody holds


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, re.sub(r"\{[^}]+\}", UNHELD, path), op


def call(http, method, url, headers):
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return http.request(method, url, json=body,
                        headers={"Idempotency-Key": uuid.uuid4().hex, **headers})


def test_the_oauth2_scheme_lists_every_scope_and_the_token_endpoint():
    spec = json.loads(openapi_document())
    scheme = spec["components"]["securitySchemes"]["oauth2"]
    flow = scheme["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth/token" and "/oauth/token" in spec["paths"]
    assert set(flow["scopes"]) == set(ALL_SCOPES) and all(flow["scopes"].values())
    assert "DPoP" in scheme["description"] and "private_key_jwt" in scheme["description"]


def test_every_documented_requirement_holds(app, http):
    spec = json.loads(openapi_document())
    weak = new_partner_client(app, http, scopes=["evidence:read"])
    secured = 0
    for method, path, url, op in operations(spec):
        where = f"{method} {path}"
        security = op.get("security")
        if security is None:
            if method == "GET":  # public reads answer without a token
                assert http.get(url).status_code != 401, where
            continue
        secured += 1
        # Several requirements are alternatives (any one will do: the sandbox's clock and
        # reset take any write scope); the weak client holds none of them.
        requirement, *others = security
        needed = set(requirement["oauth2"])
        for alternative in others:
            assert not set(alternative["oauth2"]) <= {"evidence:read"}, where
            strong = new_partner_client(app, http, scopes=sorted(alternative["oauth2"]))
            allowed = call(http, method, url, strong.auth(method, url))
            assert allowed.status_code not in (401, 403), (where, allowed.text[:200])
        anonymous = call(http, method, url, {})
        assert anonymous.status_code == 401, (where, anonymous.text[:200])
        assert anonymous.headers["www-authenticate"].startswith(("Bearer", "DPoP")), where
        answer = call(http, method, url, weak.auth(method, url))
        if needed - {"evidence:read"}:
            assert answer.status_code == 403, (where, answer.text[:200])
            assert answer.json()["code"] == "insufficient_scope", where
            assert others or all(s in answer.json()["detail"] for s in needed), where
        else:
            assert answer.status_code not in (401, 403), (where, answer.text[:200])
        # A scope only the bank or a regulator holds is never asked of a partner with others.
        assert not (needed & set(OPERATIONS_SCOPES)) or needed <= set(OPERATIONS_SCOPES), where
        assert not (needed & set(SUPERVISOR_SCOPES)) or len(needed) == 1, where
    assert secured > 150
