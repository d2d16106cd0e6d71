"""Sample events: only catalogued types, each with the real event's shape from the seed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from gateway.event_types import OPERATIONS_EVENTS, PARTNER_EVENT_TYPES
from gateway.events import Event
from gateway.oauth.models import OAuthClient
from gateway.tenancy import clock_for
from sandbox.samples import FALLBACK_ONLY, Seeded, build_data
from tests.sandbox import real_events
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


def make_real_events(app, pc: PartnerClient, signup: dict) -> str:
    """The seed's own events and the real events `real_events` makes; returns the endpoint."""
    made = pc.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks",
                                             "event_types": ["*"]})
    assert made.status_code == 201, made.text
    seeded = signup["seeded"]
    real_events.collection(app, pc, seeded["collection"])
    real_events.payroll(app, pc)
    real_events.regulators(app, pc)
    real_events.egov(app, pc, seeded["accounts"]["accounts"])
    real_events.transfer(pc, seeded["accounts"]["accounts"])
    real_events.webhook_endpoint_changes(pc)
    real_events.webhook_retry(app, pc, made.json()["id"])
    return made.json()["id"]


def assert_same_keys(sample: Event, real: Event) -> None:
    """Exactly the real event's keys (plus `sample`), at the top level and one level down."""
    data = dict(sample.data)
    data.pop("sample")
    assert set(data) == set(real.data), sample.type
    for key, value in real.data.items():
        if isinstance(value, dict):
            assert set(data[key]) == set(value), (sample.type, key)
    assert sample.resource_type == real.resource_type, sample.type


def test_every_partner_type_fires_with_the_shape_of_the_real_event(app, http):
    """Each sample of a type with a real event (the seed's, or one made through the API) has
    the real event's shape."""
    pc, signup = seeded_partner(app, http)
    make_real_events(app, pc, signup)
    real = {e.type: e for e in events(app, pc.tenant_id)}
    fired = {}
    for type_ in sorted(PARTNER_EVENT_TYPES):
        response = pc.post(f"/sandbox/v1/events/{type_}")
        assert response.status_code == 201, (type_, response.text)
        assert response.json()["type"] == type_
        fired[response.json()["id"]] = type_
    samples = {e.id: e for e in events(app, pc.tenant_id) if e.id in fired}
    assert len(samples) == len(PARTNER_EVENT_TYPES)
    compared = set()
    for sample in samples.values():
        assert sample.data["sample"] is True
        if sample.type in real:
            assert_same_keys(sample, real[sample.type])
            compared.add(sample.type)
    assert len(compared) >= 56, sorted(PARTNER_EVENT_TYPES - compared)


def test_every_partner_type_is_built_from_the_seed(app, http):
    """No partner-facing type lacks a builder, and in a freshly seeded tenant (no endpoint, no
    event beyond the seed's) each builder has what it needs."""
    pc, _ = seeded_partner(app, http)
    assert not FALLBACK_ONLY
    with app.state.database.transaction() as session:
        seeded = Seeded(session, pc.tenant_id, clock_for(session, pc.tenant_id).now(),
                        "https://api.example.test")
        for type_ in sorted(PARTNER_EVENT_TYPES):
            built = build_data(seeded, type_)
            assert built is not None, type_
            resource_id, data = built
            assert resource_id and len(data) >= 2, type_  # more than the fallback's id


def test_samples_name_ledger_links_as_the_api_does_and_point_at_readable_top_ups(app, http):
    """Escrow samples carry `journal_entry_id` (the real events' name, not `transfer_id`), and
    the top-up sample names the seeded diner's seeded top-up, which its GET answers."""
    pc, _ = seeded_partner(app, http)
    by_type = {}
    for type_ in ("escrow_deposit.received", "release_instruction.executed",
                  "diner_wallet.topped_up"):
        response = pc.post(f"/sandbox/v1/events/{type_}")
        assert response.status_code == 201, (type_, response.text)
        by_type[type_] = next(e for e in events(app, pc.tenant_id) if e.id == response.json()["id"])
    for type_ in ("escrow_deposit.received", "release_instruction.executed"):
        data = by_type[type_].data
        assert data["journal_entry_id"].startswith("jnl_") and "transfer_id" not in data, type_
    topped = by_type["diner_wallet.topped_up"]
    got = pc.get(f"/v1/collection/canteen/diners/{topped.resource_id}/top-ups/"
                 f"{topped.data['top_up_id']}")
    assert got.status_code == 200, got.text
    assert got.json()["amount"] == topped.data["amount"]
    assert got.json()["diner_id"] == topped.resource_id == topped.data["diner"]["id"]
