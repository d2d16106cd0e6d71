"""Two requests registering the same chain member, or granting one core enterprise a facility,
at once: the loser gets the 409 a later request gets (naming the winner where that one does),
not a bare `concurrent_update`, and nothing of it stays (`tests.tools.concurrency.race_second`).
Two issuances backed by one invoice are serialized by the facility's row lock instead."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from products.chain_credit import service
from products.chain_credit.models import CertificateInvoice, ChainMember, CreditFacility
from tests.products.chain_credit.helpers import build_chain, new_uscc, open_account, register, today
from tests.tools.concurrency import race_second


def _count(app, model, *where) -> int:
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_the_same_member_registered_twice_at_once_is_a_duplicate(app, partner):
    tenant_id, uscc = partner.tenant_id, new_uscc()
    account = open_account(app, tenant_id, "华东核心装备集团有限公司", uscc)
    raced = race_second(app.state.database, lambda s: service.create_member(
        s, tenant_id, name="华东核心装备集团有限公司", uscc=uscc, settlement_account_id=account,
        role="core_enterprise", upstream_member_id=None, tier=None, actor="test"))
    assert raced.code == "chain_member_exists"
    assert _count(app, ChainMember, ChainMember.tenant_id == tenant_id,
                  ChainMember.uscc == uscc) == 1


def test_two_facilities_granted_to_one_core_enterprise_at_once(app, partner):
    core = register(app, partner, name="华南核心制造集团有限公司", role="core_enterprise",
                    upstream=None)
    tenant_id = partner.tenant_id
    expires_on = today(app, tenant_id) + timedelta(days=400)
    # In two guarantee circles: a circle's lock serializes only the grants within it.
    circles = iter(["GC-RACE-A", "GC-RACE-B"])
    raced = race_second(app.state.database, lambda s: service.grant_facility(
        s, tenant_id=tenant_id, core_enterprise_id=core.id, limit_fen=1_000_000_00,
        expires_on=expires_on, guarantee_circle=next(circles), discount_rate="0.036",
        actor="test"))
    assert raced.code == "credit_facility_exists"
    assert raced.problem is not None and raced.problem.extra == {"facility_id": raced.first.id}
    assert _count(app, CreditFacility, CreditFacility.tenant_id == tenant_id) == 1
    assert _count(app, CreditFacility, CreditFacility.guarantee_circle == "GC-RACE-B") == 0


def test_two_certificates_backed_by_one_invoice_at_once(app, http):
    chain = build_chain(app, http, tiers=(1,))
    tenant_id, maturity = chain.tenant_id, chain.today() + timedelta(days=90)
    # The issuer's facility row lock (taken before the invoices are looked up) makes the second
    # wait for the first's commit, then find its invoice: no savepoint needed there.
    raced = race_second(app.state.database, lambda s: service.issue_certificate(
        s, tenant_id, acting_member_id=chain.core.id, to_member_id=chain.t1.id,
        amount_fen=1000_00, maturity_date=maturity, invoice_numbers=["INV-RACE-1"],
        contract_number="PC-2026-77"))
    assert raced.code == "invoice_already_used"
    assert _count(app, CertificateInvoice, CertificateInvoice.tenant_id == tenant_id) == 1
    assert chain.facility()["outstanding"]["amount"] == "1000.00"
