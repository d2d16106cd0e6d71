"""Issue: every error is an RFC 9457 problem; request ids; security headers; health."""

from __future__ import annotations

import json
import logging

from fastapi import Depends, Request
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from gateway.db import get_session
from gateway.oauth.models import OAuthClient
from tests.tools.api import problem


def test_unknown_route_is_a_problem(http):
    body = problem(http.get("/v1/nothing-here"), 404, "not_found")
    assert "request_id" in body and body["type"].startswith("urn:quanlian:problem:")


def test_wrong_method_is_a_problem(http):
    problem(http.delete("/healthz"), 405, "method_not_allowed")


def test_malformed_json_is_a_problem(app, http, partner):
    response = partner.post("/v1/partner-probe-json", content=b"{not json",
                            headers={"content-type": "application/json"})
    problem(response, 400, "malformed_json")


def test_malformed_json_names_the_body_not_an_offset(partner):
    response = partner.post("/v1/partner-probe-json", content=b'{"name": x}',
                            headers={"content-type": "application/json"})
    [error] = problem(response, 400, "malformed_json")["errors"]
    assert error["field"] == "body" and "character 9" in error["message"]


def test_a_key_named_twice_in_a_json_object_is_malformed(partner):
    # Which value a repeated key means is up to the reader: one component may take the first
    # amount and the ledger the last. Refused, nested objects too.
    before = partner.get("/sandbox/v1/clock").json()["offset_seconds"]
    for path, body in (
            ("/sandbox/v1/clock/advance", b'{"seconds": 1, "seconds": 86400}'),
            ("/v1/transfers", b'{"from_account_id": "acct_a", "to_account_id": "acct_b", '
                              b'"amount": {"amount": "1.00", "currency": "CNY", "amount": "2.00"}}')):
        response = partner.post(path, content=body, headers={"content-type": "application/json"})
        [error] = problem(response, 400, "malformed_json")["errors"]
        assert error["field"] == "body" and "'seconds' appears twice" in error["message"] or (
            "'amount' appears twice" in error["message"]), error
    assert partner.get("/sandbox/v1/clock").json()["offset_seconds"] == before
    once = partner.post("/sandbox/v1/clock/advance", content=b'{"seconds": 1}',
                        headers={"content-type": "application/json"})
    assert once.status_code == 200, once.text


def test_a_json_body_sent_as_another_media_type_is_a_415(partner):
    body = b'{"name": "a", "amount": "1.00", "count": 1}'
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        response = partner.post("/v1/partner-probe-json", content=body,
                                headers={"content-type": media})
        detail = problem(response, 415, "unsupported_media_type")["detail"]
        assert "application/json" in detail and media in detail
    sent = partner.post("/v1/partner-probe-json", content=body,
                        headers={"content-type": "application/json; charset=utf-8"})
    assert sent.status_code == 200, sent.text


def test_a_json_body_sent_without_a_content_type_is_a_415(partner):
    # `requests.post(url, data=json.dumps(...))`: JSON, but not labelled. It was a 422 about
    # "a valid dictionary" on `body` (QA F-08); now the 415 a wrong label gets, in its words.
    said = ("This call takes a JSON body: send it with Content-Type: application/json "
            "(the request had no Content-Type).")
    body = b'{"name": "a", "amount": "1.00", "count": 1}'
    response = partner.post("/v1/partner-probe-json", content=body)
    assert "content-type" not in response.request.headers
    assert problem(response, 415, "unsupported_media_type")["detail"] == said
    blank = partner.post("/v1/partner-probe-json", content=body, headers={"content-type": ""})
    assert problem(blank, 415, "unsupported_media_type")["detail"] == said
    sent = partner.post("/v1/transfers", content=b"{}", idempotency_key="k-no-type")
    assert problem(sent, 415, "unsupported_media_type")["detail"] == said
    assert partner.get("/v1/transfers").json()["data"] == []
    # A route whose body is optional: an unlabelled body is refused alike...
    named = partner.post("/sandbox/v1/regulators", content=b'{"name": "Zhang"}')
    assert problem(named, 415, "unsupported_media_type")["detail"] == said
    # ...and no body at all, with no Content-Type, is still the call without one.
    bare = partner.post("/sandbox/v1/regulators")
    assert "content-type" not in bare.request.headers
    assert bare.status_code == 201, bare.text
    # A required body left out is still the field error it was.
    missing = problem(partner.post("/v1/partner-probe-json"), 422, "validation_failed")
    assert [e["field"] for e in missing["errors"]] == ["body"]


