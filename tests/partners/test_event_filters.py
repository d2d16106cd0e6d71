"""`GET /v1/events?type=`: exactly the catalogued event types and the wildcards a webhook
subscription takes (`resource.*`, `*`); anything else is a 422 naming the known types."""

from __future__ import annotations

from gateway.event_types import PARTNER_EVENT_TYPES
from tests.tools.api import problem

PUBLIC = "https://93.184.215.14/hooks"


def _types(partner, pattern: str, **params) -> list[str]:  # type: ignore[no-untyped-def]
    response = partner.get("/v1/events", params={"type": pattern, "limit": 100, **params})
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["data"]]


def _endpoints(partner) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        created = partner.post("/v1/webhook-endpoints", {"url": PUBLIC, "event_types": ["*"]})
        assert created.status_code == 201, created.text
    updated = partner.request("PATCH", f"/v1/webhook-endpoints/{created.json()['id']}",
                              json={"description": "renamed"})
    assert updated.status_code == 200, updated.text


def test_a_wildcard_filters_like_a_subscription(partner):
    _endpoints(partner)
    everything = _types(partner, "*")
    assert sorted(everything) == sorted(_types(partner, "webhook_endpoint.*"))
    assert sorted(everything) == ["webhook_endpoint.created", "webhook_endpoint.created",
                                  "webhook_endpoint.updated"]
    assert _types(partner, "webhook_endpoint.created") == ["webhook_endpoint.created"] * 2
    assert _types(partner, "transfer.*") == []  # a catalogued resource, nothing happened yet
    assert _types(partner, "transfer.completed") == []
    # `resource.*` is a prefix of the type: webhook_delivery.* is not webhook_endpoint.*.
    assert _types(partner, "webhook_delivery.*") == []


def test_a_filtered_list_pages_with_its_cursor(partner):
    _endpoints(partner)
    first = partner.get("/v1/events", params={"type": "webhook_endpoint.*", "limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = partner.get("/v1/events", params={"type": "webhook_endpoint.*", "limit": 2,
                                             "cursor": first["next_cursor"]}).json()
    ids = [e["id"] for e in first["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) == 3 and rest["next_cursor"] is None


def test_an_unknown_type_is_a_422_naming_the_known_types(partner):
    _endpoints(partner)
    for pattern in ("bogus", "transfer.bogus", "bogus.*", "transfer.completed.*"):
        body = problem(partner.get("/v1/events", params={"type": pattern}), 422,
                       "unknown_event_types")
        assert pattern in body["detail"] and "known_types" in body["detail"], body
        assert body["known_types"] == sorted(PARTNER_EVENT_TYPES)
        assert "transfer.completed" in body["known_types"]
        assert body["errors"][0]["field"] == "query.type", body


def test_a_malformed_type_is_a_422(partner):
    for pattern in ("Transfer.Completed", "transfer.", "transfer.**", "*.completed", " "):
        body = problem(partner.get("/v1/events", params={"type": pattern}), 422,
                       "invalid_event_types")
        assert body["errors"][0]["field"] == "query.type", body
