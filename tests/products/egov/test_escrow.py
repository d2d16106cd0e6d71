"""Supervised escrow: each scheme walked through on the sandbox test clock, with a release
beyond the policy and a release without approval refused each time."""

from __future__ import annotations

import base64
import copy
import json
import logging
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.clock import SHANGHAI
from gateway.identifiers import generate_uscc
from products.accounts import service as accounts
from products.accounts.errors import DebitRestricted, PaymentRefused
from products.accounts.port import Capture, Leg
from products.egov.errors import EscrowCreditRefused, EscrowDebitRefused
from products.egov.escrow import _class_value
from products.egov.evidence import BundleInvalid, verify_bundle
from products.egov.models import ReleaseInstruction
from products.egov.router import EscrowBundleOut
from tests.products.egov.escrow_support import World, recognise, regulator_user, world
from tests.products.egov.helpers import RNG, advance, run_jobs
from tests.tools.api import new_partner_client, problem
from tests.tools.jobs import assert_failure_logged, break_clock, statuses

DAY = 86400


def _try_debit(w: World, from_account: str, to_account: str, amount: int, authorization=None):
    """Another product (or a careless caller) asks the core-banking port to debit escrow money."""
    with w.app.state.database.transaction() as session:
        return accounts.get_core_banking().transfer(
            session, w.operator.tenant_id, from_account_id=from_account, to_account_id=to_account,
            amount_fen=amount, journal_ref=f"rogue:{RNG.randrange(10**9)}", reference_type="rogue",
            reference_id="x", authorization=authorization)


def _assert_debits_refused(w: World, sub: dict, pending: dict | None = None) -> None:
    ledger_id = sub["ledger_account_id"]
    before = w.balance(ledger_id)
    with pytest.raises(DebitRestricted):
        _try_debit(w, ledger_id, w.beneficiary, 100)
    with pytest.raises(EscrowDebitRefused):
        _try_debit(w, ledger_id, w.beneficiary, 100, authorization={"egov_release_instruction": "erel_x"})
    if pending is not None:  # a real instruction, but not approved (and not this transfer)
        with pytest.raises(EscrowDebitRefused):
            _try_debit(w, ledger_id, w.beneficiary, int(pending["amount"]["amount"].replace(".", "")),
                       authorization={"egov_release_instruction": pending["id"]})
    with w.app.state.database.transaction() as session:  # the accounts product's own transfer
        record = accounts.create_transfer(session, w.operator.tenant_id, from_account_id=ledger_id,
                                          to_account_id=w.beneficiary, amount_fen=100, actor="rogue")
        assert record.status == "failed" and record.failure_code == "debit_restricted"
        with pytest.raises(PaymentRefused):
            accounts.place_hold(session, w.operator.tenant_id, account_id=ledger_id, amount_fen=100,
                                hold_ref=f"rogue:{RNG.randrange(10**9)}", reference_type="rogue",
                                reference_id="x", authorization={"egov_release_instruction": "x"})
    assert w.balance(ledger_id) == before


def _assert_credits_refused(w: World, scheme: dict, sub: dict) -> None:
    """Money enters escrow only through the scheme's deposit route: a plain transfer into the
    sub-account or the scheme's escrow account is refused (recorded as a failed transfer whose
    message names the deposit route), and so is every credit another product could make
    through the core-banking port."""
    deposits = f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}/deposits"
    payer, other = w.account(fund=1000000), w.account()
    targets = (sub["ledger_account_id"], scheme["escrow_account_id"])
    before = [w.balance(target) for target in targets]
    for target in targets:
        response = w.operator.post("/v1/transfers", {
            "from_account_id": payer, "to_account_id": target,
            "amount": {"amount": "5000.00", "currency": "CNY"}})
        assert response.status_code == 201, response.text
        refused = response.json()
        assert (refused["status"], refused["failure_code"]) == ("failed", "escrow_credit_refused")
        assert "deposit" in refused["failure_message"]
        assert (deposits if target == sub["ledger_account_id"] else "/deposits") in \
            refused["failure_message"]
    tenant, core = w.operator.tenant_id, accounts.get_core_banking()
    with w.app.state.database.transaction() as session:
        def ref() -> str:
            return f"rogue:{RNG.randrange(10**9)}"

        with pytest.raises(EscrowCreditRefused):  # a payout, a chain-credit payment
            core.transfer(session, tenant, from_account_id=payer, to_account_id=targets[0],
                          amount_fen=100, journal_ref=ref(), reference_type="rogue",
                          reference_id="x")
        with pytest.raises(EscrowCreditRefused):  # posing as a deposit, without the scheme
            core.transfer(session, tenant, from_account_id=payer, to_account_id=targets[0],
                          amount_fen=100, journal_ref=ref(), reference_type="egov_escrow_deposit",
                          reference_id="edep_x")
        with pytest.raises(EscrowCreditRefused):  # a split (collection, chain credit)
            core.post_entry(session, tenant, legs=[Leg(payer, -300), Leg(targets[0], 200),
                                                   Leg(other, 100)],
                            journal_ref=ref(), reference_type="rogue", reference_id="x",
                            purpose="rogue")
        with pytest.raises(EscrowCreditRefused):  # money from another bank (an incoming transfer)
            accounts.deposit(session, tenant, targets[1], 100, journal_ref=ref())
        hold = core.place_hold(session, tenant, account_id=payer, amount_fen=300, hold_ref=ref(),
                               reference_type="rogue", reference_id="x")
        with pytest.raises(EscrowCreditRefused):  # a payroll item
            core.capture_hold(session, tenant, hold.id, to_account_id=targets[0],
                              journal_ref=ref(), amount_fen=100)
        outcomes = accounts.capture_hold_many(session, tenant, hold.id, [  # a payroll chunk
            Capture(journal_ref=ref(), to_account_id=targets[0], amount_fen=100),
            Capture(journal_ref=ref(), to_account_id=other, amount_fen=100)])
        assert [o.refusal for o in outcomes] == ["escrow_credit_refused", None]
    assert [w.balance(target) for target in targets] == before


