"""Chain members, facilities (operations only), the guarantee-circle cap, freezing, expiry,
utilisation, risk events, the CLI and the sandbox seed."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from gateway.jobs import run_until_idle
from products.chain_credit.models import CreditFacility
from tests.products.chain_credit.helpers import (
    BASE,
    OPS,
    Chain,
    advance,
    build_chain,
    deposit,
    grant,
    money,
    new_uscc,
    open_account,
    ops_client,
    register,
    today,
)
from tests.tools.api import new_partner_client, problem


def test_member_registration_rules(app, http, partner):
    core = register(app, partner, name="核心企业集团", role="core_enterprise", upstream=None)
    t1 = register(app, partner, name="一级供应商", role="supplier", upstream=core.id)
    t2 = register(app, partner, name="二级供应商", role="supplier", upstream=t1.id)
    assert (core.tier, t1.tier, t2.tier) == (0, 1, 2)
    got = partner.get(f"{BASE}/members/{t2.id}").json()
    assert got["core_enterprise_id"] == core.id and got["upstream_member_id"] == t1.id

    def body(**over):
        uscc = over.pop("uscc", None) or new_uscc()
        account = over.pop("account", None) or open_account(app, partner.tenant_id, "新企业", uscc)
        out = {"name": "新企业", "uscc": uscc, "settlement_account_id": account, "role": "supplier",
               "upstream_member_id": t1.id}
        out.update(over)
        return out

    problem(partner.post(f"{BASE}/members", body(uscc="91110000600037341X", account=t1.account_id)), 422,
            "validation_failed")
    problem(partner.post(f"{BASE}/members", body(upstream_member_id=None)), 422, "invalid_upstream_member")
    problem(partner.post(f"{BASE}/members", body(upstream_member_id="cmem_x")), 422, "invalid_upstream_member")
    problem(partner.post(f"{BASE}/members", body(tier=5)), 422, "invalid_upstream_member")
    problem(partner.post(f"{BASE}/members", body(role="core_enterprise")), 422, "invalid_upstream_member")
    problem(partner.post(f"{BASE}/members", body(role="bank")), 422, "validation_failed")
    problem(partner.post(f"{BASE}/members", body(uscc=t1.uscc, account=t1.account_id)), 409,
            "chain_member_exists")
    # The settlement account must be the enterprise's own active settlement account.
    problem(partner.post(f"{BASE}/members", body(account=t1.account_id)), 422, "invalid_settlement_account")
    problem(partner.post(f"{BASE}/members", body(account="acct_nope")), 422, "invalid_settlement_account")
    stranger = new_partner_client(app, http)
    uscc = new_uscc()
    foreign = open_account(app, stranger.tenant_id, "外部企业", uscc)
    problem(partner.post(f"{BASE}/members", body(uscc=uscc, account=foreign)), 422,
            "invalid_settlement_account")
    assert partner.post(f"{BASE}/members", body(tier=2)).status_code == 201

    listed = partner.get(f"{BASE}/members?tier=2&limit=1")
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    rest = partner.get(f"{BASE}/members?tier=2&limit=1&cursor={page['next_cursor']}").json()
    assert len(rest["data"]) == 1 and rest["next_cursor"] is None
    assert rest["data"][0]["id"] != page["data"][0]["id"]
    problem(partner.get(f"{BASE}/members?cursor=%%%"), 422, "invalid_cursor")
    problem(partner.get(f"{BASE}/members?limit=101"), 422, "validation_failed")
    problem(partner.get(f"{BASE}/members/cmem_missing"), 404, "chain_member_not_found")


def test_operations_routes_need_an_operations_credential(app, http, partner):
    core = register(app, partner, name="核心企业", role="core_enterprise", upstream=None)
    start = today(app, partner.tenant_id)
    problem(grant(partner, partner.tenant_id, core.id, start=start), 403, "insufficient_scope")
    reader = new_partner_client(app, http, operations=True, scopes=["operations:read"])
    problem(grant(reader, partner.tenant_id, core.id, start=start), 403, "insufficient_scope")
    ops = ops_client(app, http)
    problem(grant(ops, "ten_missing", core.id, start=start), 404, "tenant_not_found")
    production_ops = new_partner_client(app, http, operations=True, environment="production",
                                        scopes=["operations:read", "operations:write"])
    problem(grant(production_ops, partner.tenant_id, core.id, start=start), 404, "tenant_not_found")
    problem(ops.post(f"{OPS}/facilities", {"tenant_id": partner.tenant_id}, idempotency_key=None,
                     headers={"Idempotency-Key": ""}), 400)
    t1 = register(app, partner, name="一级供应商", role="supplier", upstream=core.id)
    problem(grant(ops, partner.tenant_id, t1.id, start=start), 422, "invalid_facility_terms")
    problem(grant(ops, partner.tenant_id, core.id, start=start, expires_in_days=0), 422,
            "invalid_facility_terms")
    problem(grant(ops, partner.tenant_id, core.id, start=start, rate="0.00"), 422, "validation_failed")
    problem(grant(ops, partner.tenant_id, core.id, start=start, rate="1.5"), 422, "validation_failed")
    problem(grant(ops, partner.tenant_id, core.id, start=start, rate="0.0000001"), 422, "validation_failed")
    problem(grant(ops, partner.tenant_id, core.id, start=start, limit="0.00"), 422, "validation_failed")
    assert partner.get(f"{BASE}/facilities").json()["data"] == []
    granted = grant(ops, partner.tenant_id, core.id, start=start)
    assert granted.status_code == 201, granted.text
    facility = granted.json()
    assert facility["status"] == "active" and facility["available"] == money("1000000.00")
    assert facility["discount_rate"] == "0.036"
    problem(grant(ops, partner.tenant_id, core.id, start=start), 409, "credit_facility_exists")
    assert [f["id"] for f in partner.get(f"{BASE}/facilities").json()["data"]] == [facility["id"]]
    assert ops.get(f"{OPS}/facilities?tenant_id={partner.tenant_id}").json()["data"][0]["id"] == facility["id"]
    problem(partner.get(f"{OPS}/facilities?tenant_id={partner.tenant_id}"), 403)
    members = ops.get(f"{OPS}/members?tenant_id={partner.tenant_id}&role=core_enterprise").json()["data"]
    assert [m["id"] for m in members] == [core.id]


def test_guarantee_circle_cap(app, http, partner, monkeypatch):
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_BANK_WIDE_LIMIT_FEN", str(10_000_000_00))
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_GUARANTEE_CIRCLE_SHARE", "0.25")  # cap: 2.5 million
    ops = ops_client(app, http)
    start = today(app, partner.tenant_id)
    cores = [register(app, partner, name=f"核心企业{i}", role="core_enterprise", upstream=None)
             for i in range(4)]
    assert grant(ops, partner.tenant_id, cores[0].id, limit="1500000.00", circle="GC-A",
                 start=start).status_code == 201
    body = problem(grant(ops, partner.tenant_id, cores[1].id, limit="1000000.01", circle="GC-A",
                         start=start), 409, "guarantee_circle_cap_exceeded")
    assert body["cap"] == money("2500000.00") and body["granted"] == money("1500000.00")
    assert "GC-A" in body["detail"]
    assert grant(ops, partner.tenant_id, cores[1].id, limit="1000000.00", circle="GC-A",
                 start=start).status_code == 201
    # Another circle has its own room; another sandbox tenant's grants do not count.
    assert grant(ops, partner.tenant_id, cores[2].id, limit="2500000.00", circle="GC-B",
                 start=start).status_code == 201
    other = new_partner_client(app, http)
    core = register(app, other, name="别家核心企业", role="core_enterprise", upstream=None)
    assert grant(ops, other.tenant_id, core.id, limit="2500000.00", circle="GC-A",
                 start=start).status_code == 201
    problem(grant(ops, partner.tenant_id, cores[3].id, limit="0.01", circle="GC-A", start=start), 409,
            "guarantee_circle_cap_exceeded")


def test_guarantee_circle_codes_are_one_circle_whatever_their_case(app, http, partner, monkeypatch):
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_BANK_WIDE_LIMIT_FEN", str(10_000_000_00))
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_GUARANTEE_CIRCLE_SHARE", "0.25")  # cap: 2.5 million
    ops = ops_client(app, http)
    start = today(app, partner.tenant_id)
    cores = [register(app, partner, name=f"核心企业{i}", role="core_enterprise", upstream=None)
             for i in range(3)]
    assert grant(ops, partner.tenant_id, cores[0].id, limit="1500000.00", circle="GC-A",
                 start=start).status_code == 201
    body = problem(grant(ops, partner.tenant_id, cores[1].id, limit="1000000.01", circle="gc-a",
                         start=start), 409, "guarantee_circle_cap_exceeded")
    assert body["granted"] == money("1500000.00") and body["guarantee_circle"] == "GC-A"
    problem(grant(ops, partner.tenant_id, cores[1].id, circle="gc a", start=start), 422,
            "validation_failed")
    granted = grant(ops, partner.tenant_id, cores[1].id, limit="500000.00", circle=" gc-a ", start=start)
    assert granted.status_code == 201, granted.text
    assert granted.json()["guarantee_circle"] == "GC-A"
    # A code stored in lower case before codes were normalised is still the same circle.
    with app.state.database.transaction() as session:
        session.execute(update(CreditFacility).where(CreditFacility.id == granted.json()["id"])
                        .values(guarantee_circle="gc-a"))
    problem(grant(ops, partner.tenant_id, cores[2].id, limit="500000.01", circle="GC-A", start=start),
            409, "guarantee_circle_cap_exceeded")
    assert grant(ops, partner.tenant_id, cores[2].id, limit="500000.00", circle="GC-A",
                 start=start).status_code == 201


def _short_term_chain(app, http, partner, *, limit: str, days: int, circle: str) -> Chain:
    """A core enterprise whose facility expires in `days` days, and one tier-1 supplier."""
    ops = ops_client(app, http)
    core = register(app, partner, name="年度授信核心企业", role="core_enterprise", upstream=None)
    granted = grant(ops, partner.tenant_id, core.id, limit=limit, expires_in_days=days, circle=circle,
                    start=today(app, partner.tenant_id))
    assert granted.status_code == 201, granted.text
    t1 = register(app, partner, name="一级供应商有限公司", role="supplier", upstream=core.id)
    return Chain(app=app, pc=partner, ops=ops, core=core, tiers=[[t1]], facility_id=granted.json()["id"])


def _evidence_types(pc, resource_id: str) -> list[str]:
    bundle = pc.get(f"/v1/evidence/bundles/{resource_id}")
    assert bundle.status_code == 200, bundle.text
    canonical = [base64.b64decode(e["canonical"]).decode() for e in bundle.json()["entries"]]
    return [t for text in canonical for t in ("credit_facility.expired", "credit_facility.renewed")
            if f'"{t}"' in text]


def test_an_expired_facility_is_renewed_in_place(app, http, partner, monkeypatch):
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_BANK_WIDE_LIMIT_FEN", str(20_000_00))
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_GUARANTEE_CIRCLE_SHARE", "0.1")  # cap: 2,000.00
    chain = _short_term_chain(app, http, partner, limit="1000.00", days=10, circle="GC-YEAR-1")
    other = register(app, partner, name="同圈核心企业", role="core_enterprise", upstream=None)
    assert grant(chain.ops, partner.tenant_id, other.id, limit="1200.00", circle="GC-YEAR-2",
                 start=chain.today()).status_code == 201
    # Matures on the facility's last day (no later: a certificate is paid within its facility's
    # term); the maturity job has not run when the facility is renewed, so it is still owed.
    earlier = chain.issue_accepted("600.00", days=10)

    def renew(limit: str, circle: str):
        return grant(chain.ops, partner.tenant_id, chain.core.id, limit=limit, circle=circle,
                     rate="0.05", expires_in_days=365, start=chain.today())

    # Active, or frozen: still the facility in force.
    problem(renew("1000.00", "GC-YEAR-1"), 409, "credit_facility_exists")
    chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                   {"tenant_id": partner.tenant_id, "reason": "review"})
    problem(renew("1000.00", "GC-YEAR-1"), 409, "credit_facility_exists")

    advance(app, partner.tenant_id, 11)  # expired; the expiry job has not run yet
    problem(chain.issue("1.00"), 409, "credit_facility_expired")
    # The renewal is a grant: the new circle's cap holds (1,200.00 granted + 800.01 > 2,000.00).
    problem(renew("800.01", "gc-year-2"), 409, "guarantee_circle_cap_exceeded")
    assert chain.facility()["limit"] == money("1000.00")
    renewed = renew("800.00", "gc-year-2")
    assert renewed.status_code == 201, renewed.text
    facility = renewed.json()
    assert facility["id"] == chain.facility_id and facility["status"] == "active"
    assert facility["limit"] == money("800.00") and facility["discount_rate"] == "0.05"
    assert facility["guarantee_circle"] == "GC-YEAR-2" and facility["frozen_reason"] is None
    assert facility["expires_on"] == (chain.today() + timedelta(days=365)).isoformat()
    # The earlier term's certificate is still owed: it uses the renewed limit.
    assert facility["outstanding"] == money("600.00") and facility["available"] == money("200.00")
    problem(chain.issue("200.01"), 409, "facility_limit_exceeded")
    assert chain.issue("200.00").status_code == 201
    assert chain.get(earlier["id"])["facility_id"] == chain.facility_id
    problem(renew("800.00", "GC-YEAR-2"), 409, "credit_facility_exists")
    assert [f["id"] for f in partner.get(f"{BASE}/facilities").json()["data"]
            if f["core_enterprise_id"] == chain.core.id] == [chain.facility_id]

    events = partner.get("/v1/events?type=credit_facility.renewed").json()["data"]
    assert [(e["resource"]["id"], e["data"]["limit"]) for e in events] == [
        (chain.facility_id, money("800.00"))]
    assert _evidence_types(partner, chain.facility_id) == ["credit_facility.expired",
                                                           "credit_facility.renewed"]
    deposit(app, partner.tenant_id, chain.core.account_id, 600_00)
    run_until_idle(app.state.database)
    assert chain.facility()["status"] == "active"


def test_a_renewal_below_what_is_owed_leaves_nothing_available_and_says_why(app, http, partner):
    chain = _short_term_chain(app, http, partner, limit="1000.00", days=10, circle="GC-LOW")
    chain.issue_accepted("600.00", days=10)  # still owed at the renewal (no maturity job ran)
    advance(app, partner.tenant_id, 11)
    renewed = grant(chain.ops, partner.tenant_id, chain.core.id, limit="500.00",
                    circle="GC-LOW", rate="0.05", expires_in_days=365, start=chain.today())
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["available"] == money("0.00")
    refused = problem(chain.issue("1.00"), 409, "facility_limit_exceeded")
    assert refused["available"] == money("0.00")
    assert refused["detail"] == (
        "The facility has 0.00 CNY available: its outstanding certificates and financing "
        "(600.00 CNY) exceed its limit (500.00 CNY).")


def test_freeze_unfreeze_and_expiry(app, http):
    chain = build_chain(app, http)
    cert = chain.issue_accepted("1000.00", days=30)
    frozen = chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                            {"tenant_id": chain.tenant_id, "reason": "manual review."})
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    problem(chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/freeze",
                           {"tenant_id": chain.tenant_id, "reason": "again"}), 409, "invalid_state")
    refused = problem(chain.issue("1.00"), 409, "credit_facility_frozen")
    assert refused["detail"].endswith(": manual review. No new certificates can be issued.")
    # Existing certificates still move while the facility is frozen; the bank does not finance.
    parts = chain.split(cert["id"], chain.t1.id, "400.00", "600.00")
    assert parts.status_code == 200
    part = parts.json()["children"][0]["id"]
    assert chain.transfer(part, chain.t1.id, chain.t2.id).status_code == 200
    problem(chain.pc.post(f"{BASE}/payables-certificates/{parts.json()['children'][1]['id']}/financing-quotes",
                          {"acting_member_id": chain.t1.id}), 409, "credit_facility_frozen")
    problem(chain.pc.post(f"{OPS}/facilities/{chain.facility_id}/unfreeze",
                          {"tenant_id": chain.tenant_id, "reason": "x"}), 403)
    lifted = chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/unfreeze",
                            {"tenant_id": chain.tenant_id, "reason": "resolved"})
    assert lifted.status_code == 200 and lifted.json()["status"] == "active"
    assert chain.issue("1.00").status_code == 201
    problem(chain.ops.post(f"{OPS}/facilities/fac_missing/freeze", {"tenant_id": chain.tenant_id,
                                                                    "reason": "x"}), 404)

    advance(app, chain.tenant_id, 401)
    problem(chain.issue("1.00"), 409, "credit_facility_expired")
    run_until_idle(app.state.database)
    assert chain.facility()["status"] == "expired"
    problem(chain.ops.post(f"{OPS}/facilities/{chain.facility_id}/unfreeze",
                           {"tenant_id": chain.tenant_id, "reason": "x"}), 409)


def test_risk_events_by_operations(app, http):
    chain = build_chain(app, http)
    problem(chain.pc.post(f"{OPS}/risk-events", {"tenant_id": chain.tenant_id,
                                                 "core_enterprise_id": chain.core.id, "type": "lawsuit",
                                                 "description": "x"}), 403)
    # An event about one supplier is recorded without freezing the core enterprise's facility.
    about_member = chain.ops.post(f"{OPS}/risk-events", {
        "tenant_id": chain.tenant_id, "core_enterprise_id": chain.core.id, "member_id": chain.t2.id,
        "type": "rating_downgrade", "description": "外部评级下调"})
    assert about_member.status_code == 201, about_member.text
    assert about_member.json()["froze_facility"] is False
    assert chain.facility()["status"] == "active"
    problem(chain.ops.post(f"{OPS}/risk-events", {
        "tenant_id": chain.tenant_id, "core_enterprise_id": chain.t1.id, "type": "lawsuit",
        "description": "x"}), 422, "unknown_chain_member")
    problem(chain.ops.post(f"{OPS}/risk-events", {
        "tenant_id": chain.tenant_id, "core_enterprise_id": chain.core.id, "type": "fire",
        "description": "x"}), 422, "validation_failed")
    lawsuit = chain.ops.post(f"{OPS}/risk-events", {
        "tenant_id": chain.tenant_id, "core_enterprise_id": chain.core.id,
        "type": "guarantee_chain_break", "description": "担保链断裂"})
    assert lawsuit.status_code == 201 and lawsuit.json()["froze_facility"] is True
    assert lawsuit.json()["source"] == "operations"
    assert chain.facility()["status"] == "frozen"
    listed = chain.pc.get(f"{BASE}/risk-events?type=guarantee_chain_break").json()["data"]
    assert [e["id"] for e in listed] == [lawsuit.json()["id"]]
    assert len(chain.ops.get(f"{OPS}/risk-events?tenant_id={chain.tenant_id}").json()["data"]) == 2


def test_certificate_list_filters(app, http):
    chain = build_chain(app, http)
    a = chain.issue_accepted("100.00", days=10)
    b = chain.issue("200.00", days=20).json()
    parts = chain.split(a["id"], chain.t1.id, "40.00", "60.00").json()["children"]
    moved = chain.transfer(parts[0]["id"], chain.t1.id, chain.t2.id).json()["children"][0]

    def ids(query):
        response = chain.pc.get(f"{BASE}/payables-certificates?{query}")
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["data"]}

    assert ids("status=issued") == {b["id"]}
    assert ids(f"holder_member_id={chain.t2.id}") == {moved["id"]}
    assert ids(f"root_id={a['id']}") == {a["id"], parts[0]["id"], parts[1]["id"], moved["id"]}
    assert ids(f"maturity_from={(chain.today() + timedelta(days=15)).isoformat()}") == {b["id"]}
    assert ids("held_by_bank=true") == set()
    problem(chain.pc.get(f"{BASE}/payables-certificates?status=lost"), 422, "validation_failed")
    problem(chain.pc.get(f"{BASE}/payables-certificates/pcert_missing"), 404, "payables_certificate_not_found")
    problem(chain.pc.get(f"{BASE}/payables-certificates/pcert_missing/lineage"), 404)


@pytest.fixture
def quanlian(app, monkeypatch):
    """Runs `quanlian ...` as from a user's shell: configured by environment variables only (this
    test's database and data directory), in a process where no app factory has run, so nothing has
    installed the vault for personal data yet."""
    from gateway import pii
    from gateway.cli import app as cli
    from gateway.settings import get_settings

    monkeypatch.setenv("QUANLIAN_DATABASE_URL", app.state.database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(app.state.settings.data_dir))
    installed = pii.get_vault()
    runner = CliRunner()

    def invoke(*args: str):
        pii.set_vault(None)
        get_settings.cache_clear()
        try:
            return runner.invoke(cli, list(args))
        finally:
            pii.set_vault(installed)
            get_settings.cache_clear()

    return invoke


def _cli_grant(tenant_id, core_id, expires, *, limit="2000000.00", circle="GC-CLI"):
    return ["chain-credit", "grant-facility", "--tenant-id", tenant_id, "--core-enterprise-id", core_id,
            "--limit", limit, "--expires-on", expires.isoformat(), "--guarantee-circle", circle,
            "--discount-rate", "0.04"]


def test_cli_grant_facility(app, http, partner, quanlian):
    core = register(app, partner, name="命令行核心企业", role="core_enterprise", upstream=None)
    args = _cli_grant(partner.tenant_id, core.id, today(app, partner.tenant_id) + timedelta(days=365))
    result = quanlian(*args)
    assert result.exit_code == 0, result.output
    facility = json.loads(result.stdout)
    assert facility["limit"] == money("2000000.00") and facility["core_enterprise_id"] == core.id
    again = quanlian(*args)
    assert again.exit_code == 1 and "credit_facility_exists" in again.stderr
    bad = quanlian(*args[:6], "--limit", "12.345", *args[8:])
    assert bad.exit_code == 2
    assert partner.get(f"{BASE}/facilities").json()["data"][0]["id"] == facility["id"]


def test_cli_renews_an_expired_facility_with_the_apis_circle_rule(app, http, partner, quanlian):
    core = register(app, partner, name="命令行续授信核心企业", role="core_enterprise", upstream=None)
    start = today(app, partner.tenant_id)
    assert quanlian(*_cli_grant(partner.tenant_id, core.id, start, circle="gc x")).exit_code == 2
    first = quanlian(*_cli_grant(partner.tenant_id, core.id, start + timedelta(days=30),
                                 circle=" gc-cli-01 "))
    assert first.exit_code == 0, first.output
    facility = json.loads(first.stdout)
    assert facility["guarantee_circle"] == "GC-CLI-01"
    advance(app, partner.tenant_id, 31)
    renewed = quanlian(*_cli_grant(partner.tenant_id, core.id, start + timedelta(days=400),
                                   limit="3000000.00"))
    assert renewed.exit_code == 0, renewed.output
    out = json.loads(renewed.stdout)
    assert out["id"] == facility["id"] and out["status"] == "active"
    assert out["limit"] == money("3000000.00") and out["guarantee_circle"] == "GC-CLI"
    assert [e["resource"]["id"] for e in partner.get("/v1/events?type=credit_facility.renewed")
            .json()["data"]] == [facility["id"]]


@pytest.mark.parametrize("seed", [7])
def test_sandbox_seed_walk_through(app, http, seed):
    """The seed gives a developer a core enterprise, a facility and three supplier tiers."""
    from gateway.tenancy import create_partner, ensure_tenant
    from products.chain_credit.seed import seed_chain_credit
    from sandbox.fakedata import FakeData

    with app.state.database.transaction() as session:
        partner = create_partner(session, name="seeded")
        tenant_id = ensure_tenant(session, partner.id, "sandbox").id
        summary = seed_chain_credit(session, tenant_id, FakeData(seed))
    pc = new_partner_client(app, http, partner=partner)
    assert pc.tenant_id == tenant_id
    core = summary["core_enterprise"]["id"]
    t1, t2, t3 = (summary["suppliers"][f"tier_{i}"][0]["id"] for i in (1, 2, 3))
    members = pc.get(f"{BASE}/members?limit=100").json()["data"]
    assert sorted(m["tier"] for m in members) == [0, 1, 1, 2, 2, 3]
    facility = pc.get(f"{BASE}/facilities/{summary['facility_id']}").json()
    assert facility["status"] == "active" and facility["core_enterprise_id"] == core
    day = today(app, tenant_id)
    cert = pc.post(f"{BASE}/payables-certificates", {
        "acting_member_id": core, "to_member_id": t1, "amount": money("100000.00"),
        "maturity_date": (day + timedelta(days=30)).isoformat(),
        "invoice_numbers": ["INV-001"], "contract_number": "PO-2026-001"}).json()
    pc.post(f"{BASE}/payables-certificates/{cert['id']}/accept", {"acting_member_id": t1})
    parts = pc.post(f"{BASE}/payables-certificates/{cert['id']}/split", {
        "acting_member_id": t1, "parts": [money("30000.00"), money("70000.00")]}).json()["children"]
    t2_cert = pc.post(f"{BASE}/payables-certificates/{parts[0]['id']}/transfer", {
        "acting_member_id": t1, "to_member_id": t2}).json()["children"][0]
    t3_cert = pc.post(f"{BASE}/payables-certificates/{t2_cert['id']}/transfer", {
        "acting_member_id": t2, "to_member_id": t3}).json()["children"][0]
    quote = pc.post(f"{BASE}/payables-certificates/{t3_cert['id']}/financing-quotes",
                    {"acting_member_id": t3}).json()
    taken = pc.post(f"{BASE}/payables-certificates/financing-quotes/{quote['id']}/accept",
                    {"acting_member_id": t3})
    assert taken.status_code == 200, taken.text
    advance(app, tenant_id, 30)
    run_until_idle(app.state.database)
    tree = pc.get(f"{BASE}/payables-certificates/{cert['id']}/lineage").json()
    assert {n["status"] for n in tree["nodes"] if n["is_leaf"]} == {"settled"}


def test_sandbox_signup_seeds_a_chain(app, http):
    response = http.post("/sandbox/v1/signup", json={"name": "Acme SCF", "email": "dev@acme.example"})
    assert response.status_code == 201, response.text
    seeded = response.json()["seeded"]["chain_credit"]
    assert seeded["facility_id"].startswith("cfac_")
    assert [len(seeded["suppliers"][f"tier_{i}"]) for i in (1, 2, 3)] == [2, 2, 1]


def test_sandbox_reset_clears_and_reseeds_chain_credit(app, http):
    signup = http.post("/sandbox/v1/signup", json={"name": "Reset SCF", "email": "dev@reset.example"}).json()
    from tests.tools.api import basic

    token = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                      headers=basic(signup["client_id"], signup["client_secret"])).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    seeded = signup["seeded"]["chain_credit"]
    core, t1 = seeded["core_enterprise"]["id"], seeded["suppliers"]["tier_1"][0]["id"]
    day = today(app, signup["tenant_id"])
    cert = http.post(f"{BASE}/payables-certificates", headers=dict(auth, **{"Idempotency-Key": "r1"}), json={
        "acting_member_id": core, "to_member_id": t1, "amount": money("10.00"),
        "maturity_date": (day + timedelta(days=3)).isoformat(), "invoice_numbers": ["INV-R"],
        "contract_number": "C-R"}).json()
    http.post(f"{BASE}/payables-certificates/{cert['id']}/accept", headers=auth, json={"acting_member_id": t1})
    http.post(f"{BASE}/payables-certificates/{cert['id']}/split", headers=dict(auth, **{"Idempotency-Key": "r2"}),
              json={"acting_member_id": t1, "parts": [money("4.00"), money("6.00")]})
    reset = http.post("/sandbox/v1/reset", headers=auth)
    assert reset.status_code == 200, reset.text
    assert http.get(f"{BASE}/payables-certificates", headers=auth).json()["data"] == []
    fresh = reset.json()["seeded"]["chain_credit"]
    assert http.get(f"{BASE}/facilities/{fresh['facility_id']}", headers=auth).status_code == 200
