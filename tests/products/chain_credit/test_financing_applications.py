"""Receivables factoring and order financing: apply, operations approve (the ledger disburses),
repayment on the due date (test clock), overdue raises a risk event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from gateway.jobs import run_until_idle
from products.chain_credit.models import CertificateInvoice, FinancingApplication
from tests.products.chain_credit.helpers import (
    BASE,
    OPS,
    advance,
    balance,
    build_chain,
    deposit,
    ledger_audit,
    money,
)
from tests.tools.api import problem


def _apply(chain, member, kind="factoring", amount="50000.00", **extra):
    body = {"acting_member_id": member.id, "kind": kind, "amount": money(amount)}
    if kind == "factoring":
        body["invoice_numbers"] = ["INV-88001", "INV-88002"]
    else:
        body["purchase_order_numbers"] = ["PO-2026-0042"]
    body.update(extra)
    return chain.pc.post(f"{BASE}/financing-applications", body)


def _approve(chain, app_id, amount="50000.00", rate="0.072", days=60, key=None):
    return chain.ops.post(f"{OPS}/financing-applications/{app_id}/approve", {
        "tenant_id": chain.tenant_id, "amount": money(amount), "annual_rate": rate,
        "due_date": (chain.today() + timedelta(days=days)).isoformat()}, idempotency_key=key)


def test_factoring_disbursed_and_repaid(app, http):
    chain = build_chain(app, http)
    applicant = chain.t1
    created = _apply(chain, applicant, counterparty_member_id=chain.core.id)
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["status"] == "submitted" and application["invoice_numbers"] == ["INV-88001", "INV-88002"]
    assert application["purchase_order_numbers"] is None

    before = balance(app, chain.tenant_id, applicant.account_id)
    problem(chain.pc.post(f"{OPS}/financing-applications/{application['id']}/approve", {
        "tenant_id": chain.tenant_id, "amount": money("1.00"), "annual_rate": "0.07",
        "due_date": (chain.today() + timedelta(days=5)).isoformat()}), 403)
    problem(_approve(chain, application["id"], amount="50000.01"), 422, "approval_exceeds_request")
    problem(_approve(chain, application["id"], days=0), 422, "invalid_due_date")
    problem(_approve(chain, application["id"], rate="7.2"), 422, "validation_failed")
    assert balance(app, chain.tenant_id, applicant.account_id) == before
    approved = _approve(chain, application["id"], amount="40000.00", key="approve-1")
    assert approved.status_code == 200, approved.text
    out = approved.json()
    # 40000.00 x 0.072 x 60 / 360 = 480.00
    assert out["status"] == "disbursed" and out["interest"] == money("480.00")
    assert out["repayment_amount"] == money("40480.00") and out["approved_amount"] == money("40000.00")
    again = _approve(chain, application["id"], amount="40000.00", key="approve-1")
    assert again.headers.get("idempotent-replayed") == "true"
    assert balance(app, chain.tenant_id, applicant.account_id) - before == 4_000_000
    problem(_approve(chain, application["id"]), 409, "invalid_state")

    deposit(app, chain.tenant_id, applicant.account_id, 48_000)  # interest money
    advance(app, chain.tenant_id, 59)
    run_until_idle(app.state.database)
    assert chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()["status"] == "disbursed"
    advance(app, chain.tenant_id, 1)
    run_until_idle(app.state.database)
    repaid = chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()
    assert repaid["status"] == "repaid" and repaid["repaid_at"]
    assert balance(app, chain.tenant_id, applicant.account_id) == before
    assert ledger_audit(app, chain.tenant_id) == []


def test_order_financing_overdue_raises_a_risk_event(app, http):
    chain = build_chain(app, http)
    application = _apply(chain, chain.t2, kind="order_financing", amount="10000.00").json()
    assert application["purchase_order_numbers"] == ["PO-2026-0042"]
    assert _approve(chain, application["id"], amount="10000.00", days=30).status_code == 200
    advance(app, chain.tenant_id, 30)
    run_until_idle(app.state.database)
    overdue = chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()
    assert overdue["status"] == "overdue"
    risks = chain.pc.get(f"{BASE}/risk-events").json()["data"]
    assert [(r["type"], r["member_id"], r["related_resource_id"], r["froze_facility"]) for r in risks] == [
        ("overdue", chain.t2.id, application["id"], False)]
    run_until_idle(app.state.database)
    assert len(chain.pc.get(f"{BASE}/risk-events").json()["data"]) == 1
    # Paid late once the money arrives.
    deposit(app, chain.tenant_id, chain.t2.account_id, 1_000_000)
    run_until_idle(app.state.database)
    assert chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()["status"] == "repaid"


def test_application_rules(app, http):
    chain = build_chain(app, http)
    problem(_apply(chain, chain.core), 422, "invalid_applicant")
    problem(_apply(chain, chain.t1, kind="factoring", invoice_numbers=None), 422, "validation_failed")
    problem(_apply(chain, chain.t1, kind="order_financing", invoice_numbers=["INV-1"]), 422,
            "validation_failed")
    problem(_apply(chain, chain.t1, kind="leasing"), 422, "validation_failed")
    problem(_apply(chain, chain.t1, amount="0.00"), 422, "validation_failed")
    other = build_chain(app, http, pc=chain.pc, ops=chain.ops, circle="GC-TEST-02")
    problem(_apply(chain, chain.t1, counterparty_member_id=other.core.id), 422, "member_not_in_chain")
    assert chain.pc.get(f"{BASE}/financing-applications").json()["data"] == []

    application = _apply(chain, chain.t1).json()
    declined = chain.ops.post(f"{OPS}/financing-applications/{application['id']}/decline",
                              {"tenant_id": chain.tenant_id, "reason": "发票已质押"})
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    problem(_approve(chain, application["id"]), 409, "invalid_state")
    problem(_approve(chain, "cfapp_missing"), 404, "financing_application_not_found")

    # A frozen chain gets no new financing.
    second = _apply(chain, chain.t1).json()
    chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                   {"tenant_id": chain.tenant_id, "reason": "涉诉"})
    problem(_approve(chain, second["id"]), 409, "credit_facility_frozen")
    listed = chain.pc.get(f"{BASE}/financing-applications?kind=factoring&status=submitted").json()["data"]
    assert [a["id"] for a in listed] == [second["id"]]
    ops_list = chain.ops.get(f"{OPS}/financing-applications?tenant_id={chain.tenant_id}").json()["data"]
    assert len(ops_list) == 2


def _factor(chain, member, *invoices, amount="100000.00"):
    return _apply(chain, member, amount=amount, invoice_numbers=list(invoices),
                  counterparty_member_id=chain.core.id)


def test_an_invoice_finances_once(app, http):
    chain = build_chain(app, http, tiers=(2, 1, 1))
    t1, t1b = chain.tiers[0]
    before = balance(app, chain.tenant_id, t1.account_id)
    # An invoice backing a certificate cannot be factored as well, nor listed beside others.
    assert chain.issue("100000.00", invoice_numbers=["INV-7777"]).status_code == 201
    body = problem(_factor(chain, t1, "INV-7777"), 409, "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-7777"] and "INV-7777" in body["detail"]
    body = problem(_factor(chain, t1, "INV-NEW-1", "INV-7777"), 409, "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-7777"]
    # A rejected certificate releases its invoices.
    rejected = chain.issue("100.00", invoice_numbers=["INV-REJ"]).json()
    assert chain.act(rejected["id"], "reject", t1.id).status_code == 200
    assert _factor(chain, t1, "INV-REJ", amount="100.00").status_code == 201

    # One application per invoice, whoever files it, until it is declined.
    first = _factor(chain, t1, "INV-8888")
    assert first.status_code == 201, first.text
    problem(_factor(chain, t1, "INV-8888"), 409, "invoice_already_financed")
    problem(_factor(chain, t1b, "INV-8889", "INV-8888"), 409, "invoice_already_financed")
    assert _approve(chain, first.json()["id"], amount="100000.00").status_code == 200
    problem(_factor(chain, t1b, "INV-8888"), 409, "invoice_already_financed")
    # ...and a factored invoice cannot back a certificate afterwards.
    problem(chain.issue("100000.00", invoice_numbers=["INV-8888"]), 409, "invoice_already_financed")
    assert balance(app, chain.tenant_id, t1.account_id) - before == 10_000_000

    declined = _factor(chain, t1, "INV-9999").json()
    chain.ops.post(f"{OPS}/financing-applications/{declined['id']}/decline",
                   {"tenant_id": chain.tenant_id, "reason": "发票存疑"})
    assert _factor(chain, t1b, "INV-9999").status_code == 201

    # Purchase orders likewise, for order financing (their own numbering: an invoice of the same
    # number is another document).
    order = _apply(chain, chain.t2, kind="order_financing", purchase_order_numbers=["PO-5"])
    assert order.status_code == 201, order.text
    body = problem(_apply(chain, chain.t2, kind="order_financing", purchase_order_numbers=["PO-5"]),
                   409, "purchase_order_already_financed")
    assert body["purchase_order_numbers"] == ["PO-5"]
    assert _factor(chain, t1, "PO-5").status_code == 201
    assert ledger_audit(app, chain.tenant_id) == []


def test_approval_checks_the_invoices_again(app, http):
    """A certificate issued against an invoice after a factoring application was filed (and
    before it was approved) wins: the application is refused at approval, nothing is paid."""
    chain = build_chain(app, http)
    application = _factor(chain, chain.t1, "INV-LATE").json()
    assert chain.issue("100000.00", invoice_numbers=["INV-LATE"]).status_code == 201
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    body = problem(_approve(chain, application["id"], amount="100000.00"), 409,
                   "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-LATE"]
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before
    assert chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()["status"] == "submitted"


def test_an_invoice_is_one_reference_whatever_its_case(app, http):
    """`INV-C2`, `inv-c2` and ` Inv-C2 ` are one invoice: stored upper-case and trimmed, and it
    finances once (applications, certificates, and each against the other)."""
    chain = build_chain(app, http, tiers=(2, 1, 1))
    t1, t1b = chain.tiers[0]
    before = balance(app, chain.tenant_id, t1.account_id)
    first = _factor(chain, t1, "INV-C2")
    assert first.status_code == 201, first.text
    problem(_factor(chain, t1b, "inv-c2"), 409, "invoice_already_financed")
    problem(_factor(chain, chain.t2, "Inv-C2"), 409, "invoice_already_financed")
    body = problem(_factor(chain, t1b, " inv-C2 "), 409, "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-C2"]
    problem(_factor(chain, t1b, "INV-OTHER", "iNV-c2"), 409, "invoice_already_financed")
    assert _approve(chain, first.json()["id"], amount="100000.00").status_code == 200
    assert balance(app, chain.tenant_id, t1.account_id) - before == 10_000_000
    # A factored invoice backs no certificate, in any case.
    problem(chain.issue("100.00", invoice_numbers=["inv-C2"]), 409, "invoice_already_financed")

    # A certificate's invoice cannot be factored in another case...
    cert = chain.issue("100.00", invoice_numbers=["inv-cert-1"])
    assert cert.status_code == 201, cert.text
    assert cert.json()["invoice_numbers"] == ["INV-CERT-1"]
    body = problem(_factor(chain, t1, "Inv-Cert-1"), 409, "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-CERT-1"]
    # ...nor back a second certificate of the issuer ("an invoice backs one certificate").
    problem(chain.issue("100.00", invoice_numbers=["INV-CERT-1"]), 409, "invoice_already_used")
    # One request listing an invoice twice, in two cases, lists it twice.
    problem(chain.issue("100.00", invoice_numbers=["INV-DUP", "inv-dup"]), 422)

    # Purchase orders likewise.
    order = _apply(chain, chain.t2, kind="order_financing", purchase_order_numbers=["PO-C2"])
    assert order.status_code == 201, order.text
    body = problem(_apply(chain, t1, kind="order_financing", purchase_order_numbers=["po-c2"]),
                   409, "purchase_order_already_financed")
    assert body["purchase_order_numbers"] == ["PO-C2"]
    problem(_apply(chain, t1, kind="order_financing", purchase_order_numbers=[" Po-C2"]),
            409, "purchase_order_already_financed")
    stored = _apply(chain, t1, kind="order_financing", purchase_order_numbers=[" po-new-1 "])
    assert stored.status_code == 201, stored.text
    assert stored.json()["purchase_order_numbers"] == ["PO-NEW-1"]
    assert ledger_audit(app, chain.tenant_id) == []


def test_references_stored_before_are_compared_without_case(app, http):
    """Applications and certificates stored before numbers were upper-cased (`inv-old`) still
    hold their invoices and purchase orders against `INV-OLD`."""
    chain = build_chain(app, http, tiers=(2, 1, 1))
    t1, t1b = chain.tiers[0]
    invoice = _factor(chain, t1, "INV-OLD-1").json()
    order = _apply(chain, t1, kind="order_financing", purchase_order_numbers=["PO-OLD-1"]).json()
    cert = chain.issue("100.00", invoice_numbers=["INV-OLD-2"]).json()
    with app.state.database.transaction() as session:  # as stored before
        session.execute(update(FinancingApplication).where(FinancingApplication.id == invoice["id"])
                        .values(references=["inv-old-1"]))
        session.execute(update(FinancingApplication).where(FinancingApplication.id == order["id"])
                        .values(references=["po-old-1"]))
        session.execute(update(CertificateInvoice).where(CertificateInvoice.certificate_id == cert["id"])
                        .values(invoice_number="inv-old-2"))
    body = problem(_factor(chain, t1b, "INV-OLD-1"), 409, "invoice_already_financed")
    assert body["invoice_numbers"] == ["INV-OLD-1"]
    problem(_apply(chain, t1b, kind="order_financing", purchase_order_numbers=["PO-OLD-1"]),
            409, "purchase_order_already_financed")
    problem(_factor(chain, t1b, "INV-OLD-2"), 409, "invoice_already_financed")
    problem(chain.issue("100.00", invoice_numbers=["INV-OLD-2"]), 409, "invoice_already_used")
    # Once factored, it backs no certificate either.
    assert _approve(chain, invoice["id"], amount="100000.00").status_code == 200
    problem(chain.issue("100.00", invoice_numbers=["INV-OLD-1"]), 409, "invoice_already_financed")


@pytest.mark.parametrize("status", ["suspended", "offboarded"])
def test_no_new_credit_for_a_partner_the_gateway_refuses(app, http, status):
    """The operations API refuses, as the console does, to grant, unfreeze or disburse in the
    tenant of a suspended or offboarded partner; what lowers the bank's exposure stays open."""
    from gateway.tenancy import Partner, get_tenant

    chain = build_chain(app, http)
    application = _apply(chain, chain.t1, counterparty_member_id=chain.core.id).json()
    other = _apply(chain, chain.t1, invoice_numbers=["INV-77001"],
                   counterparty_member_id=chain.core.id).json()
    with app.state.database.transaction() as s:
        s.get(Partner, get_tenant(s, chain.tenant_id).partner_id).status = status
    before = balance(app, chain.tenant_id, chain.t1.account_id)
    body = problem(_approve(chain, application["id"]), 409, "partner_not_active")
    assert body["partner_status"] == status and status in body["detail"]
    assert balance(app, chain.tenant_id, chain.t1.account_id) == before
    frozen = chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                            {"tenant_id": chain.tenant_id, "reason": "partner " + status})
    assert frozen.status_code == 200, frozen.text  # lowering exposure stays open
    problem(chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/unfreeze",
                           {"tenant_id": chain.tenant_id, "reason": "x"}), 409,
            "partner_not_active")
    declined = chain.ops.post(f"{OPS}/financing-applications/{other['id']}/decline",
                              {"tenant_id": chain.tenant_id, "reason": "partner " + status})
    assert declined.status_code == 200, declined.text
