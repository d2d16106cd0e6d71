"""What new credit relies on is checked whenever the bank commits money (QA audit 2):

- accepting a financing quote checks again everything the quote relied on (facility active,
  not frozen, not expired; certificate still held; partner still in service), with the codes
  quoting gives, and moves no money when refused; a lapsed quote is `financing_quote_expired`;
- a quote is a price: accepted within its validity, even after midnight, it pays exactly the
  quoted discount and net amount;
- factoring and order financing count against the core enterprise's facility until repaid;
- a certificate matures within the term of the facility it is issued under.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from gateway.clock import start_of_business_day
from gateway.errors import Problem
from gateway.jobs import run_until_idle
from gateway.tenancy import Partner, advance_clock_to, clock_for, get_tenant
from products.chain_credit import service
from products.chain_credit.models import CreditFacility
from tests.products.chain_credit.helpers import (
    BASE,
    OPS,
    advance,
    balance,
    build_chain,
    deposit,
    ledger_audit,
    money,
    register,
)
from tests.tools.api import problem


def _quote(chain, cert_id, member):
    return chain.pc.post(f"{BASE}/payables-certificates/{cert_id}/financing-quotes",
                         {"acting_member_id": member.id})


def _accept(chain, quote_id, member):
    return chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{quote_id}/accept",
                         {"acting_member_id": member.id})


def _to_2355_shanghai(chain) -> None:
    """Move the tenant's test clock to 23:55 Asia/Shanghai (today's, or tomorrow's if past it)."""
    with chain.app.state.database.transaction() as session:
        clock = clock_for(session, chain.tenant_id)
        target = start_of_business_day(clock.today()) + timedelta(hours=23, minutes=55)
        if target <= clock.now():
            target += timedelta(days=1)
        advance_clock_to(session, chain.tenant_id, target)


def _minutes(chain, minutes: float) -> None:
    advance(chain.app, chain.tenant_id, minutes / 1440)


def _freeze_by_operations(chain):
    frozen = chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                            {"tenant_id": chain.tenant_id, "reason": "lawsuit against core"})
    assert frozen.status_code == 200, frozen.text


def _freeze_by_risk_event(chain):
    recorded = chain.ops.post(f"{OPS}/risk-events", {
        "tenant_id": chain.tenant_id, "core_enterprise_id": chain.core.id, "type": "lawsuit",
        "description": "涉诉"})
    assert recorded.status_code == 201 and recorded.json()["froze_facility"], recorded.text


# --- 1. accepting re-checks the facility -----------------------------------------------------


@pytest.mark.parametrize("freeze", [_freeze_by_operations, _freeze_by_risk_event],
                         ids=["operations", "risk_event"])
def test_a_quote_made_before_a_freeze_is_refused_after_it(app, http, freeze):
    chain = build_chain(app, http)
    cert = chain.issue_accepted("2000.00", days=30)
    other = chain.issue_accepted("500.00", days=30)
    q = _quote(chain, cert["id"], chain.t1)
    assert q.status_code == 201, q.text
    before = balance(app, chain.tenant_id, chain.t1.account_id)

    freeze(chain)
    problem(_accept(chain, q.json()["id"], chain.t1), 409, "credit_facility_frozen")
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before
    assert chain.get(cert["id"])["status"] == "financing"
    assert chain.pc.get(f"{BASE}/payables-certificates/financing-quotes/{q.json()['id']}"
                        ).json()["status"] == "open"
    # Quoting another certificate is refused with the same code.
    problem(_quote(chain, other["id"], chain.t1), 409, "credit_facility_frozen")

    # Once the freeze is lifted, the quote (still valid) is the bank's price again.
    lifted = chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/unfreeze",
                            {"tenant_id": chain.tenant_id, "reason": "resolved"})
    assert lifted.status_code == 200, lifted.text
    taken = _accept(chain, q.json()["id"], chain.t1)
    assert taken.status_code == 200, taken.text
    assert balance(app, chain.tenant_id, chain.t1.account_id) - before == 2000_00 - 6_00
    assert ledger_audit(app, chain.tenant_id) == []


