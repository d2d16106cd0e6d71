"""A tuition withdrawal answers with the refund instructions it made, not only the (still
unchanged) sub-account: the refunds wait for the regulator, and the caller must be able to
follow them."""

from __future__ import annotations

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
    # ... and the answer says what now waits for the regulator: one refund per depositor.
    refunds = body["refund_instructions"]
    assert {r["destination_account_id"]: r["amount"]["amount"] for r in refunds} \
        == {mother: "1000.00", father: "1400.00"}
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
