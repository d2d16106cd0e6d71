"""Which events an endpoint hears of does not depend on the sandbox test clock: every event
published after the endpoint was registered, none before, whether the clock was advanced or
put back by a reset in between (QA sandbox report, defect 1)."""

from __future__ import annotations

from typing import Any

from standardwebhooks import Webhook

from sandbox.seeded_ids import SEEDED_ID_PREFIXES
from tests.partners.helpers import Receiver, run_jobs
from tests.tools.api import PartnerClient, sandbox_signup


def fire(pc: PartnerClient, event_type: str = "transfer.completed") -> str:
    response = pc.post(f"/sandbox/v1/events/{event_type}")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def register(pc: PartnerClient, url: str) -> dict[str, Any]:
    response = pc.post("/v1/webhook-endpoints", {"url": url, "event_types": ["*"]})
    assert response.status_code == 201, response.text
    return dict(response.json())


def offset(pc: PartnerClient) -> int:
    response = pc.get("/sandbox/v1/clock")
    assert response.status_code == 200, response.text
    return int(response.json()["offset_seconds"])


def delivered_events(pc: PartnerClient, endpoint_id: str) -> dict[str, str]:
    """Event id -> delivery status, from every page of the endpoint's deliveries."""
    found: dict[str, str] = {}
    cursor = ""
    while True:
        page = pc.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=100{cursor}")
        assert page.status_code == 200, page.text
        body = page.json()
        found |= {d["event_id"]: d["status"] for d in body["data"]}
        if not body["next_cursor"]:
            return found
        cursor = f"&cursor={body['next_cursor']}"


def received_events(receiver: Receiver, secret: str) -> set[str]:
    hook = Webhook(secret)
    return {hook.verify(r["body"], r["headers"])["id"] for r in receiver.received}


def test_endpoint_registered_while_the_clock_was_ahead_hears_of_events_after_a_reset(
        app, http, receiver):  # type: ignore[no-untyped-def]
    pc, _ = sandbox_signup(app, http)
    earlier = fire(pc)  # before the endpoint exists: never delivered to it
    assert pc.post("/sandbox/v1/clock/advance", {"seconds": 86400}).status_code == 200
    ep = register(pc, receiver.url)
    ahead = fire(pc)
    run_jobs(app)
    assert delivered_events(pc, ep["id"])[ahead] == "succeeded"

    reset = pc.post("/sandbox/v1/reset")
    assert reset.status_code == 200, reset.text
    assert offset(pc) == 0  # the clock is back behind the endpoint's `created_at`
    listed = pc.get(f"/v1/webhook-endpoints/{ep['id']}")
    assert listed.status_code == 200 and listed.json()["status"] == "enabled"
    after = [fire(pc), fire(pc, "payroll_batch.completed")]
    run_jobs(app)

    delivered = delivered_events(pc, ep["id"])
    assert all(delivered.get(event_id) == "succeeded" for event_id in after), delivered
    assert earlier not in delivered
    assert {ahead, *after} <= received_events(receiver, ep["secret"])
    # and after the clock moves on again
    assert pc.post("/sandbox/v1/clock/advance", {"seconds": 3600}).status_code == 200
    later = fire(pc)
    run_jobs(app)
    assert delivered_events(pc, ep["id"]).get(later) == "succeeded"


def test_events_before_registration_are_not_delivered_whatever_their_clock_time(
        app, http, receiver):  # type: ignore[no-untyped-def]
    # Event and endpoint ids carry real time because neither is a seeded (deterministic) id.
    assert not {"evt", "we"} & SEEDED_ID_PREFIXES
    pc, _ = sandbox_signup(app, http)
    assert pc.post("/sandbox/v1/clock/advance", {"seconds": 86400}).status_code == 200
    # Published a day ahead on the test clock, before the endpoint, and not yet fanned out
    # when the endpoint is registered after the reset (with a `created_at` a day earlier).
    ahead = fire(pc)
    assert pc.post("/sandbox/v1/reset").status_code == 200
    ep = register(pc, receiver.url)
    after = fire(pc)
    run_jobs(app)

    delivered = delivered_events(pc, ep["id"])
    assert ahead not in delivered
    assert delivered.get(after) == "succeeded"
    assert ahead not in received_events(receiver, ep["secret"])
    # Only the endpoint's own creation and what followed it: nothing the reset's seeding
    # published before the endpoint was registered.
    events = pc.get("/v1/events?limit=100").json()["data"]
    created = next(e["id"] for e in events if e["type"] == "webhook_endpoint.created"
                   and e["data"]["id"] == ep["id"])
    assert set(delivered) == {created, after}
