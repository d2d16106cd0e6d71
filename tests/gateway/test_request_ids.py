"""Every call is named by the platform's own request id (QA F-06): a client's `X-Request-Id` no
longer replaces it (two calls shared one id in the signed evidence log, and a caller could take
another call's id); it is played back in `X-Client-Request-Id` and the access log instead. UK
Open Banking's `x-fapi-interaction-id` is played back when it is a UUID, and minted when not."""

from __future__ import annotations

import base64
import json
import logging
import uuid

from gateway.correlation import uuid4
from gateway.evidence import service
from tests.tools.api import problem


def _entry(app, partner, response):  # type: ignore[no-untyped-def]
    """The evidence entry of a call, by the receipt it answered with."""
    service.integrate(app.state.database, app.state.evidence_log)
    entry_id = response.headers["evidence-entry"].partition(";")[0]
    found = partner.get(f"/v1/evidence/entries/{entry_id}")
    assert found.status_code == 200, found.text
    return found.json()


def test_a_clients_request_id_never_names_the_call(app, partner):
    first = partner.get("/v1/me", headers={"X-Request-Id": "trace-7"})
    second = partner.get("/v1/accounts?limit=1", headers={"X-Request-Id": "trace-7"})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] != ids[1] and all(rid.startswith("req_") for rid in ids)
    for response, rid in zip((first, second), ids, strict=True):
        assert response.status_code == 200, response.text
        assert response.headers["x-client-request-id"] == "trace-7"
        entry = _entry(app, partner, response)
        assert entry["entry"]["request_id"] == rid
        # The signed entry's format is unchanged: the caller's id is not in it.
        assert b"trace-7" not in base64.b64decode(entry["canonical"])
    # A caller cannot take another call's id either.
    taken = partner.get("/v1/me", headers={"X-Request-Id": ids[0]})
    assert taken.headers["x-request-id"] not in ids
    assert _entry(app, partner, taken)["entry"]["request_id"] == taken.headers["x-request-id"]


def test_a_problem_names_the_platforms_request_id(partner):
    response = partner.get("/v1/transfers/trf_nothing", headers={"X-Request-Id": "trace-8"})
    body = problem(response, 404)
    assert body["request_id"] == response.headers["x-request-id"] != "trace-8"
    assert response.headers["x-client-request-id"] == "trace-8"
    refused = partner.post("/v1/transfers", content=b"x" * (2 * 1024 * 1024),
                           headers={"X-Request-Id": "trace-9", "content-type": "application/json"})
    body = problem(refused, 413, "payload_too_large")  # answered by the edge itself
    assert body["request_id"] == refused.headers["x-request-id"] != "trace-9"
    assert refused.headers["x-client-request-id"] == "trace-9"


def test_only_a_plain_token_is_echoed(http):
    for sent in ("a", "abc-123", "Z" * 64, "trace:1/2.3_4~!", "req_01M99MRQ1B3CYVX68SMKXK43XM"):
        response = http.get("/healthz", headers={"X-Request-Id": sent})
        assert response.headers["x-client-request-id"] == sent, sent
        assert response.headers["x-request-id"] != sent
    for sent in ("Z" * 65, "with space", "tab\there", "caf\u00e9".encode(), ""):
        response = http.get("/healthz", headers={"X-Request-Id": sent})
        assert response.status_code == 200
        assert "x-client-request-id" not in response.headers, sent
        assert response.headers["x-request-id"].startswith("req_")
    assert "x-client-request-id" not in http.get("/healthz").headers


def test_a_fapi_interaction_id_is_played_back_when_it_is_a_uuid(http):
    sent = "93BAC548-D2DE-4546-B106-880A5018460D"
    assert http.get("/healthz", headers={"x-fapi-interaction-id": sent}).headers[
        "x-fapi-interaction-id"] == sent
    minted = set()
    for headers in ({}, {"x-fapi-interaction-id": "not-a-uuid"},
                    {"x-fapi-interaction-id": "{" + sent + "}"},
                    {"x-fapi-interaction-id": sent.replace("-", "")},
                    {"x-fapi-interaction-id": sent + "0"}):
        answered = http.get("/healthz", headers=headers).headers["x-fapi-interaction-id"]
        made = uuid.UUID(answered)
        assert made.version == 4 and made.variant == uuid.RFC_4122 and str(made) == answered
        assert answered.replace("-", "").upper() != sent.replace("-", ""), headers
        minted.add(answered)
    assert len(minted) == 5
    # Every random bit of a version 4 UUID but the version and variant is random.
    many = [uuid.UUID(uuid4()) for _ in range(2000)]
    assert {u.version for u in many} == {4} and {u.variant for u in many} == {uuid.RFC_4122}
    assert {str(u)[19] for u in many} == set("89ab") and len({u.int for u in many}) == 2000
    # Problems (an unknown route) carry it too.
    missing = http.get("/v1/nothing", headers={"x-fapi-interaction-id": sent})
    assert missing.status_code == 404 and missing.headers["x-fapi-interaction-id"] == sent


def test_the_access_log_has_both_ids(http, caplog):
    interaction = str(uuid.uuid4())
    with caplog.at_level(logging.INFO, logger="quanlian.access"):
        response = http.get("/healthz", headers={"X-Request-Id": "log-7",
                                                 "x-fapi-interaction-id": interaction})
        plain = http.get("/healthz")
    lines = {item["request_id"]: item for item in
             (json.loads(r.getMessage()) for r in caplog.records if r.name == "quanlian.access")}
    line = lines[response.headers["x-request-id"]]
    assert line["client_request_id"] == "log-7" and line["interaction_id"] == interaction
    line = lines[plain.headers["x-request-id"]]
    assert line["client_request_id"] is None
    assert line["interaction_id"] == plain.headers["x-fapi-interaction-id"]
