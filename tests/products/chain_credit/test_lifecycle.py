"""The whole life of a payables certificate through HTTP: issue, accept, split, transfer,
finance, mature; lineage and utilisation; and every refused transition with its problem."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from gateway.events import Event
from gateway.jobs import run_until_idle
from products.chain_credit import ledger
from tests.products.chain_credit.helpers import (
    BASE,
    advance,
    balance,
    build_chain,
    ledger_audit,
    money,
    node_count,
)
from tests.tools.api import problem


def _events(app, tenant_id, prefix="payables_certificate."):
    with app.state.database.transaction() as session:
        return [(e.type, e.resource_id) for e in session.scalars(
            select(Event).where(Event.tenant_id == tenant_id, Event.type.startswith(prefix))
            .order_by(Event.created_at, Event.id))]


def test_issue_accept_split_transfer_finance_mature(app, http):
    chain = build_chain(app, http)
    core, t1, t2, t3 = chain.core, chain.t1, chain.t2, chain.t3
    core_before = balance(app, chain.tenant_id, core.account_id)

    issued = chain.issue("100000.00", days=90)
    assert issued.status_code == 201, issued.text
    cert = issued.json()
    assert cert["status"] == "issued" and cert["holder_member_id"] == t1.id
    assert cert["root_id"] == cert["id"] and cert["parent_id"] is None
    assert cert["amount"] == money("100000.00")
    assert chain.facility()["available"] == money("900000.00")

    accepted = chain.act(cert["id"], "accept", t1.id)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"

    split = chain.split(cert["id"], t1.id, "60000.00", "39999.99", "0.01")
    assert split.status_code == 200, split.text
    parts = split.json()["children"]
    assert split.json()["certificate"]["status"] == "split"
    assert [p["amount"]["amount"] for p in parts] == ["60000.00", "39999.99", "0.01"]
    assert all(p["holder_member_id"] == t1.id and p["status"] == "accepted" for p in parts)
    assert all(p["parent_id"] == cert["id"] and p["root_id"] == cert["id"] for p in parts)

    moved = chain.transfer(parts[0]["id"], t1.id, t2.id)
    assert moved.status_code == 200, moved.text
    t2_cert = moved.json()["children"][0]
    assert moved.json()["certificate"]["status"] == "transferred"
    assert t2_cert["holder_member_id"] == t2.id and t2_cert["depth"] == 2
    assert [(h["member_id"], h["via"]) for h in t2_cert["holder_history"]] == [
        (t1.id, "issued"), (t1.id, "split"), (t2.id, "transferred")]

    # Tier 2 passes 20 000 on to tier 3 and finances the rest at the bank.
    split2 = chain.split(t2_cert["id"], t2.id, "20000.00", "40000.00").json()["children"]
    t3_cert = chain.transfer(split2[0]["id"], t2.id, t3.id).json()["children"][0]
    quote = chain.pc.post(f"{BASE}/payables-certificates/{split2[1]['id']}/financing-quotes",
                          {"acting_member_id": t2.id})
    assert quote.status_code == 201, quote.text
    q = quote.json()
    days = (chain.today() + timedelta(days=90) - chain.today()).days
    # 40000.00 x 0.036 x 90 / 360 = 360.00
    assert q["days"] == days == 90 and q["discount"] == money("360.00") and q["net_amount"] == money("39640.00")
    assert chain.get(split2[1]["id"])["status"] == "financing"
    t2_before = balance(app, chain.tenant_id, t2.account_id)
    taken = chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                          {"acting_member_id": t2.id})
    assert taken.status_code == 200, taken.text
    financed = taken.json()["certificate"]
    assert financed["status"] == "financed" and financed["holder_type"] == "bank"
    assert financed["holder_member_id"] is None
    assert balance(app, chain.tenant_id, t2.account_id) - t2_before == 3_964_000

    lineage = chain.pc.get(f"{BASE}/payables-certificates/{t3_cert['id']}/lineage")
    assert lineage.status_code == 200, lineage.text
    tree = lineage.json()
    assert tree["root_id"] == cert["id"] and tree["amount"] == money("100000.00")
    assert tree["live_leaves_total"] == money("100000.00")
    assert [n["id"] for n in tree["nodes"]][0] == cert["id"]
    leaves = [n for n in tree["nodes"] if n["is_leaf"]]
    assert sorted(n["amount"]["amount"] for n in leaves) == ["0.01", "20000.00", "39999.99", "40000.00"]
    assert {n["holder_tier"] for n in leaves} == {1, 3, None}

    usage = chain.pc.get(f"{BASE}/facilities/{chain.facility_id}/utilisation").json()
    assert usage["outstanding"] == money("100000.00") and usage["available"] == money("900000.00")
    by_tier = {(e["holder_type"], e["tier"]): e for e in usage["by_tier"]}
    assert by_tier[("member", 1)]["amount"] == money("40000.00")
    assert by_tier[("member", 3)]["amount"] == money("20000.00")
    assert by_tier[("bank", None)]["amount"] == money("40000.00")
    assert ("member", 2) not in by_tier

    # Before maturity nothing happens; on the maturity date every current holder is paid.
    advance(app, chain.tenant_id, 89)
    run_until_idle(app.state.database)
    assert chain.get(t3_cert["id"])["status"] == "accepted"
    t1_before = balance(app, chain.tenant_id, t1.account_id)
    t3_before = balance(app, chain.tenant_id, t3.account_id)
    with app.state.database.transaction() as session:
        bank = ledger.bank_financing_account(session, chain.tenant_id)
    bank_before = balance(app, chain.tenant_id, bank)
    advance(app, chain.tenant_id, 1)
    run_until_idle(app.state.database)
    for leaf in leaves:
        assert chain.get(leaf["id"])["status"] == "settled"
    assert balance(app, chain.tenant_id, core.account_id) == core_before - 10_000_000
    assert balance(app, chain.tenant_id, t1.account_id) - t1_before == 4_000_000
    assert balance(app, chain.tenant_id, t3.account_id) - t3_before == 2_000_000
    assert balance(app, chain.tenant_id, bank) - bank_before == 4_000_000
    assert chain.facility()["outstanding"] == money("0.00")
    assert ledger_audit(app, chain.tenant_id) == []

    types = [t for t, _ in _events(app, chain.tenant_id)]
    for expected in ("issued", "accepted", "split", "transferred", "financed", "settled"):
        assert f"payables_certificate.{expected}" in types
    # Every event is an evidence entry too (written in the same transaction).
    from gateway.evidence.models import EvidenceEntry

    with app.state.database.transaction() as session:
        recorded = set(session.scalars(select(EvidenceEntry.resource_id).where(
            EvidenceEntry.tenant_id == chain.tenant_id, EvidenceEntry.kind == "event")))
    assert {rid for _, rid in _events(app, chain.tenant_id)} <= recorded
    # Running the jobs again pays nobody twice.
    run_until_idle(app.state.database)
    assert balance(app, chain.tenant_id, t3.account_id) - t3_before == 2_000_000


def _snapshot(chain):
    return node_count(chain.app, chain.tenant_id), chain.facility()["outstanding"]


def test_refused_transitions_change_nothing(app, http):
    chain = build_chain(app, http)
    core, t1, t2 = chain.core, chain.t1, chain.t2
    cert = chain.issue("5000.00").json()

    # Issued, not accepted yet: only accept / reject / cancel.
    before = _snapshot(chain)
    problem(chain.split(cert["id"], t1.id, "1000.00", "4000.00"), 409, "certificate_state_conflict")
    problem(chain.transfer(cert["id"], t1.id, t2.id), 409, "certificate_state_conflict")
    problem(chain.pc.post(f"{BASE}/payables-certificates/{cert['id']}/financing-quotes",
                          {"acting_member_id": t1.id}), 409, "certificate_state_conflict")
    problem(chain.act(cert["id"], "accept", t2.id), 403, "not_certificate_holder")
    problem(chain.act(cert["id"], "cancel", t1.id), 403, "not_certificate_issuer")
    assert _snapshot(chain) == before and chain.get(cert["id"])["status"] == "issued"

    assert chain.act(cert["id"], "accept", t1.id).status_code == 200
    body = problem(chain.act(cert["id"], "accept", t1.id), 409, "certificate_state_conflict")
    assert body["current_status"] == "accepted"
    problem(chain.act(cert["id"], "reject", t1.id), 409, "certificate_state_conflict")
    problem(chain.act(cert["id"], "cancel", core.id), 409, "certificate_state_conflict")

    # Bad splits: sum, size, count, zero; bad transfers: self, the core, another chain.
    body = problem(chain.split(cert["id"], t1.id, "1000.00", "3999.99"), 422, "split_amounts_mismatch")
    assert "4999.99" in body["detail"]
    problem(chain.split(cert["id"], t1.id, "1000.00", "4000.01"), 422, "split_amounts_mismatch")
    problem(chain.split(cert["id"], t1.id, "5000.00"), 422, "validation_failed")
    problem(chain.split(cert["id"], t1.id, "5000.00", "0.00"), 422, "validation_failed")
    problem(chain.act(cert["id"], "split", t1.id, parts=[{"amount": 2500, "currency": "CNY"}] * 2),
            422, "validation_failed")
    problem(chain.split(cert["id"], t2.id, "1000.00", "4000.00"), 403, "not_certificate_holder")
    problem(chain.transfer(cert["id"], t1.id, t1.id), 422, "invalid_recipient")
    problem(chain.transfer(cert["id"], t1.id, core.id), 422, "invalid_recipient")
    problem(chain.transfer(cert["id"], t1.id, "cmem_nope"), 422, "unknown_chain_member")
    other = build_chain(app, http, pc=chain.pc, ops=chain.ops, circle="GC-TEST-02")
    problem(chain.transfer(cert["id"], t1.id, other.t1.id), 422, "member_not_in_chain")
    problem(chain.pc.post(f"{BASE}/payables-certificates/{cert['id']}/split",
                          {"acting_member_id": t1.id, "parts": [money("1.00"), money("4999.00")]},
                          idempotency_key=None, headers={"Idempotency-Key": ""}), 400)
    assert _snapshot(chain) == before and chain.get(cert["id"])["status"] == "accepted"

    # Split: the parent is spent; acting on it again is a conflict.
    parts = chain.split(cert["id"], t1.id, "1000.00", "4000.00").json()["children"]
    problem(chain.split(cert["id"], t1.id, "1000.00", "4000.00"), 409, "certificate_state_conflict")
    problem(chain.transfer(cert["id"], t1.id, t2.id), 409, "certificate_state_conflict")
    # Transfer: the transferor's node is spent; the recipient holds the child.
    child = chain.transfer(parts[0]["id"], t1.id, t2.id).json()["children"][0]
    problem(chain.transfer(parts[0]["id"], t1.id, t2.id), 409, "certificate_state_conflict")
    problem(chain.transfer(child["id"], t1.id, t2.id), 403, "not_certificate_holder")
    problem(chain.act(child["id"], "accept", t2.id), 409, "certificate_state_conflict")

    # Financing: while a quote is open the certificate is reserved; once financed the bank holds it.
    q = chain.pc.post(f"{BASE}/payables-certificates/{parts[1]['id']}/financing-quotes",
                      {"acting_member_id": t1.id}).json()
    problem(chain.split(parts[1]["id"], t1.id, "1000.00", "3000.00"), 409, "certificate_state_conflict")
    problem(chain.transfer(parts[1]["id"], t1.id, t2.id), 409, "certificate_state_conflict")
    problem(chain.pc.post(f"{BASE}/payables-certificates/{parts[1]['id']}/financing-quotes",
                          {"acting_member_id": t1.id}), 409, "certificate_state_conflict")
    problem(chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                          {"acting_member_id": t2.id}), 403, "not_certificate_holder")
    problem(chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                          {"acting_member_id": t1.id}, headers={"Idempotency-Key": ""}), 400)
    ok = chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                       {"acting_member_id": t1.id})
    assert ok.status_code == 200, ok.text
    problem(chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                          {"acting_member_id": t1.id}), 409)
    problem(chain.split(parts[1]["id"], t1.id, "1000.00", "3000.00"), 403, "not_certificate_holder")

    # Rejected and cancelled certificates give their limit back and are final.
    limit_before = chain.facility()["outstanding"]
    rejected = chain.issue("700.00").json()
    assert chain.act(rejected["id"], "reject", t1.id, reason="no such trade").json()["status"] == "rejected"
    problem(chain.act(rejected["id"], "accept", t1.id), 409, "certificate_state_conflict")
    cancelled = chain.issue("800.00").json()
    assert chain.act(cancelled["id"], "cancel", core.id).json()["status"] == "cancelled"
    problem(chain.act(cancelled["id"], "accept", t1.id), 409, "certificate_state_conflict")
    assert chain.facility()["outstanding"] == limit_before

    # On the maturity date a certificate can no longer move (even before the worker runs).
    advance(app, chain.tenant_id, 90)
    problem(chain.split(child["id"], t2.id, "500.00", "500.00"), 409, "certificate_matured")
    problem(chain.transfer(child["id"], t2.id, chain.t3.id), 409, "certificate_matured")
    problem(chain.pc.post(f"{BASE}/payables-certificates/{child['id']}/financing-quotes",
                          {"acting_member_id": t2.id}), 409, "certificate_matured")
    run_until_idle(app.state.database)
    problem(chain.split(child["id"], t2.id, "500.00", "500.00"), 409, "certificate_state_conflict")
    assert chain.get(child["id"])["status"] == "settled"


def test_issuance_rules(app, http):
    chain = build_chain(app, http, limit="10000.00")
    before = _snapshot(chain)
    problem(chain.issue("10000.01"), 409, "facility_limit_exceeded")
    problem(chain.issue("100.00", days=0), 422, "invalid_maturity_date")
    problem(chain.issue("100.00", days=366), 422, "invalid_maturity_date")
    problem(chain.issue("100.00", to=chain.t2), 422, "invalid_recipient")
    problem(chain.issue("100.00", acting=chain.t1.id), 403, "not_core_enterprise")
    problem(chain.issue("100.00", acting="cmem_unknown"), 422, "unknown_chain_member")
    problem(chain.issue("-1.00"), 422, "validation_failed")
    problem(chain.issue("0.001"), 422, "validation_failed")
    problem(chain.issue("100.00", invoice_numbers=[]), 422, "validation_failed")
    problem(chain.issue("100.00", contract_number=""), 422, "validation_failed")
    problem(chain.issue("100.00", amount={"amount": 100, "currency": "CNY"}), 422,
            "validation_failed")
    problem(chain.issue("100.00", surprise=True), 422, "validation_failed")
    other = build_chain(app, http, pc=chain.pc, ops=chain.ops, circle="GC-TEST-02")
    problem(chain.issue("100.00", to=other.t1), 422, "member_not_in_chain")
    response = chain.pc.post(f"{BASE}/payables-certificates", {}, headers={"Idempotency-Key": ""})
    problem(response, 400)
    assert _snapshot(chain) == before

    assert chain.issue("100.00", days=1).status_code == 201
    assert chain.issue("100.00", days=365).status_code == 201
    assert chain.issue("9800.00").status_code == 201
    body = problem(chain.issue("0.01"), 409, "facility_limit_exceeded")
    assert body["available"] == money("0.00")


def test_idempotent_issuance_replays_and_pays_once(app, http):
    chain = build_chain(app, http)
    invoices = ["INV-IDEM-1"]
    first = chain.issue("1234.56", key="issue-1", invoice_numbers=invoices)
    again = chain.issue("1234.56", key="issue-1", invoice_numbers=invoices)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.json()["id"] == again.json()["id"]
    assert chain.facility()["outstanding"] == money("1234.56")
    problem(chain.issue("999.00", key="issue-1", invoice_numbers=invoices), 422, "idempotency_key_reused")


def test_quote_lapses_and_frees_the_certificate(app, http):
    chain = build_chain(app, http)
    cert = chain.issue_accepted("3600.00", days=30)
    q = chain.pc.post(f"{BASE}/payables-certificates/{cert['id']}/financing-quotes",
                      {"acting_member_id": chain.t1.id}).json()
    assert q["status"] == "open" and q["discount"] == money("10.80")
    got = chain.pc.get(f"{BASE}/payables-certificates/financing-quotes/{q['id']}")
    assert got.status_code == 200 and got.json()["id"] == q["id"]
    advance(app, chain.tenant_id, 16 / 1440)
    problem(chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q['id']}/accept",
                          {"acting_member_id": chain.t1.id}), 409, "financing_quote_expired")
    assert chain.get(cert["id"])["status"] == "financing"
    run_until_idle(app.state.database)
    assert chain.get(cert["id"])["status"] == "accepted"
    assert chain.pc.get(f"{BASE}/payables-certificates/financing-quotes/{q['id']}").json()["status"] == "expired"
    # A declined quote frees it as well; a lapsed one is released lazily by the next action.
    q2 = chain.pc.post(f"{BASE}/payables-certificates/{cert['id']}/financing-quotes",
                       {"acting_member_id": chain.t1.id}).json()
    declined = chain.pc.post(f"{BASE}/payables-certificates/financing-quotes/{q2['id']}/decline",
                             {"acting_member_id": chain.t1.id})
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert chain.get(cert["id"])["status"] == "accepted"
    chain.pc.post(f"{BASE}/payables-certificates/{cert['id']}/financing-quotes",
                  {"acting_member_id": chain.t1.id})
    advance(app, chain.tenant_id, 1)
    moved = chain.transfer(cert["id"], chain.t1.id, chain.t2.id)
    assert moved.status_code == 200, moved.text


def test_overdue_freezes_the_facility_and_pays_late(app, http):
    chain = build_chain(app, http, core_balance_fen=100_00)
    cert = chain.issue_accepted("500.00", days=10)
    parts = chain.split(cert["id"], chain.t1.id, "200.00", "300.00").json()["children"]
    chain.transfer(parts[0]["id"], chain.t1.id, chain.t2.id)
    advance(app, chain.tenant_id, 10)
    run_until_idle(app.state.database)
    tree = chain.pc.get(f"{BASE}/payables-certificates/{cert['id']}/lineage").json()
    leaves = [n for n in tree["nodes"] if n["is_leaf"]]
    assert {n["status"] for n in leaves} == {"overdue"}
    overdue_leaf = next(n for n in leaves if n["holder_member_id"] == chain.t2.id)
    problem(chain.transfer(overdue_leaf["id"], chain.t2.id, chain.t3.id), 409, "certificate_state_conflict")
    problem(chain.act(overdue_leaf["id"], "accept", chain.t2.id), 409, "certificate_state_conflict")
    assert balance(app, chain.tenant_id, chain.core.account_id) == 100_00  # nothing paid in part
    facility = chain.facility()
    assert facility["status"] == "frozen" and facility["outstanding"] == money("500.00")
    risks = chain.pc.get(f"{BASE}/risk-events").json()["data"]
    assert [(r["type"], r["source"], r["froze_facility"]) for r in risks] == [("overdue", "rule", True)]
    assert risks[0]["related_resource_id"] == cert["id"]
    types = [t for t, _ in _events(app, chain.tenant_id, "")]
    assert types.count("payables_certificate.overdue") == 2
    assert "credit_facility.frozen" in types and "chain_risk_event.recorded" in types
    # Frozen: no new issuance; existing certificates still mature once the money is there.
    problem(chain.issue("1.00"), 409, "credit_facility_frozen")
    run_until_idle(app.state.database)
    assert len(chain.pc.get(f"{BASE}/risk-events").json()["data"]) == 1
    from tests.products.chain_credit.helpers import deposit

    deposit(app, chain.tenant_id, chain.core.account_id, 1000_00)
    run_until_idle(app.state.database)
    assert {chain.get(n["id"])["status"] for n in leaves} == {"settled"}
    assert chain.facility()["outstanding"] == money("0.00")
    assert ledger_audit(app, chain.tenant_id) == []


def test_unaccepted_certificate_is_cancelled_at_maturity(app, http):
    chain = build_chain(app, http)
    cert = chain.issue("900.00", days=5).json()
    advance(app, chain.tenant_id, 5)
    run_until_idle(app.state.database)
    assert chain.get(cert["id"])["status"] == "cancelled"
    assert chain.facility()["outstanding"] == money("0.00")


def test_another_tenant_sees_nothing(app, http):
    chain = build_chain(app, http)
    cert = chain.issue_accepted("100.00")
    from tests.tools.api import new_partner_client

    stranger = new_partner_client(app, http)
    for path in (f"{BASE}/payables-certificates/{cert['id']}",
                 f"{BASE}/payables-certificates/{cert['id']}/lineage",
                 f"{BASE}/facilities/{chain.facility_id}",
                 f"{BASE}/facilities/{chain.facility_id}/utilisation",
                 f"{BASE}/members/{chain.t1.id}"):
        problem(stranger.get(path), 404)
    problem(stranger.post(f"{BASE}/payables-certificates/{cert['id']}/split",
                          {"acting_member_id": chain.t1.id, "parts": [money("50.00"), money("50.00")]}),
            422, "unknown_chain_member")
    assert stranger.get(f"{BASE}/payables-certificates").json()["data"] == []
    reader = new_partner_client(app, http, scopes=["chain_credit:read"], partner=None)
    problem(reader.post(f"{BASE}/members", {}), 403, "insufficient_scope")


def test_an_invoice_backs_one_certificate(app, http):
    chain = build_chain(app, http)
    first = chain.issue("100.00", invoice_numbers=["INV-A", "INV-B"])
    assert first.status_code == 201
    body = problem(chain.issue("100.00", invoice_numbers=["INV-C", "INV-B"]), 409, "invoice_already_used")
    assert body["invoice_numbers"] == ["INV-B"]
    problem(chain.issue("100.00", invoice_numbers=["INV-D", "INV-D"]), 422, "duplicate_invoice_numbers")
    # Another core enterprise's invoices are its own.
    other = build_chain(app, http, pc=chain.pc, ops=chain.ops, circle="GC-TEST-02")
    assert other.issue("100.00", invoice_numbers=["INV-B"]).status_code == 201
    # A rejected certificate gives its invoices back.
    chain.act(first.json()["id"], "reject", chain.t1.id)
    assert chain.issue("100.00", invoice_numbers=["INV-B"]).status_code == 201