def test_a_quote_is_refused_once_another_certificate_goes_overdue(app, http):
    """The automatic freeze: another certificate of the core enterprise goes unpaid at midnight."""
    chain = build_chain(app, http, core_balance_fen=0)
    _to_2355_shanghai(chain)
    chain.issue_accepted("100.00", days=1)
    cert = chain.issue_accepted("2000.00", days=30)
    q = _quote(chain, cert["id"], chain.t1).json()
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    _minutes(chain, 10)
    run_until_idle(app.state.database)  # the first matures unpaid: overdue, facility frozen
    assert chain.facility()["status"] == "frozen"
    problem(_accept(chain, q["id"], chain.t1), 409, "credit_facility_frozen")
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before


def test_a_quote_is_refused_once_the_facility_has_expired(app, http):
    """Certificates maturing after their facility's expiry (issued before that was refused) can
    be quoted on the expiry date and accepted after midnight: the facility has expired by then."""
    chain = build_chain(app, http)
    _to_2355_shanghai(chain)
    cert = chain.issue_accepted("2000.00", days=30)
    q = _quote(chain, cert["id"], chain.t1).json()
    with app.state.database.transaction() as session:
        session.execute(update(CreditFacility).where(CreditFacility.id == chain.facility_id)
                        .values(expires_on=chain.today()))
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    _minutes(chain, 10)
    problem(_accept(chain, q["id"], chain.t1), 409, "credit_facility_expired")
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before
    # Quoting says the same.
    _minutes(chain, 6)
    run_until_idle(app.state.database)
    problem(_quote(chain, cert["id"], chain.t1), 409, "credit_facility_expired")


def test_a_quote_is_refused_once_the_partner_is_out_of_service(app, http):
    """The partner is suspended between quote and acceptance. Over HTTP its token is refused
    first (401); the rule itself is checked at the service, as a request already past the
    token check would meet it."""
    chain = build_chain(app, http)
    cert = chain.issue_accepted("2000.00", days=30)
    q = _quote(chain, cert["id"], chain.t1).json()
    other = chain.issue_accepted("500.00", days=30)
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    with app.state.database.transaction() as session:
        session.get(Partner, get_tenant(session, chain.tenant_id).partner_id).status = "suspended"
    assert _accept(chain, q["id"], chain.t1).status_code == 401
    with app.state.database.transaction() as session:
        with pytest.raises(Problem) as refused:
            service.accept_financing_quote(session, chain.tenant_id, q["id"],
                                           acting_member_id=chain.t1.id)
        assert refused.value.code == "partner_not_active"
        with pytest.raises(Problem) as quoting:
            service.request_financing_quote(session, chain.tenant_id, other["id"],
                                            acting_member_id=chain.t1.id)
        assert quoting.value.code == "partner_not_active"
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before


# --- 4. a quote is a price ---------------------------------------------------------------


def test_a_quote_accepted_after_midnight_pays_exactly_what_it_quoted(app, http):
    chain = build_chain(app, http)
    _to_2355_shanghai(chain)
    cert = chain.issue_accepted("100000.00", days=10)
    q = _quote(chain, cert["id"], chain.t1).json()
    # 100000.00 x 0.036 x 10 / 360 = 100.00
    assert q["days"] == 10 and q["discount"] == money("100.00") and q["net_amount"] == money("99900.00")
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    _minutes(chain, 10)
    assert datetime.fromisoformat(q["valid_until"].replace("Z", "+00:00")) > \
        start_of_business_day(chain.today())  # valid across midnight
    taken = _accept(chain, q["id"], chain.t1)
    assert taken.status_code == 200, taken.text
    out = taken.json()["quote"]
    assert (out["days"], out["discount"], out["net_amount"]) == (10, money("100.00"), money("99900.00"))
    assert balance(app, chain.tenant_id, chain.t1.account_id) - before == 99900_00
    assert ledger_audit(app, chain.tenant_id) == []


