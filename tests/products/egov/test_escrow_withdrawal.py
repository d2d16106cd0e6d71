"""A tuition withdrawal answers with the refund instructions it made, not only the (still
unchanged) sub-account: the refunds wait for the regulator, and the caller must be able to
follow them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from products.egov.escrow import pro_rata
from tests.products.egov.escrow_support import world
from tests.tools.api import problem


def _withdraw(w, scheme, sub, **body):
    return w.operator.post(
        f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}/withdraw", body)


def test_withdrawal_answers_with_its_pending_refunds(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    scheme = w.scheme({"kind": "tuition", "required_approvals": 1, "max_classes": 48})
    student = w.sub_account(scheme, "STU-7", total_classes=10,
                            tuition={"amount": "3000.00", "currency": "CNY"})
    mother = w.account(fund=500000, person=True, name="王大明")
    father = w.account(fund=500000, person=True, name="王二明")
    assert w.deposit(scheme, student, mother, "1000.00").status_code == 201
    assert w.deposit(scheme, student, father, "2000.00").status_code == 201
    released = w.instruct(scheme, student, classes=2).json()  # 600.00 to the school
    assert w.decide(released, "u1").json()["status"] == "executed"

    left = _withdraw(w, scheme, student, reason="转学")
    assert left.status_code == 200, left.text
    body = left.json()
    # The sub-account itself is unchanged until the refunds execute ...
    assert body["id"] == student["id"] and body["status"] == "open"
    assert body["balance"] == {"amount": "2400.00", "currency": "CNY"}
    # ... and the answer says what now waits for the regulator: one refund per depositor, pro
    # rata to what each paid in (1000 : 2000 of the 2400.00 left).
    refunds = body["refund_instructions"]
    assert {r["destination_account_id"]: r["amount"]["amount"] for r in refunds} \
        == {mother: "800.00", father: "1600.00"}
    for refund in refunds:
        assert refund["id"].startswith("erel_") and refund["kind"] == "refund"
        assert refund["status"] == "pending_approval" and refund["required_approvals"] == 1
        assert refund["sub_account_id"] == student["id"] and refund["approvals"] == []
        assert w.operator.get(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions/"
                              f"{refund['id']}").json() == refund
    assert sorted(r["id"] for r in refunds) == sorted(
        i["id"] for i in w.instructions(scheme) if i["kind"] == "refund")

    # Followed to the end: the last approval withdraws the sub-account.
    for refund in refunds:
        assert w.decide(refund, "u1").json()["status"] == "executed"
    state = w.sub(scheme, student)
    assert state["status"] == "withdrawn" and state["balance"]["amount"] == "0.00"
    problem(_withdraw(w, scheme, student), 409)


def test_withdrawal_with_nothing_to_refund_lists_none(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    scheme = w.scheme({"kind": "tuition", "required_approvals": 2, "max_classes": 48})
    student = w.sub_account(scheme, "STU-8", total_classes=4,
                            tuition={"amount": "400.00", "currency": "CNY"})
    left = _withdraw(w, scheme, student)
    assert left.status_code == 200, left.text
    assert left.json()["status"] == "withdrawn" and left.json()["refund_instructions"] == []


def test_the_document_describes_the_refunds(app, http):
    operation = http.get("/openapi.json").json()["paths"][
        "/v1/egov/escrow-schemes/{scheme_id}/sub-accounts/{sub_account_id}/withdraw"]["post"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = http.get("/openapi.json").json()["components"]["schemas"][ref.rsplit("/", 1)[1]]
    field = schema["properties"]["refund_instructions"]
    assert field["items"]["$ref"].endswith("/InstructionOut") and "pending_approval" in \
        field["description"]
    assert "refund_instructions" in schema["required"]


def _split(refunds):
    return {r["destination_account_id"]: r["amount"]["amount"] for r in refunds}


def test_withdrawal_refunds_are_pro_rata_to_each_payers_deposits(app, http, partner):
    """QA S3: 600 + 400 paid, one class of three (333.33) consumed: each payer bears it in
    proportion, whichever account's id sorts first."""
    w = world(app, http, partner, kinds=("tuition",))
    scheme = w.scheme({"kind": "tuition", "required_approvals": 1, "max_classes": 48})
    student = w.sub_account(scheme, "STU-9", total_classes=3,
                            tuition={"amount": "1000.00", "currency": "CNY"})
    institution = w.account(fund=100000, name="示范机构有限公司")
    family = w.account(fund=100000, person=True, name="王大明")
    assert w.deposit(scheme, student, institution, "600.00").status_code == 201
    assert w.deposit(scheme, student, family, "400.00").status_code == 201
    released = w.instruct(scheme, student, classes=1).json()
    assert released["amount"]["amount"] == "333.33"
    assert w.decide(released, "u1").json()["status"] == "executed"

    left = _withdraw(w, scheme, student, reason="退学")
    assert left.status_code == 200, left.text
    refunds = left.json()["refund_instructions"]
    assert _split(refunds) == {institution: "400.00", family: "266.67"}
    for refund in refunds:
        assert w.decide(refund, "u1").json()["status"] == "executed"
    assert w.balance(institution) == 100000 - 60000 + 40000
    assert w.balance(family) == 100000 - 40000 + 26667
    state = w.sub(scheme, student)
    assert state["status"] == "withdrawn" and state["refunded"]["amount"] == "666.67"


def test_withdrawal_refunds_of_odd_fen_add_up_to_the_balance(app, http, partner):
    """Three equal payers, 200.00 left: 66.67 + 66.67 + 66.66 (largest remainder), exactly the
    balance."""
    w = world(app, http, partner, kinds=("tuition",))
    scheme = w.scheme({"kind": "tuition", "required_approvals": 1, "max_classes": 48})
    student = w.sub_account(scheme, "STU-10", total_classes=3,
                            tuition={"amount": "300.00", "currency": "CNY"})
    payers = [w.account(fund=10000, person=True, name=f"付款人{i}") for i in range(3)]
    for payer in payers:
        assert w.deposit(scheme, student, payer, "100.00").status_code == 201
    released = w.instruct(scheme, student, classes=1).json()
    assert w.decide(released, "u1").json()["status"] == "executed"

    refunds = _withdraw(w, scheme, student).json()["refund_instructions"]
    split = _split(refunds)
    assert set(split) == set(payers)
    assert sorted(split.values()) == ["66.66", "66.67", "66.67"]
    # Ties are broken by account id: the same answer every time.
    assert split[min(payers)] == "66.67" and split[max(payers)] == "66.66"
    for refund in refunds:
        assert w.decide(refund, "u1").json()["status"] == "executed"
    state = w.sub(scheme, student)
    assert state["status"] == "withdrawn" and state["balance"]["amount"] == "0.00"
    assert state["refunded"]["amount"] == "200.00"


@given(shares=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(1, 10**9),
                              min_size=1, max_size=6),
       fraction=st.fractions(0, 1))
@settings(max_examples=300, deadline=None)
def test_pro_rata_parts_add_up_and_stay_within_each_share(shares, fraction):
    total = int(sum(shares.values()) * fraction)
    parts = pro_rata(total, shares)
    assert sum(parts.values()) == total
    weight = sum(shares.values())
    for account, part in parts.items():
        assert 0 < part <= shares[account]
        assert abs(part * weight - total * shares[account]) < weight  # within a fen of exact
    # The order the depositors come in changes nothing.
    assert pro_rata(total, dict(reversed(list(shares.items())))) == parts