def test_money_enters_escrow_only_through_its_deposits(app, http, partner):
    """A transfer into a sub-account would skip the tuition cap, the deposit record and its
    evidence, and leave money no release or refund could reach: it is refused, and the
    sub-account's figures stay the ledger's through a release (never negative)."""
    w = world(app, http, partner, kinds=("tuition", "bid_deposit"))
    scheme = w.scheme({"kind": "tuition", "required_approvals": 1, "max_classes": 48})
    student = w.sub_account(scheme, "STU-2", holder="刘小红", total_classes=10,
                            tuition={"amount": "1000.00", "currency": "CNY"})
    _assert_credits_refused(w, scheme, student)
    family = w.account(fund=500000, person=True, name="刘大红")
    assert w.deposit(scheme, student, family, "1000.00").status_code == 201  # the way in
    pending = w.instruct(scheme, student, classes=10).json()
    assert w.decide(pending, "u1").json()["status"] == "executed"
    state = w.sub(scheme, student)
    assert (state["balance"]["amount"], state["status"]) == ("0.00", "completed")
    assert w.balance(student["ledger_account_id"]) == 0
    assert w.operator.get(f"/v1/egov/escrow-schemes/{scheme['id']}").json()["balance"][
        "amount"] == "0.00"

    bids = w.scheme({"kind": "bid_deposit", "required_approvals": 1,
                     "deposit": {"amount": "500.00", "currency": "CNY"}, "refund_days": 5})
    bidder = w.sub_account(bids, "BID-1", holder="甲建设有限公司")
    _assert_credits_refused(w, bids, bidder)  # "once, exactly the deposit" holds
    assert w.deposit(bids, bidder, w.account(fund=100000), "500.00").status_code == 201


# --- tuition ------------------------------------------------------------------------------