# --- 5. a lapsed quote --------------------------------------------------------------------


def test_a_lapsed_quote_is_financing_quote_expired_after_the_job_too(app, http):
    chain = build_chain(app, http)
    cert = chain.issue_accepted("2000.00", days=30)
    q = _quote(chain, cert["id"], chain.t1).json()
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    _minutes(chain, 15.02)
    run_until_idle(app.state.database)
    assert chain.pc.get(f"{BASE}/payables-certificates/financing-quotes/{q['id']}"
                        ).json()["status"] == "expired"
    body = problem(_accept(chain, q["id"], chain.t1), 409, "financing_quote_expired")
    assert q["valid_until"] in body["detail"]
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before
    # A declined quote stays a state conflict.
    q2 = _quote(chain, cert["id"], chain.t1).json()
    chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q2['id']}/decline",
                  {"acting_member_id": chain.t1.id})
    problem(_accept(chain, q2["id"], chain.t1), 409, "invalid_state")


def test_refusal_codes_are_in_the_openapi_document(app, http):
    paths = http.get("/openapi.json").json()["paths"]
    accept = paths[f"{BASE}/payables-certificates/financing-quotes/{{quote_id}}/accept"]["post"]
    for code in ("financing_quote_expired", "credit_facility_frozen", "credit_facility_expired",
                 "partner_not_active", "certificate_state_conflict", "not_certificate_holder"):
        assert f"`{code}`" in accept["description"], code
    assert "409" in accept["responses"]
    quote = paths[f"{BASE}/payables-certificates/{{certificate_id}}/financing-quotes"]["post"]
    assert "`credit_facility_frozen`" in quote["description"]
    approve = paths[f"{OPS}/financing-applications/{{application_id}}/approve"]["post"]
    for code in ("facility_limit_exceeded", "credit_facility_expired", "no_credit_facility"):
        assert f"`{code}`" in approve["description"], code
    issue = paths[f"{BASE}/payables-certificates"]["post"]
    assert "`invalid_maturity_date`" in issue["description"]


# --- 2. factoring and order financing use the facility ------------------------------------


def _apply(chain, member, kind, amount, ref):
    body = {"acting_member_id": member.id, "kind": kind, "amount": money(amount)}
    body["invoice_numbers" if kind == "factoring" else "purchase_order_numbers"] = [ref]
    if kind == "factoring":
        body["counterparty_member_id"] = chain.core.id
    created = chain.pc.post(f"{BASE}/financing-applications", body)
    assert created.status_code == 201, created.text
    return created.json()


def _approve(chain, app_id, amount, days=30):
    return chain.ops.post(f"{OPS}/financing-applications/{app_id}/approve", {
        "tenant_id": chain.tenant_id, "amount": money(amount), "annual_rate": "0.05",
        "due_date": (chain.today() + timedelta(days=days)).isoformat()})


def _utilisation(chain):
    return chain.pc.get(f"{BASE}/facilities/{chain.facility_id}/utilisation").json()