def test_a_real_transfer_sent_as_text_changes_nothing(partner):
    response = partner.post("/v1/transfers", content=b'{"from_account_id": "acc_x"}',
                            headers={"content-type": "text/plain"}, idempotency_key="k-415")
    problem(response, 415, "unsupported_media_type")


def test_validation_problem_lists_each_field(partner):
    response = partner.post("/v1/partner-probe-json", json_body={"amount": 1.5, "count": "x"})
    body = problem(response, 422, "validation_failed")
    fields = {e["field"] for e in body["errors"]}
    assert {"body.amount", "body.count", "body.name"} <= fields


def test_ten_megabyte_body_is_refused(http):
    response = http.post("/oauth/token", content=b"x" * (10 * 1024 * 1024),
                         headers={"content-type": "application/x-www-form-urlencoded"})
    problem(response, 413, "payload_too_large")


def test_streamed_body_without_length_is_counted(http):
    def chunks():
        for _ in range(20):
            yield b"y" * (128 * 1024)

    response = http.post("/oauth/token", content=chunks(),
                         headers={"content-type": "application/x-www-form-urlencoded"})
    problem(response, 413, "payload_too_large")


def test_unexpected_exception_is_a_generic_500_without_trace(app, caplog):
    @app.get("/v1/explode", include_in_schema=False)
    def explode(request: Request) -> dict[str, str]:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        response = client.get("/v1/explode", headers={"X-Request-ID": "trace-me-1"})
    body = problem(response, 500, "internal_error")
    # The platform's own id, to quote to support; the caller's comes back beside it.
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"].startswith("req_")
    assert response.headers["x-client-request-id"] == "trace-me-1"
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert any("unhandled" in r.getMessage() for r in caplog.records)


def test_request_id_is_the_platforms_and_the_callers_is_echoed_apart(http):
    # This test asserted the defect QA F-06 reported (a caller's X-Request-Id became the
    # call's request id); the platform now always names the call itself.
    given = http.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"].startswith("req_")
    assert given.headers["x-client-request-id"] == "abc-123"
    bad = http.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert bad.headers["x-request-id"].startswith("req_")
    assert "x-client-request-id" not in bad.headers
    assert http.get("/healthz").headers["x-request-id"].startswith("req_")


def test_security_headers(http):
    response = http.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "access-control-allow-origin" not in response.headers