def test_tuition_released_as_classes_are_consumed_refunded_on_withdrawal(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "tuition", "required_approvals": 2, "max_classes": 48})
    assert scheme["status"] == "active" and scheme["balance"]["amount"] == "0.00"
    problem(w.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts",
                            {"reference": "S-BIG", "holder_name": "学员", "total_classes": 49,
                             "tuition": {"amount": "1.00", "currency": "CNY"}}), 422, "invalid_terms")
    student = w.sub_account(scheme, "STU-001", holder="王小明", total_classes=10,
                            tuition={"amount": "3000.00", "currency": "CNY"})
    assert student["holder_name"] == "王**"
    family = w.account(fund=500000, person=True, name="王大明")
    assert w.deposit(scheme, student, family, "3000.00").status_code == 201
    problem(w.deposit(scheme, student, family, "0.01"), 422, "deposit_exceeds_terms")
    assert w.sub(scheme, student)["balance"]["amount"] == "3000.00"

    advance(app, partner.tenant_id, 7 * DAY)
    created = w.instruct(scheme, student, classes=4, reason="第1-4课时")
    assert created.status_code == 201, created.text
    pending = created.json()
    assert pending["status"] == "pending_approval" and pending["amount"]["amount"] == "1200.00"
    assert pending["required_approvals"] == 2

    # Without the regulator's approval no debit goes through, whoever asks.
    _assert_debits_refused(w, student, pending)

    first = w.decide(pending, "u1")
    assert first.status_code == 200 and first.json()["status"] == "pending_approval"
    problem(w.decide(pending, "u1"), 409, "duplicate_approver")
    assert w.balance(w.beneficiary) == 0
    done = w.decide(pending, "u2", regulator=w.colleague).json()
    assert done["status"] == "executed" and done["journal_entry_id"]
    assert [a["approver_id"] for a in done["approvals"]] == ["u1", "u2"]
    assert w.balance(w.beneficiary) == 120000
    state = w.sub(scheme, student)
    assert state["consumed_classes"] == 4 and state["balance"]["amount"] == "1800.00"
    problem(w.decide(pending, "u3"), 409, "invalid_state")

    # Beyond the policy: more classes than remain (6 left).
    before = len(w.instructions(scheme))
    problem(w.instruct(scheme, student, classes=7), 422, "release_exceeds_policy")
    problem(w.instruct(scheme, student, classes=2, amount="601.00"), 422, "amount_mismatch")
    assert len(w.instructions(scheme)) == before and w.balance(student["ledger_account_id"]) == 180000

    advance(app, partner.tenant_id, 7 * DAY)
    second = w.instruct(scheme, student, classes=3).json()
    assert second["amount"]["amount"] == "900.00"
    w.decide(second, "u1")
    assert w.decide(second, "u2", regulator=w.colleague).json()["status"] == "executed"

    # The student leaves: the three unconsumed classes go back to whoever paid, once the
    # regulator approved the refund like any money leaving escrow.
    advance(app, partner.tenant_id, 2 * DAY)
    left = w.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{student['id']}/withdraw",
                           {"reason": "转学"})
    assert left.status_code == 200, left.text
    assert left.json()["status"] == "open" and left.json()["balance"]["amount"] == "900.00"
    refund = [i for i in w.instructions(scheme) if i["kind"] == "refund"][0]
    assert refund["status"] == "pending_approval" and not refund["approved_by_policy"]
    assert refund["required_approvals"] == 2 and refund["destination_account_id"] == family
    _assert_debits_refused(w, student, refund)
    assert w.balance(family) == 500000 - 300000
    w.decide(refund, "u1")
    assert w.decide(refund, "u2", regulator=w.colleague).json()["status"] == "executed"
    state = w.sub(scheme, student)
    assert state["status"] == "withdrawn" and state["balance"]["amount"] == "0.00"
    assert w.balance(family) == 500000 - 300000 + 90000
    assert w.balance(w.beneficiary) == 210000
    problem(w.instruct(scheme, student, classes=1), 409, "sub_account_closed")


@given(total=st.integers(1, 200), tuition=st.integers(1, 10**9),
       splits=st.lists(st.integers(1, 20), max_size=30))
@settings(max_examples=200, deadline=None)
def test_class_releases_add_up_to_the_tuition(total, tuition, splits):
    terms = {"total_classes": total, "tuition_fen": tuition}
    done, paid = 0, 0
    for n in splits:
        if done + n > total:
            break
        paid += _class_value(terms, done + n) - _class_value(terms, done)
        done += n
    paid += _class_value(terms, total) - _class_value(terms, done)
    assert paid == tuition


# --- pre-sale housing -----------------------------------------------------------------------

def test_presale_funds_released_by_milestone_within_each_share(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "presale_housing", "required_approvals": 1, "milestones": [
        {"code": "foundation", "name": "基础完工", "share_percent": "30"},
        {"code": "topped", "name": "主体结构封顶", "share_percent": "40"},
        {"code": "completed", "name": "竣工验收", "share_percent": "30"}]})
    problem(w.operator.post("/v1/egov/escrow-schemes", {
        "reference": "BAD", "name": "x", "regulator_partner_id": w.regulator.partner_id,
        "holder_name": "开发商", "holder_uscc": generate_uscc(RNG), "beneficiary_account_id": w.beneficiary,
        "policy": {"kind": "presale_housing", "milestones": [
            {"code": "a", "name": "a", "share_percent": "60"},
            {"code": "b", "name": "b", "share_percent": "50"}]}}), 422, "validation_failed")
    building = w.sub_account(scheme, "PERMIT-2026-017", holder="3号楼",
                             supervised_total={"amount": "10000000.00", "currency": "CNY"})
    buyer_a = w.account(fund=700000000, person=True, name="赵一")
    buyer_b = w.account(fund=400000000, person=True, name="钱二")
    assert w.deposit(scheme, building, buyer_a, "6000000.00").status_code == 201
    assert w.deposit(scheme, building, buyer_b, "4000000.00").status_code == 201

    advance(app, partner.tenant_id, 90 * DAY)
    foundation = w.instruct(scheme, building, amount="3000000.00", milestone="foundation").json()
    _assert_debits_refused(w, building, foundation)
    assert w.decide(foundation, "inspector-1").json()["status"] == "executed"
    assert w.balance(w.beneficiary) == 300000000

    problem(w.instruct(scheme, building, amount="0.01", milestone="foundation"), 422,
            "release_exceeds_policy")
    problem(w.instruct(scheme, building, amount="4000000.01", milestone="topped"), 422,
            "release_exceeds_policy")
    problem(w.instruct(scheme, building, amount="1.00", milestone="roof"), 422, "milestone_required")

    advance(app, partner.tenant_id, 120 * DAY)
    early = w.instruct(scheme, building, amount="2000000.00", milestone="topped").json()
    rejected = w.decide(early, "inspector-1", "reject").json()
    assert rejected["status"] == "rejected" and w.balance(w.beneficiary) == 300000000
    topped = w.instruct(scheme, building, amount="4000000.00", milestone="topped").json()
    assert w.decide(topped, "inspector-2").json()["status"] == "executed"
    assert w.balance(w.beneficiary) == 700000000

    # A buyer cancels: the refund goes back only to an account that paid in.
    stranger = w.account()
    problem(w.instruct(scheme, building, kind="refund", amount="100.00",
                       destination_account_id=stranger), 422, "release_exceeds_policy")
    problem(w.instruct(scheme, building, kind="refund", amount="4000000.01",
                       destination_account_id=buyer_b), 422, "release_exceeds_policy")
    refund = w.instruct(scheme, building, kind="refund", amount="1000000.00",
                        destination_account_id=buyer_b).json()
    assert refund["status"] == "pending_approval" and not refund["approved_by_policy"]
    assert w.balance(buyer_b) == 0
    assert w.decide(refund, "inspector-1").json()["status"] == "executed"
    assert w.balance(buyer_b) == 400000000 - 400000000 + 100000000
    # The rest (2,000,000) exceeds what is left in the account only for the completion share.
    problem(w.instruct(scheme, building, amount="2000000.01", milestone="completed"), 409,
            "insufficient_escrow_balance")
    assert w.sub(scheme, building)["balance"]["amount"] == "2000000.00"


