"""Sample events: only catalogued types, each with the real event's shape from the seed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from gateway.event_types import OPERATIONS_EVENTS, PARTNER_EVENT_TYPES
from gateway.events import Event
from gateway.oauth.models import OAuthClient
from sandbox.samples import FALLBACK_ONLY
from tests.tools.api import PartnerClient, make_app, problem


@pytest.fixture
def app(database, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Webhook endpoints may point at a loopback address here."""
    return make_app(database, tmp_path_factory.mktemp("data"), webhook_allow_loopback=True)


@pytest.fixture(autouse=True)
def _strict_event_types(monkeypatch):
    monkeypatch.setattr("gateway.event_types.strict", True)


def seeded_partner(app, http) -> tuple[PartnerClient, dict]:
    body = http.post("/sandbox/v1/signup", json={"name": "Acme", "email": "dev@acme.example"})
    assert body.status_code == 201, body.text
    body = body.json()
    with app.state.database.transaction() as session:  # fires ~100 samples in a row
        session.execute(update(OAuthClient).where(OAuthClient.id == body["client_id"])
                        .values(rate_plan="unlimited"))
    return PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                         tenant_id=body["tenant_id"], secret=body["client_secret"]), body


def events(app, tenant_id: str) -> list[Event]:
    with app.state.database.transaction() as session:
        rows = list(session.scalars(select(Event).where(Event.tenant_id == tenant_id)
                                    .order_by(Event.id)))
        session.expunge_all()
    return rows


def test_only_catalogued_partner_types_are_accepted(app, http):
    pc, _ = seeded_partner(app, http)
    operations_type = OPERATIONS_EVENTS[0].name
    for wrong in ("transfer.complete", "foo.bar", operations_type):
        body = problem(pc.post(f"/sandbox/v1/events/{wrong}"), 422, "invalid_event_type")
        assert body["known_types"] == sorted(PARTNER_EVENT_TYPES)
        assert "transfer.completed" in body["known_types"]
    assert not [e for e in events(app, pc.tenant_id) if e.type in
                ("transfer.complete", "foo.bar", operations_type)]


def test_a_sample_transfer_is_a_transfer_between_the_seeded_accounts(app, http):
    pc, signup = seeded_partner(app, http)
    seeded = signup["seeded"]["accounts"]["accounts"]
    real = pc.post("/v1/transfers", {"from_account_id": seeded["operating"]["id"],
                                     "to_account_id": seeded["supplier"]["id"],
                                     "amount": {"amount": "1.00", "currency": "CNY"}})
    assert real.status_code == 201, real.text
    fired = pc.post("/sandbox/v1/events/transfer.completed")
    assert fired.status_code == 201, fired.text
    by_id = {e.id: e for e in events(app, pc.tenant_id)}
    sample = by_id[fired.json()["id"]]
    real_event = next(e for e in by_id.values()
                      if e.type == "transfer.completed" and e.resource_id == real.json()["id"])
    assert set(sample.data) == set(real_event.data) | {"sample"}
    assert sample.data["sample"] is True and "sample" not in real_event.data
    assert sample.data["from_account_id"] == seeded["operating"]["id"]
    assert sample.data["to_account_id"] == seeded["supplier"]["id"]
    assert sample.data["status"] == "completed" and sample.data["amount"]["currency"] == "CNY"
    assert sample.resource_type == "transfer" and sample.resource_id == sample.data["id"]


def test_every_partner_type_fires_with_the_shape_of_the_real_event(app, http):
    """Seeding publishes real events of many types: each sample of such a type has exactly the
    real event's keys (plus `sample`), at the top level and one level down."""
    pc, _ = seeded_partner(app, http)
    made = pc.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks",
                                         "event_types": ["*"]})
    assert made.status_code == 201, made.text
    real = {e.type: e for e in events(app, pc.tenant_id)}
    fired = {}
    for type_ in sorted(PARTNER_EVENT_TYPES):
        response = pc.post(f"/sandbox/v1/events/{type_}")
        assert response.status_code == 201, (type_, response.text)
        assert response.json()["type"] == type_
        fired[response.json()["id"]] = type_
    samples = {e.id: e for e in events(app, pc.tenant_id) if e.id in fired}
    assert len(samples) == len(PARTNER_EVENT_TYPES)
    compared = 0
    for sample in samples.values():
        assert sample.data["sample"] is True
        if sample.type not in FALLBACK_ONLY:  # built from the seed: more than an id
            assert len(sample.data) > 2, sample.type
        if sample.type in real:
            data = dict(sample.data)
            data.pop("sample")
            assert set(data) == set(real[sample.type].data), sample.type
            for key, value in real[sample.type].data.items():
                if isinstance(value, dict):
                    assert set(data[key]) == set(value), (sample.type, key)
            assert sample.resource_type == real[sample.type].resource_type
            compared += 1
    assert compared >= 15  # the seed's own events: sub-merchants, diners, bills, members, ...
