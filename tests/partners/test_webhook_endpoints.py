"""Webhook endpoints through the API: create, list, update, delete, rotate; URL safety."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway.events import Event
from partners.webhooks.models import WebhookEndpoint
from tests.tools.api import make_app, new_partner_client, problem

PUBLIC = "https://93.184.215.14/hooks"


def _endpoints(app) -> int:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0)


def test_create_list_get_update_delete(app, http, partner):
    created = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": [
        "payroll_batch.*", "payables_certificate.transferred"], "description": "ERP"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["status"] == "enabled"
    assert body["event_types"] == ["payables_certificate.transferred", "payroll_batch.*"]
    assert body["environment"] == "sandbox" and body["created_at"].endswith("Z")
    eid = body["id"]

    got = partner.get(f"/v1/webhook-endpoints/{eid}").json()
    assert "secret" not in got and got["url"] == PUBLIC
    listed = partner.get("/v1/webhook-endpoints").json()
    assert [e["id"] for e in listed["data"]] == [eid] and listed["next_cursor"] is None

    patched = partner.request("PATCH", f"/v1/webhook-endpoints/{eid}",
                              json={"event_types": ["*"], "status": "disabled"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["*"] and patched.json()["status"] == "disabled"
    assert partner.request("PATCH", f"/v1/webhook-endpoints/{eid}",
                           json={"status": "enabled"}).json()["status"] == "enabled"

    assert partner.request("DELETE", f"/v1/webhook-endpoints/{eid}").status_code == 204
    problem(partner.get(f"/v1/webhook-endpoints/{eid}"), 404, "webhook_endpoint_not_found")
    assert partner.get("/v1/webhook-endpoints").json()["data"] == []
    with app.state.database.transaction() as s:
        types = [e.type for e in s.scalars(select(Event).where(Event.resource_id == eid)
                                           .order_by(Event.created_at, Event.id))]
        assert types == ["webhook_endpoint.created", "webhook_endpoint.updated",
                         "webhook_endpoint.updated", "webhook_endpoint.deleted"]
        stored = s.connection().exec_driver_sql("SELECT secret FROM webhook_endpoints").scalar()
        assert stored and not stored.startswith("whsec_")  # encrypted at rest


def test_pagination(app, http, partner):
    ids = [partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}
                        ).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = partner.get("/v1/webhook-endpoints?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert page.status_code == 200
        seen += [e["id"] for e in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    problem(partner.get("/v1/webhook-endpoints?limit=0"), 422)
    problem(partner.get("/v1/webhook-endpoints?limit=101"), 422)
    problem(partner.get("/v1/webhook-endpoints?cursor=%%%"), 422, "invalid_cursor")


def test_other_tenants_endpoints_are_invisible(app, http, partner):
    eid = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}).json()["id"]
    other = new_partner_client(app, http)
    problem(other.get(f"/v1/webhook-endpoints/{eid}"), 404)
    problem(other.request("PATCH", f"/v1/webhook-endpoints/{eid}", json={"status": "disabled"}),
            404)
    problem(other.request("DELETE", f"/v1/webhook-endpoints/{eid}"), 404)
    problem(other.post(f"/v1/webhook-endpoints/{eid}/rotate-secret"), 404)
    problem(other.get(f"/v1/webhook-endpoints/{eid}/deliveries"), 404)
    assert other.get("/v1/webhook-endpoints").json()["data"] == []
    assert partner.get(f"/v1/webhook-endpoints/{eid}").json()["status"] == "enabled"


def test_scope_is_required(app, http):
    reader = new_partner_client(app, http, scopes=["payroll:read"])
    problem(reader.get("/v1/webhook-endpoints"), 403, "insufficient_scope")
    problem(reader.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}), 403)
    problem(reader.get("/v1/events"), 403, "insufficient_scope")
    problem(TestClient(app).get("/v1/webhook-endpoints"), 401)


def test_bad_input_is_refused_and_changes_nothing(app, http, partner):
    cases = [
        {"url": "ftp://93.184.215.14/x", "event_types": ["*"]},
        {"url": "not a url", "event_types": ["*"]},
        {"url": PUBLIC, "event_types": []},
        {"url": PUBLIC, "event_types": ["Payroll Batch"]},
        {"url": PUBLIC, "event_types": ["payroll_batch.**"]},
        {"url": PUBLIC},
        {"url": PUBLIC, "event_types": ["*"], "secret": "mine"},
        {"url": "https://user:pw@93.184.215.14/x", "event_types": ["*"]},
    ]
    for body in cases:
        problem(partner.post("/v1/webhook-endpoints", body), 422)
    assert _endpoints(app) == 0
    eid = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}).json()["id"]
    for patch in [{"url": "http://127.0.0.1/x"}, {"event_types": ["??"]}, {"status": "deleted"},
                  {"event_types": []}]:
        problem(partner.request("PATCH", f"/v1/webhook-endpoints/{eid}", json=patch), 422)
    got = partner.get(f"/v1/webhook-endpoints/{eid}").json()
    assert got["url"] == PUBLIC and got["event_types"] == ["*"] and got["status"] == "enabled"


@pytest.mark.parametrize("types", [["bogus.created"], ["payrol_batch.*"], ["transfer.complete"],
                                   ["transfer.completed", "transfers.*"]])
def test_a_type_no_event_has_is_refused_naming_the_known_ones(app, partner, types):
    """A typo would deliver nothing, ever, without anyone noticing."""
    body = problem(partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": types}),
                   422, "unknown_event_types")
    assert "transfer.completed" in body["known_types"]
    assert _endpoints(app) == 0
    made = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["transfer.*"]})
    assert made.status_code == 201, made.text
    problem(partner.request("PATCH", f"/v1/webhook-endpoints/{made.json()['id']}",
                            json={"event_types": types}), 422, "unknown_event_types")
    assert partner.get(f"/v1/webhook-endpoints/{made.json()['id']}").json()["event_types"] == [
        "transfer.*"]


def test_endpoint_limit(app, http, partner):
    for _ in range(20):
        assert partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}
                            ).status_code == 201
    problem(partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]}), 409,
            "too_many_webhook_endpoints")


SSRF_URLS = [
    "https://127.0.0.1/hook",
    "https://127.1.2.3:8443/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.8/hook",
    "https://100.64.0.1/hook",  # shared address space (RFC 6598): carrier and cloud networks
    "https://[fec0::1]/hook",
    "https://[64:ff9b::a00:8]/hook",  # NAT64 to 10.0.0.8
    "https://172.16.5.4/hook",
    "https://192.168.1.1/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://0.0.0.0/hook",
    "https://localhost/hook",  # a host name resolving to loopback
    "https://localhost.localdomain/hook",
    "http://93.184.215.14/hook",  # production needs https
    "https://does-not-resolve.invalid/hook",
]


def test_production_refuses_private_loopback_and_link_local_urls(app, http):
    production = new_partner_client(app, http, environment="production")
    for url in SSRF_URLS:
        body = problem(production.post("/v1/webhook-endpoints", {"url": url,
                                                                 "event_types": ["*"]}), 422)
        assert body["code"] in ("unsafe_url",), (url, body)
    assert _endpoints(app) == 0
    ok = production.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]})
    assert ok.status_code == 201 and ok.json()["environment"] == "production"
    eid = ok.json()["id"]
    problem(production.request("PATCH", f"/v1/webhook-endpoints/{eid}",
                               json={"url": "https://169.254.169.254/"}), 422, "unsafe_url")


def test_sandbox_loopback_only_with_the_setting(database, tmp_path):
    strict = make_app(database, tmp_path / "a")
    with TestClient(strict) as http:
        pc = new_partner_client(strict, http)
        problem(pc.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/x",
                                                  "event_types": ["*"]}), 422, "unsafe_url")
        # sandbox allows plain http to public addresses
        assert pc.post("/v1/webhook-endpoints", {"url": "http://93.184.215.14/x",
                                                 "event_types": ["*"]}).status_code == 201
    relaxed = make_app(database, tmp_path / "b", webhook_allow_loopback=True)
    with TestClient(relaxed) as http:
        pc = new_partner_client(relaxed, http)
        for url in ("http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.1.2.3/x"):
            assert pc.post("/v1/webhook-endpoints", {"url": url, "event_types": ["*"]}
                           ).status_code == 201, url
        # never in production, whatever the setting
        production = new_partner_client(relaxed, http, environment="production")
        problem(production.post("/v1/webhook-endpoints", {"url": "https://127.0.0.1/x",
                                                          "event_types": ["*"]}), 422)


@pytest.mark.parametrize("key", ["same-key"])
def test_create_is_idempotent_with_a_key(app, http, partner, key):
    first = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]},
                         idempotency_key=key)
    again = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]},
                         idempotency_key=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    assert _endpoints(app) == 1