# --- bid deposits -----------------------------------------------------------------------------

def test_bid_deposits_losers_refunded_automatically_after_award(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "bid_deposit", "required_approvals": 1,
                       "deposit": {"amount": "50000.00", "currency": "CNY"}, "refund_days": 5})
    assert scheme["policy"]["deposit"] == {"amount": "50000.00", "currency": "CNY"}
    bidders = {}
    for name in ("甲建设", "乙建设", "丙建设"):
        account = w.account(fund=10000000, name=f"{name}有限公司")
        sub = w.sub_account(scheme, f"BID-{name.encode().hex()[:8]}", holder=f"{name}有限公司")
        bidders[name] = (sub, account)
    assert bidders["甲建设"][0]["holder_name"] == "甲建设有限公司"  # a company is not masked
    sub, account = bidders["甲建设"]
    problem(w.deposit(scheme, sub, account, "49999.99"), 422, "deposit_exceeds_terms")
    for sub, account in bidders.values():
        assert w.deposit(scheme, sub, account, "50000.00").status_code == 201
    problem(w.deposit(scheme, sub, account, "50000.00"), 422, "deposit_exceeds_terms")
    problem(w.instruct(scheme, bidders["甲建设"][0], amount="50000.00"), 409, "tender_not_awarded")
    _assert_debits_refused(w, bidders["乙建设"][0])

    advance(app, partner.tenant_id, 10 * DAY)
    winner = bidders["甲建设"][0]
    awarded = w.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/award",
                              {"winner_sub_account_id": winner["id"]})
    assert awarded.status_code == 200, awarded.text
    assert awarded.json()["awarded_sub_account_id"] == winner["id"]
    problem(w.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/award",
                            {"winner_sub_account_id": winner["id"]}), 409, "tender_awarded")
    refunds = [i for i in w.instructions(scheme) if i["kind"] == "refund"]
    assert len(refunds) == 2 and all(i["status"] == "approved" and i["due_by"] for i in refunds)
    # Beyond the policy: a losing bidder's deposit is never released to the tenderer.
    problem(w.instruct(scheme, bidders["乙建设"][0], amount="1.00"), 422, "release_exceeds_policy")

    advance(app, partner.tenant_id, 1 * DAY)
    assert run_jobs(app, "egov.escrow_refunds") == {"egov.escrow_refunds": 2}
    assert run_jobs(app, "egov.escrow_refunds") == {"egov.escrow_refunds": 0}
    for name in ("乙建设", "丙建设"):
        sub, account = bidders[name]
        assert w.balance(account) == 10000000 and w.sub(scheme, sub)["status"] == "refunded"
    for refund in w.instructions(scheme):
        if refund["kind"] == "refund":
            assert refund["status"] == "executed" and refund["executed_at"] <= refund["due_by"]

    release = w.instruct(scheme, winner, amount="50000.00", reason="转为履约保证金").json()
    assert release["status"] == "pending_approval"
    assert w.decide(release, "u1").json()["status"] == "executed"
    assert w.balance(w.beneficiary) == 5000000
    assert w.sub(scheme, winner)["status"] == "completed"
    problem(w.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts",
                            {"reference": "LATE", "holder_name": "丁建设"}), 409, "tender_awarded")


