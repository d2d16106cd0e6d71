"""A trailing slash is no other spelling of a route (QA F-01): it is the 404 problem, never a
redirect. Starlette's redirect built its `Location` from the request's `Host` header and scheme,
and a 307 keeps the method and the body, so a client that follows it re-sent a money-moving POST
to whatever host the header named."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts

from tests.tools.api import problem


def test_a_trailing_slash_is_the_404_problem_not_a_redirect(partner):
    listed = partner.get("/v1/transfers/", headers={"Host": "evil.example"})
    body = problem(listed, 404, "not_found")
    assert body["detail"] == "No route matches GET /v1/transfers/."
    assert "location" not in listed.headers
    sent = partner.post("/v1/transfers/", json_body={
        "from_account_id": "acct_a", "to_account_id": "acct_b",
        "amount": {"amount": "1.00", "currency": "CNY"}}, headers={"Host": "evil.example"})
    problem(sent, 404, "not_found")
    assert "location" not in sent.headers
    assert partner.get("/v1/transfers").json()["data"] == []
    problem(partner.get("/v1/me/"), 404, "not_found")
    problem(partner.get("/sandbox/v1/clock/"), 404, "not_found")
    assert partner.get("/v1/me").status_code == 200


def test_pages_with_a_trailing_slash_are_not_redirected_either(http):
    for path in ("/console/", "/console/login/", "/apply/", "/checkout/nothing/", "/healthz/",
                 "/oauth/token/"):
        response = http.get(path, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)
        assert "location" not in response.headers, path


def test_no_route_is_spelt_with_a_trailing_slash(app):
    # What a partner, a page's link or a form could have relied on the redirect for.
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            assert not context.path_format.endswith("/"), context.path_format
    assert not [path for path in app.openapi()["paths"] if path.endswith("/")]
