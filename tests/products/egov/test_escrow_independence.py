"""Four-eyes between the fund user and its supervisor: a scheme's operator is never its own
regulator, whatever the bank recognised (QA S2). Recognising a partner that runs schemes is
allowed (recognition is per partner and kind, not per scheme); the guard is at the scheme's
creation and at every decision."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.identifiers import generate_uscc
from gateway.tenancy import Partner
from products.egov import escrow
from products.egov.models import EscrowScheme, ReleaseApproval, ReleaseInstruction
from tests.products.egov.escrow_support import recognise, world
from tests.products.egov.helpers import RNG
from tests.tools.api import new_partner_client, problem


def _own_supervisor(app, http, partner):
    """An `egov:supervise` client of the operator's own partner (as the CLI or, for a
    government_portal partner, the console may issue)."""
    with app.state.database.transaction() as session:
        row = session.get(Partner, partner.partner_id)
        session.expunge(row)
    return new_partner_client(app, http, scopes=["egov:supervise"], partner=row)


def test_a_scheme_naming_its_own_partner_as_regulator_is_refused(app, http, partner):
    w = world(app, http, partner, kinds=("court_funds",))
    # Operations may recognise the operator's partner (it may supervise other tenants' schemes) ...
    recognise(w.ops, partner.partner_id, ["court_funds"], name="operator itself")
    # ... but it cannot regulate a scheme of its own.
    refused = partner.post("/v1/egov/escrow-schemes", {
        "reference": "SELF-1", "name": "自管", "regulator_partner_id": partner.partner_id,
        "holder_name": "某区法院", "holder_uscc": generate_uscc(RNG),
        "policy": {"kind": "court_funds", "required_approvals": 1}})
    body = problem(refused, 422, "regulator_not_independent")
    assert body["errors"][0]["field"] == "body.regulator_partner_id"
    assert partner.get("/v1/egov/escrow-schemes").json()["data"] == []
    # An independent regulator is still accepted.
    assert w.scheme({"kind": "court_funds", "required_approvals": 1}, beneficiary=False)["id"]


def test_a_decision_by_the_schemes_own_partner_is_refused_and_moves_nothing(app, http, partner):
    w = world(app, http, partner, kinds=("court_funds",))
    recognise(w.ops, partner.partner_id, ["court_funds"], name="operator itself")
    own = _own_supervisor(app, http, partner)
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 1}, beneficiary=False)
    case = w.sub_account(scheme, "CASE-SELF", holder="李某")
    assert w.deposit(scheme, case, w.account(fund=100000), "100.00").status_code == 201
    payee = w.account()
    pending = w.instruct(scheme, case, amount="100.00", destination_account_id=payee,
                         court_order={"number": "(2026)沪0115执1号", "issued_on": "2026-12-01"})
    assert pending.status_code == 201, pending.text
    pending = pending.json()
    # A scheme opened before independence was checked, naming the operator's own partner.
    with app.state.database.transaction() as session:
        session.get(EscrowScheme, scheme["id"]).regulator_partner_id = partner.partner_id
    assert [s["id"] for s in own.get("/v1/egov/supervision/escrow-schemes").json()["data"]] \
        == [scheme["id"]]

    problem(w.decide(pending, "self", regulator=own), 403, "regulator_not_independent")
    problem(w.decide(pending, "self", decision="reject", regulator=own), 403,
            "regulator_not_independent")
    assert w.balance(payee) == 0 and w.balance(case["ledger_account_id"]) == 10000
    state = w.operator.get(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions/"
                           f"{pending['id']}").json()
    assert state["status"] == "pending_approval" and state["approvals"] == []

    # Nor would an approval of the own partner recorded before count for the debit guard.
    with app.state.database.transaction() as session:
        ins = session.get(ReleaseInstruction, pending["id"])
        session.add(ReleaseApproval(
            instruction_id=ins.id, approver_id="self", tenant_id=ins.tenant_id,
            regulator_partner_id=partner.partner_id, client_id=own.client_id,
            approver_name="self", decision="approve", comment="", created_at=ins.created_at))
        session.flush()
        assert not escrow._authorised(session, ins)
        assert session.scalar(select(func.count()).select_from(ReleaseApproval)) == 1