# --- court funds ------------------------------------------------------------------------------

def _court_case(w, reference: str, *, approvals: int, fund: int, deposit: str):
    """A court-funds scheme with one case into which a defendant has paid `deposit`."""
    scheme = w.scheme({"kind": "court_funds", "required_approvals": approvals}, beneficiary=False,
                      holder_name="某区人民法院", holder_uscc=generate_uscc(RNG, prefix="11"))
    case = w.sub_account(scheme, reference, holder="张某某")
    defendant = w.account(fund=fund, name="被执行人有限公司")
    plaintiff = w.account(person=True, name="申请人")
    assert w.deposit(scheme, case, defendant, deposit).status_code == 201
    return scheme, case, defendant, plaintiff


def test_court_funds_move_only_by_court_order_with_two_approvals(app, http, partner):
    w = world(app, http, partner)
    scheme, case, defendant, plaintiff = _court_case(
        w, "(2026)沪0115执1234号", approvals=2, fund=30000000, deposit="200000.00")

    advance(app, partner.tenant_id, 30 * DAY)
    problem(w.instruct(scheme, case, amount="150000.00", destination_account_id=plaintiff), 422,
            "court_order_required")
    order = {"number": "(2026)沪0115执1234号", "issued_on": "2026-12-01"}
    problem(w.instruct(scheme, case, amount="200000.01", destination_account_id=plaintiff,
                       court_order=order), 409, "insufficient_escrow_balance")
    pending = w.instruct(scheme, case, amount="150000.00", destination_account_id=plaintiff,
                         court_order=order).json()
    assert pending["basis"]["court_order"]["number"] == "(2026)沪0115执1234号"
    # A second instruction cannot promise the same money twice.
    problem(w.instruct(scheme, case, amount="60000.00", destination_account_id=plaintiff,
                       court_order=order), 409, "insufficient_escrow_balance")
    _assert_debits_refused(w, case, pending)
    w.decide(pending, "judge-1")
    assert w.balance(plaintiff) == 0
    assert w.decide(pending, "judge-2", regulator=w.colleague).json()["status"] == "executed"
    assert w.balance(plaintiff) == 15000000

    # Even the refund of the rest to the depositor needs the court.
    problem(w.instruct(scheme, case, kind="refund", amount="50000.00"), 422, "court_order_required")
    refund = w.instruct(scheme, case, kind="refund", amount="50000.00",
                        court_order={"number": "(2026)沪0115执1234号之一", "issued_on": "2026-12-20"}).json()
    assert refund["status"] == "pending_approval" and not refund["approved_by_policy"]
    w.decide(refund, "judge-1")
    assert w.decide(refund, "judge-2", regulator=w.colleague).json()["status"] == "executed"
    assert w.balance(defendant) == 30000000 - 20000000 + 5000000
    assert w.sub(scheme, case)["balance"]["amount"] == "0.00"


def test_a_court_order_dated_after_today_is_refused(app, http, partner):
    """Today is the tenant's business date on its (sandbox test) clock: an order dated the day
    after cannot have been issued; one dated today can."""
    w = world(app, http, partner, kinds=("court_funds",))
    scheme, case, _, plaintiff = _court_case(w, "2026-HU0115-ZHI-9", approvals=1, fund=100000,
                                             deposit="1000.00")
    advance(app, partner.tenant_id, 3 * DAY)  # today moves with the test clock
    today = partner.get("/sandbox/v1/clock").json()["now"]
    today = datetime.fromisoformat(today.replace("Z", "+00:00")).astimezone(SHANGHAI).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    for kind, extra in (("release", {"destination_account_id": plaintiff}), ("refund", {})):
        for issued_on in (tomorrow, "2099-01-01"):
            refused = problem(w.instruct(scheme, case, kind=kind, amount="100.00",
                                         court_order={"number": "x", "issued_on": issued_on}, **extra),
                              422, "court_order_in_future")
            assert refused["errors"][0]["field"] == "body.court_order.issued_on"
            assert today.isoformat() in refused["detail"]
    assert w.instructions(scheme) == []
    accepted = w.instruct(scheme, case, amount="100.00", destination_account_id=plaintiff,
                          court_order={"number": "x", "issued_on": today.isoformat()})
    assert accepted.status_code == 201, accepted.text


# --- who may do what ----------------------------------------------------------------------

