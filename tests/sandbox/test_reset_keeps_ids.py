"""A sandbox reset brings back the seeded ids the developer configured at sign-up."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.db import Base
from partners.webhooks.models import WebhookDelivery
from sandbox.reset import _kept
from sandbox.seeded_ids import SEEDED_ID_PREFIXES
from tests.partners.helpers import run_jobs
from tests.tools.api import PartnerClient, make_app, sandbox_signup

ID = re.compile(r"^([a-z][a-z0-9]*)_[0-9A-HJKMNP-TV-Z]{26}$")


@pytest.fixture
def app(database, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Webhook endpoints may point at a loopback address here."""
    return make_app(database, tmp_path_factory.mktemp("data"), webhook_allow_loopback=True)


def signup(app, http) -> tuple[PartnerClient, dict[str, Any]]:
    return sandbox_signup(app, http)


def ids_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(ids_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(ids_in(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) and ID.match(value) else set()


def tenant_row_ids(app, tenant_id: str, *, cleared_only: bool = False) -> dict[str, set[str]]:
    """Every generated primary key of the tenant's rows, by table."""
    found: dict[str, set[str]] = {}
    with app.state.database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "tenant_id" not in table.c or (cleared_only and _kept(table)):
                continue
            for column in table.primary_key.columns:
                for (value,) in conn.execute(select(column).where(table.c.tenant_id == tenant_id)):
                    if isinstance(value, str) and ID.match(value) and value != tenant_id:
                        found.setdefault(table.name, set()).add(value)
    return found


def balances(pc: PartnerClient, account_ids: list[str]) -> dict[str, Any]:
    """The amounts (not the time they are as of)."""
    return {a: {k: v for k, v in pc.get(f"/v1/accounts/{a}/balances").json().items()
                if isinstance(v, dict)} for a in account_ids}


def test_only_rows_a_reset_deletes_get_seeded_ids(app, http):
    """The deterministic prefixes are exactly those of the cleared tables' seeded rows: a kept
    row with one would collide at the next seeding, a cleared row without one changes id."""
    pc, _ = signup(app, http)
    kept = {t.name for t in Base.metadata.sorted_tables if _kept(t)}
    for table, ids in tenant_row_ids(app, pc.tenant_id).items():
        prefixes = {ID.match(i).group(1) for i in ids}  # type: ignore[union-attr]
        if table in kept:
            assert not prefixes & SEEDED_ID_PREFIXES, (table, prefixes)
        else:
            assert prefixes <= SEEDED_ID_PREFIXES, (table, prefixes - SEEDED_ID_PREFIXES)


def test_a_reset_restores_the_seeded_ids_and_balances(app, http):
    pc, body = signup(app, http)
    made = pc.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks",
                                             "event_types": ["*"]})
    assert made.status_code == 201, made.text
    accounts = [a["id"] for a in pc.get("/v1/accounts", params={"limit": 100}).json()["data"]]
    configured = ids_in(body["seeded"]) | set(accounts)
    assert len(configured) > 20
    before = balances(pc, accounts)
    seeded_rows = tenant_row_ids(app, pc.tenant_id, cleared_only=True)

    operating = body["seeded"]["accounts"]["accounts"]["operating"]["id"]
    supplier = body["seeded"]["accounts"]["accounts"]["supplier"]["id"]
    transfer = pc.post("/v1/transfers", {"from_account_id": operating, "to_account_id": supplier,
                                         "amount": {"amount": "100.00", "currency": "CNY"}})
    assert transfer.status_code == 201, transfer.text
    assert balances(pc, [operating]) != {operating: before[operating]}

    answers = []
    for _ in range(2):
        run_jobs(app)  # deliveries of the seeding's and the business's events (kept rows)
        reset = pc.post("/sandbox/v1/reset")
        assert reset.status_code == 200, reset.text
        answers.append(reset.json()["seeded"])
    run_jobs(app)

    assert ids_in(answers[0]) == ids_in(answers[1]) == ids_in(body["seeded"])
    assert tenant_row_ids(app, pc.tenant_id, cleared_only=True) == seeded_rows
    for seeded_id in sorted(ids_in(body["seeded"])):
        if seeded_id.startswith("acct_"):
            assert pc.get(f"/v1/accounts/{seeded_id}").status_code == 200, seeded_id
    assert [a["id"] for a in pc.get("/v1/accounts", params={"limit": 100}).json()["data"]] \
        == accounts
    assert balances(pc, accounts) == before
    assert pc.get(f"/v1/transfers/{transfer.json()['id']}").status_code == 404
    with app.state.database.engine.connect() as conn:
        deliveries = conn.scalar(select(func.count()).select_from(WebhookDelivery)
                                 .where(WebhookDelivery.tenant_id == pc.tenant_id))
    assert deliveries and deliveries > len(configured) // 2  # three seedings' worth, all kept