@pytest.mark.parametrize("kind", ["factoring", "order_financing"])
def test_financing_applications_use_the_facility_until_repaid(app, http, kind):
    chain = build_chain(app, http)  # limit 1,000,000.00
    applicant = chain.t2
    before = balance(app, chain.tenant_id, applicant.account_id)
    big = _apply(chain, applicant, kind, "5000000.00", "REF-BIG-1")
    body = problem(_approve(chain, big["id"], "5000000.00"), 409, "facility_limit_exceeded")
    assert body["available"] == money("1000000.00")
    assert balance(app, chain.tenant_id, applicant.account_id) == before
    assert chain.facility()["outstanding"] == money("0.00")

    chain.issue_accepted("600000.00", days=60)
    app1 = _apply(chain, applicant, kind, "500000.00", "REF-1")
    body = problem(_approve(chain, app1["id"], "500000.00"), 409, "facility_limit_exceeded")
    assert body["available"] == money("400000.00")
    approved = _approve(chain, app1["id"], "400000.00")
    assert approved.status_code == 200, approved.text
    assert balance(app, chain.tenant_id, applicant.account_id) - before == 400000_00
    facility = chain.facility()
    assert facility["outstanding"] == money("1000000.00") and facility["available"] == money("0.00")
    used = _utilisation(chain)
    assert used["outstanding"] == money("1000000.00")
    assert used["financing_applications"] == money("400000.00")
    assert sum(int(t["amount"]["amount"].replace(".", "")) for t in used["by_tier"]) == 600000_00
    problem(chain.issue("0.01"), 409, "facility_limit_exceeded")
    problem(_approve(chain, big["id"], "0.01"), 409, "facility_limit_exceeded")

    # Repaid on the due date (30 days): the limit comes back.
    deposit(app, chain.tenant_id, applicant.account_id, 2_000_00)  # interest 1666.67
    advance(app, chain.tenant_id, 30)
    run_until_idle(app.state.database)
    repaid = chain.pc.get(f"{BASE}/financing-applications/{app1['id']}").json()
    assert repaid["status"] == "repaid", repaid
    facility = chain.facility()
    assert facility["outstanding"] == money("600000.00") and facility["available"] == money("400000.00")
    assert _utilisation(chain)["financing_applications"] == money("0.00")
    assert ledger_audit(app, chain.tenant_id) == []


def test_an_overdue_application_keeps_using_the_facility(app, http):
    chain = build_chain(app, http)
    application = _apply(chain, chain.t2, "order_financing", "10000.00", "PO-OVERDUE-1")
    assert _approve(chain, application["id"], "10000.00", days=2).status_code == 200
    advance(app, chain.tenant_id, 2)
    run_until_idle(app.state.database)
    assert chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()["status"] == "overdue"
    assert chain.facility()["outstanding"] == money("10000.00")
    deposit(app, chain.tenant_id, chain.t2.account_id, 10_100_00)
    run_until_idle(app.state.database)
    assert chain.facility()["outstanding"] == money("0.00")


def test_approval_needs_an_unexpired_facility(app, http):
    chain = build_chain(app, http, expires_in_days=5)
    application = _apply(chain, chain.t1, "factoring", "1000.00", "INV-EXP-1")
    advance(app, chain.tenant_id, 6)
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    problem(_approve(chain, application["id"], "1000.00"), 409, "credit_facility_expired")
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before

    # A chain whose core enterprise has no facility at all.
    core = register(app, chain.pc, name="无授信核心企业有限公司", role="core_enterprise", upstream=None)
    supplier = register(app, chain.pc, name="无授信供应商有限公司", role="supplier", upstream=core.id)
    created = chain.pc.post(f"{BASE}/financing-applications", {
        "acting_member_id": supplier.id, "kind": "order_financing", "amount": money("1000.00"),
        "purchase_order_numbers": ["PO-NOFAC-1"]})
    assert created.status_code == 201, created.text
    problem(_approve(chain, created.json()["id"], "1000.00"), 409, "no_credit_facility")
    assert balance(app, chain.tenant_id, supplier.account_id) == 0


# --- 3. maturity within the facility's term ----------------------------------------------


def test_a_certificate_matures_within_its_facilitys_term(app, http):
    chain = build_chain(app, http, expires_in_days=100)
    expiry = chain.facility()["expires_on"]
    body = problem(chain.issue("5000.00", days=101), 422, "invalid_maturity_date")
    assert [e["field"] for e in body["errors"]] == ["body.maturity_date"]
    assert expiry in body["detail"]
    assert chain.facility()["outstanding"] == money("0.00")
    issued = chain.issue("5000.00", days=100)
    assert issued.status_code == 201, issued.text
    assert issued.json()["maturity_date"] == expiry