def test_regulators_see_and_decide_only_their_schemes(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    problem(partner.post("/v1/egov/escrow-schemes", {
        "reference": "X", "name": "x", "regulator_partner_id": w.regulator.partner_id,
        "holder_name": "法院", "holder_uscc": generate_uscc(RNG),
        "policy": {"kind": "court_funds"}}), 422, "regulator_not_recognised")
    unknown = new_partner_client(app, http, scopes=["egov:supervise"])
    problem(partner.post("/v1/egov/escrow-schemes", {
        "reference": "Y", "name": "y", "regulator_partner_id": unknown.partner_id,
        "holder_name": "机构", "holder_uscc": generate_uscc(RNG), "beneficiary_account_id": w.beneficiary,
        "policy": {"kind": "tuition"}}), 422, "regulator_not_recognised")
    assert partner.get("/v1/egov/escrow-schemes").json()["data"] == []

    scheme = w.scheme({"kind": "tuition"})
    student = w.sub_account(scheme, "S1", total_classes=2, tuition={"amount": "200.00", "currency": "CNY"})
    w.deposit(scheme, student, w.account(fund=20000), "200.00")
    pending = w.instruct(scheme, student, classes=1).json()

    mine = w.regulator.get("/v1/egov/supervision/escrow-schemes").json()["data"]
    assert [s["id"] for s in mine] == [scheme["id"]]
    queue = w.regulator.get("/v1/egov/supervision/release-instructions?status=pending_approval")
    assert [i["id"] for i in queue.json()["data"]] == [pending["id"]]

    other = new_partner_client(app, http, scopes=["egov:supervise"])
    recognise(w.ops, other.partner_id, ["tuition"])
    problem(other.get(f"/v1/egov/supervision/escrow-schemes/{scheme['id']}"), 404, "escrow_scheme_not_found")
    problem(w.decide(pending, "x", regulator=other), 404, "release_instruction_not_found")
    assert other.get("/v1/egov/supervision/release-instructions").json()["data"] == []
    # The operator cannot approve its own release.
    problem(partner.post(f"/v1/egov/supervision/release-instructions/{pending['id']}/decisions",
                         {"approver_id": "me", "approver_name": "me", "decision": "approve"}),
            403, "insufficient_scope")
    # Another tenant does not see the scheme; a partner cannot recognise regulators.
    stranger = new_partner_client(app, http)
    problem(stranger.get(f"/v1/egov/escrow-schemes/{scheme['id']}"), 404, "escrow_scheme_not_found")
    problem(partner.post("/v1/operations/egov/regulators",
                         {"partner_id": partner.partner_id, "name": "x", "kinds": ["tuition"]}), 403)
    listed = w.ops.get("/v1/operations/egov/regulators").json()["data"]
    assert {r["partner_id"] for r in listed} == {w.regulator.partner_id, other.partner_id}

    cancelled = partner.post(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions/"
                             f"{pending['id']}/cancel", {})
    assert cancelled.json()["status"] == "cancelled"
    problem(w.decide(pending, "u1"), 409, "invalid_state")
    assert w.balance(student["ledger_account_id"]) == 20000


# --- evidence -------------------------------------------------------------------------------

def test_escrow_evidence_bundle_verifies_offline(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 1}, beneficiary=False)
    case = w.sub_account(scheme, "CASE-1", holder="李某")
    payer = w.account(fund=100000)
    payee = w.account()
    w.deposit(scheme, case, payer, "1000.00")
    ins = w.instruct(scheme, case, amount="400.00", destination_account_id=payee,
                     court_order={"number": "(2026)京0105民初1号", "issued_on": "2026-11-01"}).json()
    w.decide(ins, "judge")

    key = http.get("/v1/evidence/public-key").text.strip()
    own = f"/v1/egov/escrow-schemes/{scheme['id']}/evidence-bundle"
    supervised = f"/v1/egov/supervision/escrow-schemes/{scheme['id']}/evidence-bundle"
    for client, path in ((w.operator, own), (w.regulator, supervised)):
        response = client.get(path)
        assert response.status_code == 200, response.text
        bundle = response.json()
        EscrowBundleOut.model_validate(bundle)  # the document's shape
        fields = verify_bundle(json.loads(json.dumps(bundle)), key)
        types = [f["type"] for f in fields if f["kind"] == "event"]
        for expected in ("escrow_scheme.created", "escrow_sub_account.opened", "escrow_deposit.received",
                         "release_instruction.created", "release_instruction.decision_recorded",
                         "release_instruction.approved", "release_instruction.executed"):
            assert expected in types, (expected, types)
        executed = [e for e in bundle["events"].values() if e["type"] == "release_instruction.executed"]
        assert executed[0]["data"]["amount"] == {"amount": "400.00", "currency": "CNY"}
        assert "李某" not in json.dumps(bundle, ensure_ascii=False)

    tampered = copy.deepcopy(bundle)
    event_id = next(k for k, v in tampered["events"].items() if v["type"] == "release_instruction.executed")
    tampered["events"][event_id]["data"]["amount"]["amount"] = "40.00"
    with pytest.raises(BundleInvalid, match="does not match its digest"):
        verify_bundle(tampered, key)
    forged = copy.deepcopy(bundle)
    entry = json.loads(base64.b64decode(forged["entries"][0]["canonical"]))
    entry["time"] = datetime(2020, 1, 1).isoformat()
    forged["entries"][0]["canonical"] = base64.b64encode(json.dumps(entry).encode()).decode()
    with pytest.raises(BundleInvalid):
        verify_bundle(forged, key)
    with pytest.raises(BundleInvalid, match="checkpoint"):
        verify_bundle(bundle, key.replace(key.split("+")[-1][:4], "AAAA"))