def test_cors_closed(http):
    response = http.options("/v1/me", headers={"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code in (404, 405)


def test_health_and_metrics(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    http.get("/v1/nothing")
    metrics = http.get("/metrics").text
    assert "quanlian_http_requests_total" in metrics
    assert 'route="/healthz"' in metrics


def test_metrics_configured_with_a_token_answer_only_the_scraper(database, tmp_path):
    from starlette.testclient import TestClient

    from tests.tools.api import make_app

    app = make_app(database, tmp_path, metrics_token="scrape-Fq3x")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/healthz")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-Fq3x"},
                        {"Authorization": "Bearer scrape-Fq3"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert refused.json()["code"] == "metrics_token_required"
            assert "quanlian_http" not in refused.text
        scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-Fq3x"})
        assert scraped.status_code == 200
        assert 'route="/healthz"' in scraped.text
        assert client.get("/healthz").json() == {"status": "ok"}  # health stays open


def test_readyz_tells_a_database_behind_the_code_from_one_ahead_of_it(app, http):
    """Behind: migrate. Ahead (a newer release migrated it): migrating cannot help, so the
    problem says so instead of asking for a migration."""
    from sqlalchemy import text

    def at(revision: str) -> dict:
        with app.state.database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
        return http.get("/readyz").json()

    assert http.get("/readyz").json()["status"] == "ready"
    behind = at("0007")
    assert behind["code"] == "migrations_pending" and behind["status"] == 503
    assert "at migration 0007" in behind["detail"] and "`quanlian db upgrade`" in behind["detail"]
    ahead = at("0999")
    assert ahead["code"] == "schema_newer_than_code" and ahead["status"] == 503
    assert "newer release (revision 0999" in ahead["detail"]
    assert "`quanlian db upgrade`" not in ahead["detail"]


def test_access_log_is_json_without_personal_data(http, caplog):
    with caplog.at_level(logging.INFO, logger="quanlian.access"):
        response = http.get("/healthz", headers={"X-Request-ID": "log-1"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "quanlian.access"]
    line = next(item for item in lines if item["request_id"] == response.headers["x-request-id"])
    assert line["client_request_id"] == "log-1"
    assert line["route"] == "/healthz" and line["status"] == 200 and "latency_ms" in line


def test_a_number_too_large_for_the_database_is_a_422_that_changes_nothing(app, caplog):
    """The net under every route: a number beyond a 64-bit column (SQLite's driver refuses to
    bind it; PostgreSQL answers numeric_value_out_of_range) is the request's fault, not a 500,
    and what the route had written is rolled back."""
    database = app.state.database
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE probe_numbers (n BIGINT)"))

    @app.get("/v1/probe-number/{n}", include_in_schema=False)
    def probe(n: int, session: Session = Depends(get_session)) -> dict[str, int]:
        session.execute(text("INSERT INTO probe_numbers (n) VALUES (1)"))
        session.execute(text("INSERT INTO probe_numbers (n) VALUES (CAST(:n AS BIGINT))"),
                        {"n": n})
        return {"n": n}

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/probe-number/5").json() == {"n": 5}
        response = client.get(f"/v1/probe-number/{2**70}")
    body = problem(response, 422, "value_out_of_range")
    assert "Traceback" not in response.text and "INSERT" not in body["detail"]
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM probe_numbers ORDER BY n")).scalars().all() == [1, 5]


def test_an_overflow_is_a_422_logged_in_one_line_without_a_traceback(app, caplog):
    """A value beyond what the calendar holds is the caller's mistake: operators get one line
    saying where it was raised (to bound that input with a clearer message), not a traceback
    that reads like a failure."""
    from datetime import date, timedelta

    @app.get("/v1/probe-overflow", include_in_schema=False)
    def overflow() -> dict[str, str]:
        return {"day": str(date.max + timedelta(days=1))}

    with TestClient(app, raise_server_exceptions=False) as client, \
            caplog.at_level(logging.WARNING, logger="quanlian"):
        response = client.get("/v1/probe-overflow")
    problem(response, 422, "value_out_of_range")
    [record] = [r for r in caplog.records if "out-of-range input" in r.getMessage()]
    assert "test_errors_and_edge.py:" in record.getMessage()
    assert record.exc_info is None and "Traceback" not in caplog.text


def test_other_database_errors_stay_500s(app):
    """Only out-of-range values are the request's fault; a broken statement is not."""
    @app.get("/v1/probe-broken", include_in_schema=False)
    def broken(session: Session = Depends(get_session)) -> dict[str, str]:
        session.execute(text("SELECT CAST('abc' AS INTEGER) / 0 FROM no_such_table"))
        return {}

    with TestClient(app, raise_server_exceptions=False) as client:
        problem(client.get("/v1/probe-broken"), 500, "internal_error")


def test_evidence_indexes_beyond_the_log_are_refused_or_not_found(http):
    for path in ("/v1/evidence/leaves?start=99999999999999999999999",
                 "/v1/evidence/checkpoints?after=99999999999999999999999",
                 "/v1/evidence/proofs/inclusion?index=99999999999999999999999&tree_size=1",
                 "/v1/evidence/proofs/consistency?first=1&second=99999999999999999999999"):
        problem(http.get(path), 422, "validation_failed")
    for ref in ("99999999999999999999999", "%C2%B2", "%D9%A3"):  # huge; superscript two; Arabic 3
        problem(http.get(f"/v1/evidence/entries/{ref}"), 404, "evidence_entry_not_found")


def test_nul_characters_never_make_a_server_error(app, http):
    """PostgreSQL's text cannot hold U+0000: the request is a 422 that changes nothing, and
    SQLite (the sandbox's database) answers the same."""
    def clients() -> int:
        with app.state.database.engine.connect() as conn:
            return len(conn.execute(OAuthClient.__table__.select()).all())

    before = clients()
    response = http.post("/sandbox/v1/signup", json={"name": "Acme\u0000", "email": "a@acme.example"})
    problem(response, 422, "nul_character")
    assert clients() == before


def test_answers_to_credentials_and_writes_are_not_cached(app, http, partner):
    # A balance read with a token, a secret shown once at creation: no cache may keep them.
    read = partner.get("/v1/me")
    assert read.status_code == 200 and read.headers["cache-control"] == "no-store"
    created = partner.post("/sandbox/v1/regulators")
    assert created.status_code == 201, created.text
    assert "client_secret" in created.text and created.headers["cache-control"] == "no-store"
    signup = http.post("/sandbox/v1/signup", json={"name": "Acme", "email": "dev@acme.example"})
    assert signup.headers["cache-control"] == "no-store", signup.text
    # A public document keeps its own caching (none is forced on it).
    assert "cache-control" not in http.get("/oauth/jwks").headers
