"""Chain credit's jobs serve each tenant on its own: a tenant whose run fails is logged with its
id and left to the next run, and the tenants after it are served all the same."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from products.chain_credit import jobs
from products.chain_credit.models import (
    CreditFacility,
    FinancingApplication,
    FinancingQuote,
    PayablesCertificate,
)
from tests.products.chain_credit.helpers import BASE, OPS, advance, build_chain, deposit, money
from tests.tools.jobs import assert_failure_logged, break_clock, statuses


def _with_due_work(app: Any, http: Any) -> dict[str, str]:
    """A chain with work for every job once its clock passes 400 days: a certificate maturing
    in 30 days, an open financing quote, a facility expiring in 400 days and an order
    financing repaid in 30 days (with the interest on the applicant's account)."""
    chain = build_chain(app, http, tiers=(1,))
    cert = chain.issue_accepted("1000.00", days=30)
    quoted = chain.issue_accepted("2000.00", days=90)
    quote = chain.pc.post(f"{BASE}/payables-certificates/{quoted['id']}/financing-quotes",
                          {"acting_member_id": chain.t1.id})
    assert quote.status_code == 201, quote.text
    applied = chain.pc.post(f"{BASE}/financing-applications", {
        "acting_member_id": chain.t1.id, "kind": "order_financing", "amount": money("10000.00"),
        "purchase_order_numbers": ["PO-2026-0042"]})
    assert applied.status_code == 201, applied.text
    approved = chain.ops.post(f"{OPS}/financing-applications/{applied.json()['id']}/approve", {
        "tenant_id": chain.tenant_id, "amount": money("10000.00"), "annual_rate": "0.072",
        "due_date": (chain.today() + timedelta(days=30)).isoformat()})
    assert approved.status_code == 200, approved.text
    deposit(app, chain.tenant_id, chain.t1.account_id, 6_000)  # the interest
    return {"tenant": chain.tenant_id, "certificate": cert["id"], "quote": quote.json()["id"],
            "facility": chain.facility_id, "application": applied.json()["id"]}


JOBS = {
    "maturity": (jobs.mature_certificates, PayablesCertificate, "certificate", "accepted",
                 "settled"),
    "quotes": (jobs.expire_quotes, FinancingQuote, "quote", "open", "expired"),
    "facilities": (jobs.expire_facilities, CreditFacility, "facility", "active", "expired"),
    "repayments": (jobs.collect_repayments, FinancingApplication, "application", "disbursed",
                   "repaid"),
}


@pytest.mark.tolerant_jobs
@pytest.mark.parametrize("name", sorted(JOBS))
def test_one_tenant_failing_a_job_does_not_stop_the_others(app, http, caplog, name):
    job, model, key, before, after = JOBS[name]
    stuck, served = sorted((_with_due_work(app, http) for _ in range(2)),
                           key=lambda work: work["tenant"])  # the failing one first in order
    for work in (stuck, served):
        advance(app, work["tenant"], 401)
    break_clock(app.state.database, stuck["tenant"])

    with caplog.at_level(logging.ERROR):
        assert job(app.state.database) >= 1
    assert statuses(app.state.database, model, {
        work["tenant"]: work[key] for work in (stuck, served)}) == {stuck["tenant"]: before,
                                                                  served["tenant"]: after}
    assert_failure_logged(caplog, stuck["tenant"])
