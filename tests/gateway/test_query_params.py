"""A query parameter an API route does not take is refused, not ignored (QA F-04): a misspelt
filter returned the whole list. So is a single-valued parameter sent twice. Pages, documents,
probes and the OAuth endpoints take any (`gateway.query_params`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.query_params import STRICT_PREFIXES, declared
from tests.tools.api import problem


def _errors(response):  # type: ignore[no-untyped-def]
    return problem(response, 422, "validation_failed")["errors"]


def test_a_misspelt_filter_is_refused_not_ignored(partner):
    [error] = _errors(partner.get("/v1/transfers?account=acct_nothing"))
    assert error == {"field": "query.account", "code": "unknown_parameter",
                     "message": "Unknown query parameter. Did you mean account_id? This call "
                                "takes account_id, cursor, limit."}
    [error] = _errors(partner.get("/v1/accounts?limit=2&foo=bar"))
    assert error["field"] == "query.foo" and error["code"] == "unknown_parameter"
    assert "Did you mean" not in error["message"]
    [error] = _errors(partner.get("/v1/me?verbose=1"))
    assert error == {"field": "query.verbose", "code": "unknown_parameter",
                     "message": "Unknown query parameter: this call takes none."}
    # Under /sandbox/ too.
    [error] = _errors(partner.get("/sandbox/v1/clock?tenant=x"))
    assert error["field"] == "query.tenant"
    assert partner.get("/v1/transfers?account_id=acct_nothing&limit=5").status_code == 200


def test_a_single_valued_parameter_sent_twice_is_refused(partner):
    [error] = _errors(partner.get("/v1/accounts?limit=1&limit=3"))
    assert error == {"field": "query.limit", "code": "repeated_parameter",
                     "message": "Sent 2 times; this parameter takes one value."}
    # Blank or not, it is there twice.
    [error] = _errors(partner.get("/v1/accounts?cursor=&cursor="))
    assert error["field"] == "query.cursor" and error["code"] == "repeated_parameter"


def test_every_error_of_the_query_comes_in_one_problem(partner):
    errors = _errors(partner.get("/v1/accounts?limit=7&foo=1&foo=2&bar=&limit=abc"))
    assert [(e["field"], e["code"]) for e in errors] == [
        ("query.limit", "int_parsing"), ("query.limit", "repeated_parameter"),
        ("query.foo", "unknown_parameter"), ("query.bar", "unknown_parameter")]
    many = "&".join(f"p{n}=1" for n in range(500))
    assert len(_errors(partner.get(f"/v1/accounts?{many}"))) == 20  # the first ones only


def test_a_refused_write_changes_nothing_and_keeps_no_key(partner):
    before = partner.get("/sandbox/v1/clock").json()["offset_seconds"]
    refused = partner.post("/sandbox/v1/clock/advance?secondz=60", {"seconds": 60},
                           idempotency_key="k-query")
    assert [e["field"] for e in _errors(refused)] == ["query.secondz"]
    assert partner.get("/sandbox/v1/clock").json()["offset_seconds"] == before
    sent = partner.post("/sandbox/v1/clock/advance", {"seconds": 60}, idempotency_key="k-query")
    assert sent.status_code == 200, sent.text
    assert "idempotent-replayed" not in sent.headers


def test_authentication_is_still_judged_first(http, partner):
    # A caller without a token learns nothing of the route's parameters; a token in the query
    # is still the 400 it was.
    problem(http.get("/v1/transfers?account=x"), 401, "unauthorized")
    problem(partner.get(f"/v1/transfers?access_token={partner.token}"), 400)


def test_pages_documents_probes_and_oauth_take_any_query(app, http):
    for path in ("/healthz?probe=1", "/readyz?x=1", "/.well-known/oauth-authorization-server?x=1",
                 "/oauth/jwks?_=1700000000", "/openapi.json?x=1", "/docs?x=1",
                 "/console/login?utm_source=mail", "/apply?ref=partner-site"):
        response = http.get(path, follow_redirects=False)
        assert response.status_code in (200, 503), (path, response.status_code, response.text)
    metrics = http.get("/metrics?name[]=quanlian_http_requests_total")
    assert metrics.status_code == 200, metrics.text
    token = http.post("/oauth/token?x=1", data={"grant_type": "client_credentials"})
    assert token.status_code == 401 and token.json()["error"] == "invalid_client", token.text


def test_parameters_of_dependencies_and_aliases_are_taken(app, partner):
    def window(since: Annotated[str | None, Query(alias="from")] = None) -> str | None:
        return since

    def paged(limit: int = 10, span: str | None = Depends(window)) -> dict[str, object]:
        return {"limit": limit, "from": span}

    @app.get("/v1/probe-query", include_in_schema=False)
    def probe(q: str = "", page: dict[str, object] = Depends(paged)) -> dict[str, object]:
        return {"q": q, **page}

    assert partner.get("/v1/probe-query?q=a&limit=3&from=x").json() == {
        "q": "a", "limit": 3, "from": "x"}
    [error] = _errors(partner.get("/v1/probe-query?since=x"))
    assert error["field"] == "query.since" and error["message"].endswith(
        "This call takes from, limit, q.")


def test_a_parameter_declared_as_a_list_may_repeat(app, partner):
    @app.get("/v1/probe-query-list", include_in_schema=False)
    def probe(tag: Annotated[list[str] | None, Query()] = None, one: str = "") -> dict[str, object]:
        return {"tag": tag, "one": one}

    assert partner.get("/v1/probe-query-list?tag=a&tag=b&one=x").json() == {
        "tag": ["a", "b"], "one": "x"}
    [error] = _errors(partner.get("/v1/probe-query-list?tag=a&one=x&one=y"))
    assert error["field"] == "query.one" and error["code"] == "repeated_parameter"


def test_each_api_route_takes_what_its_operation_documents(app):
    # The names a route takes are those the API document lists for it: a partner reading the
    # document can send no parameter that is then refused.
    documented = app.openapi()["paths"]
    seen = 0
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        taken = declared(context.dependant)
        if not context.path_format.startswith(STRICT_PREFIXES):
            assert taken is None, context.path_format
            continue
        assert taken is not None, context.path_format
        for method in context.methods:
            operation = documented[context.path_format][method.lower()]
            names = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"}
            assert names == taken.names, (method, context.path_format)
            assert "422" in operation["responses"], (method, context.path_format)
            seen += 1
    assert seen > 150