def test_concurrent_instructions_and_approvals_never_overspend(app, http, partner):
    import threading

    from starlette.testclient import TestClient

    from tests.tools.api import PartnerClient

    w = world(app, http, partner)
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 2}, beneficiary=False)
    case = w.sub_account(scheme, "CASE-C", holder="当事人")
    w.deposit(scheme, case, w.account(fund=100000), "1000.00")
    payee = w.account()
    order = {"number": "(2026)沪0101执1号", "issued_on": "2026-11-01"}
    statuses: list[int] = []

    def as_client(pc: PartnerClient, client: TestClient) -> PartnerClient:
        return PartnerClient(http=client, client_id=pc.client_id, partner_id=pc.partner_id,
                             tenant_id=pc.tenant_id, secret=pc.secret, scopes=pc.scopes, _token=pc.token)

    def instruct() -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            mine = World(app, http, as_client(w.operator, client), w.regulator, w.ops, w.beneficiary)
            statuses.append(mine.instruct(scheme, case, amount="600.00", destination_account_id=payee,
                                          court_order=order).status_code)

    threads = [threading.Thread(target=instruct) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409, 409], statuses
    pending = [i for i in w.instructions(scheme) if i["status"] == "pending_approval"]
    assert len(pending) == 1

    decisions: list[int] = []

    def approve(approver: str, user: PartnerClient) -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            decisions.append(w.decide(pending[0], approver, regulator=as_client(user, client)).status_code)

    assert w.colleague is not None
    users = [w.regulator, w.colleague, regulator_user(app, http, w.regulator)]
    threads = [threading.Thread(target=approve, args=(f"judge-{n}", user)) for n, user in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = w.operator.get(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions/"
                           f"{pending[0]['id']}").json()
    assert final["status"] == "executed"
    assert w.balance(payee) == 60000 and w.balance(case["ledger_account_id"]) == 40000
    assert decisions.count(200) == 2 and all(d in (200, 409) for d in decisions), decisions


# --- money leaves only with the regulator's approvals (audit 11) ------------------------------

def test_presale_refund_of_the_whole_balance_waits_for_two_regulator_users(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "presale_housing", "required_approvals": 2, "milestones": [
        {"code": "A", "name": "开工", "share_percent": "30"},
        {"code": "B", "name": "封顶", "share_percent": "70"}]})
    building = w.sub_account(scheme, "PERMIT-X", holder="1号楼",
                             supervised_total={"amount": "10000.00", "currency": "CNY"})
    developer = w.account(fund=1000000, name="开发商自有账户")
    assert w.deposit(scheme, building, developer, "10000.00").status_code == 201
    problem(w.instruct(scheme, building, amount="3000.01", milestone="A"), 422, "release_exceeds_policy")

    # A refund to the depositing account would otherwise sidestep the milestone caps.
    problem(w.instruct(scheme, building, kind="refund", amount="10000.01",
                       destination_account_id=developer), 422, "release_exceeds_policy")
    created = w.instruct(scheme, building, kind="refund", amount="10000.00",
                         destination_account_id=developer)
    assert created.status_code == 201, created.text
    refund = created.json()
    assert refund["status"] == "pending_approval" and not refund["approved_by_policy"]
    assert refund["required_approvals"] == 2 and refund["approvals"] == []
    assert w.balance(developer) == 0 and w.sub(scheme, building)["balance"]["amount"] == "10000.00"
    _assert_debits_refused(w, building, refund)

    assert w.decide(refund, "inspector-1").json()["status"] == "pending_approval"
    assert w.balance(developer) == 0
    done = w.decide(refund, "inspector-2", regulator=w.colleague).json()
    assert done["status"] == "executed" and w.balance(developer) == 1000000
    assert w.sub(scheme, building)["balance"]["amount"] == "0.00"


def test_a_refund_the_regulator_rejects_never_leaves_escrow(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "bid_deposit", "required_approvals": 1,
                       "deposit": {"amount": "100.00", "currency": "CNY"}})
    bidder = w.sub_account(scheme, "BID-1", holder="甲建设有限公司")
    account = w.account(fund=10000)
    w.deposit(scheme, bidder, account, "100.00")
    refund = w.instruct(scheme, bidder, kind="refund", amount="100.00").json()
    assert refund["status"] == "pending_approval" and refund["required_approvals"] == 1
    assert w.decide(refund, "u1", "reject").json()["status"] == "rejected"
    assert w.balance(account) == 0 and w.balance(bidder["ledger_account_id"]) == 10000


