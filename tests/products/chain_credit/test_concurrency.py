"""32 concurrent, conflicting splits and transfers of one certificate: exactly one wins, the
rest are 409 problems, and nothing is spent twice (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from gateway.events import Event
from products.chain_credit.models import FinancingApplication, PayablesCertificate
from tests.products.chain_credit.helpers import (
    BASE,
    OPS,
    balance,
    build_chain,
    ledger_audit,
    money,
    register,
)
from tests.tools.api import problem

RACERS = 32


def test_concurrent_conflicting_splits_and_transfers(app, http):
    chain = build_chain(app, http, tiers=(1, 1, 1))
    recipients = [register(app, chain.pc, name=f"二级供应商{i}有限公司", role="supplier",
                           upstream=chain.t1.id) for i in range(RACERS // 2)]
    cert = chain.issue_accepted("3200.00")
    holder = chain.t1.id
    chain.pc.token  # noqa: B018 - fetch the token once, before the race
    barrier = threading.Barrier(RACERS)

    def race(i: int):
        if i % 2:
            body = {"acting_member_id": holder, "to_member_id": recipients[i // 2].id}
            path = f"{BASE}/payables-certificates/{cert['id']}/transfer"
        else:
            first = 100 * (i + 1)
            body = {"acting_member_id": holder,
                    "parts": [money(f"{first}.00"), money(f"{3200 - first}.00")]}
            path = f"{BASE}/payables-certificates/{cert['id']}/split"
        barrier.wait()
        return chain.pc.post(path, body, idempotency_key=f"race-{i}")

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(race, range(RACERS)))

    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code != 200]
    assert len(winners) == 1, [r.status_code for r in responses]
    for response in losers:
        problem(response, 409, "certificate_state_conflict")

    with app.state.database.transaction() as session:
        nodes = list(session.scalars(select(PayablesCertificate).where(
            PayablesCertificate.root_id == cert["id"])))
        children = [n for n in nodes if n.parent_id == cert["id"]]
        assert len(children) == len(winners[0].json()["children"])
        assert sum(c.face_fen for c in children) == 320_000
        assert len(nodes) == 1 + len(children)
        spent = session.scalar(select(func.count(Event.id)).where(
            Event.resource_id == cert["id"],
            Event.type.in_(["payables_certificate.split", "payables_certificate.transferred"])))
        assert spent == 1
    parent = chain.get(cert["id"])
    assert parent["status"] in ("split", "transferred")


def test_concurrent_issuance_never_exceeds_the_limit(app, http):
    chain = build_chain(app, http, limit="1000.00", tiers=(1, 1, 1))
    chain.pc.token  # noqa: B018
    barrier = threading.Barrier(16)

    def issue(i: int):
        barrier.wait()
        return chain.issue("100.00", key=f"issue-{i}")

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(issue, range(16)))
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 10, [r.status_code for r in responses]
    for response in responses:
        if response.status_code != 201:
            problem(response, 409, "facility_limit_exceeded")
    facility = chain.facility()
    assert facility["outstanding"] == money("1000.00") and facility["available"] == money("0.00")


@pytest.mark.parametrize("cases", [False, True], ids=["same", "case-variants"])
def test_concurrent_approvals_of_one_invoice_pay_once(app, http, cases):
    """Applications filed before invoices were checked at filing (or upper-cased) may cite the
    same invoice, in any case; approving them all at once disburses exactly one, the rest are
    refused (the lock is on the canonical number, so `INV-RACE-0` and `inv-race-0` queue)."""
    racers = 8
    chain = build_chain(app, http, tiers=(1, 1, 1))
    ids = []
    for i in range(racers):
        filed = chain.pc.post(f"{BASE}/financing-applications", {
            "acting_member_id": chain.t1.id, "kind": "factoring", "amount": money("1000.00"),
            "invoice_numbers": [f"INV-RACE-{i}"], "counterparty_member_id": chain.core.id})
        assert filed.status_code == 201, filed.text
        ids.append(filed.json()["id"])
    variants = ["INV-RACE-0", "inv-race-0", "Inv-Race-0", "iNV-rACE-0"]
    with app.state.database.transaction() as session:  # as filed before the check existed
        for i, app_id in enumerate(ids):
            number = variants[i % len(variants)] if cases else "INV-RACE-0"
            session.execute(update(FinancingApplication).where(FinancingApplication.id == app_id)
                            .values(references=[number]))
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    due = (chain.today() + timedelta(days=30)).isoformat()
    chain.ops.token  # noqa: B018 - fetch the token once, before the race
    barrier = threading.Barrier(racers)

    def approve(app_id: str):
        barrier.wait()
        return chain.ops.post(f"{OPS}/financing-applications/{app_id}/approve", {
            "tenant_id": chain.tenant_id, "amount": money("1000.00"), "annual_rate": "0.06",
            "due_date": due}, idempotency_key=f"approve-{app_id}")

    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(approve, ids))
    assert [r.status_code for r in responses].count(200) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 200:
            problem(response, 409, "invoice_already_financed")
    assert balance(app, chain.tenant_id, chain.t1.account_id) - before == 100_000
    assert ledger_audit(app, chain.tenant_id) == []