def test_two_approvals_from_one_regulator_credential_count_once(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 2}, beneficiary=False)
    case = w.sub_account(scheme, "CASE-2", holder="张某")
    w.deposit(scheme, case, w.account(fund=100000), "1000.00")
    payee = w.account()
    pending = w.instruct(scheme, case, amount="1000.00", destination_account_id=payee,
                         court_order={"number": "(2026)沪0115执9号", "issued_on": "2026-12-01"}).json()

    assert w.decide(pending, "u1").json()["status"] == "pending_approval"
    # The same client naming another approver is the same regulator user.
    body = problem(w.decide(pending, "u2"), 409, "duplicate_approver")
    assert body["client_id"] == w.regulator.client_id
    problem(w.decide(pending, "u2", "reject"), 409, "duplicate_approver")
    assert w.balance(payee) == 0
    # Another regulator user cannot reuse the first user's label either (labels are not identities).
    problem(w.decide(pending, "u1", regulator=w.colleague), 409, "duplicate_approver")

    assert w.colleague is not None
    done = w.decide(pending, "u2", regulator=w.colleague).json()
    assert done["status"] == "executed" and w.balance(payee) == 100000
    assert [a["client_id"] for a in done["approvals"]] == [w.regulator.client_id, w.colleague.client_id]


def test_withdrawn_recognition_stops_a_regulators_decisions(app, http, partner):
    w = world(app, http, partner)
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 1}, beneficiary=False)
    case = w.sub_account(scheme, "CASE-3", holder="李某")
    w.deposit(scheme, case, w.account(fund=100000), "1000.00")
    payee = w.account()
    pending = w.instruct(scheme, case, amount="500.00", destination_account_id=payee,
                         court_order={"number": "(2026)沪0115执10号", "issued_on": "2026-12-01"}).json()

    # Operations narrows the recognition to tuition: an update, so 200.
    narrowed = w.ops.post("/v1/operations/egov/regulators",
                          {"partner_id": w.regulator.partner_id, "name": "某区教育局", "kinds": ["tuition"]})
    assert narrowed.status_code == 200 and narrowed.json()["kinds"] == ["tuition"], narrowed.text
    problem(w.decide(pending, "judge-1"), 403, "supervision_withdrawn")
    problem(w.decide(pending, "judge-1", regulator=w.colleague), 403, "supervision_withdrawn")
    assert w.balance(payee) == 0
    # Reading stays possible: the regulator keeps sight of what it supervised and decided.
    queue = w.regulator.get("/v1/egov/supervision/release-instructions?status=pending_approval").json()
    assert [i["id"] for i in queue["data"]] == [pending["id"]]

    recognise(w.ops, w.regulator.partner_id, ["tuition", "court_funds"], status=200)
    assert w.decide(pending, "judge-1").json()["status"] == "executed"
    assert w.balance(payee) == 50000


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_its_refunds_does_not_stop_the_others(app, http, caplog):
    """The refund job serves each tenant on its own: a tenant whose run fails (its clock cannot
    be read) is logged with its id and left to the next run; the others are refunded."""
    operators = sorted((new_partner_client(app, http) for _ in range(2)),
                       key=lambda client: client.tenant_id)
    refunds = {}
    for operator in operators:
        w = world(app, http, operator, kinds=("bid_deposit",))
        scheme = w.scheme({"kind": "bid_deposit", "required_approvals": 1,
                           "deposit": {"amount": "500.00", "currency": "CNY"}, "refund_days": 5})
        subs = []
        for name in ("甲建设", "乙建设"):
            sub = w.sub_account(scheme, f"BID-{name.encode().hex()[:8]}", holder=f"{name}有限公司")
            assert w.deposit(scheme, sub, w.account(fund=50000), "500.00").status_code == 201
            subs.append(sub)
        awarded = operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/award",
                                {"winner_sub_account_id": subs[0]["id"]})
        assert awarded.status_code == 200, awarded.text
        [refund] = [i for i in w.instructions(scheme) if i["kind"] == "refund"]
        assert refund["status"] == "approved"
        refunds[operator.tenant_id] = refund["id"]
    stuck, served = (operator.tenant_id for operator in operators)
    break_clock(app.state.database, stuck)

    with caplog.at_level(logging.ERROR):
        assert run_jobs(app, "egov.escrow_refunds") == {"egov.escrow_refunds": 1}
    assert statuses(app.state.database, ReleaseInstruction, refunds) == {
        stuck: "approved", served: "executed"}
    assert_failure_logged(caplog, stuck)
