"""The seeded collection mandate reaches every sandbox magic amount, and pays a park bill.

The README says mandate debits honour the magic amounts and that the seed creates the payer's
mandate; a developer tries them with the mandate sign-up lists, not one of their own. So its
limits must let every magic amount through to its documented outcome (not a 409
`mandate_limit_exceeded`), several times over, and let a seeded park bill be paid by it; and a
reset brings the same mandate back.
"""

from __future__ import annotations

from typing import Any

from gateway import jobs
from tests.tools.api import PartnerClient, sandbox_signup

MAGIC = {"4040.01": "insufficient_funds", "4040.02": "account_closed",
         "4040.03": "account_frozen", "4040.04": "name_mismatch"}


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def _debit(pc: PartnerClient, collection: dict[str, Any], amount: str, n: int) -> dict[str, Any]:
    response = pc.post("/v1/collection/orders", {
        "merchant_order_no": f"MAGIC-{amount}-{n}", "amount": _money(amount),
        "payer": {"method": "mandate", "mandate_id": collection["payer"]["mandate_id"]},
        "splits": [{"sub_merchant_id": collection["sub_merchants"][0], "amount": _money(amount)}]})
    assert response.status_code == 201, response.text
    return response.json()


def _expire_due(app: Any) -> None:
    jobs.run_all_once(app.state.database, only=["collection.expire_orders"])


def _ledger(pc: PartnerClient, account_id: str) -> str:
    return pc.get(f"/v1/accounts/{account_id}/balances").json()["ledger"]["amount"]


def test_every_magic_amount_works_with_the_seeded_mandate(app, http):
    pc, body = sandbox_signup(app, http)
    collection = body["seeded"]["collection"]
    payer_account = collection["payer"]["account_id"]
    funds = _ledger(pc, payer_account)
    mandate = pc.get(f"/v1/collection/mandates/{collection['payer']['mandate_id']}").json()
    # Every magic amount fits one debit, and the funds cover a debit up to the limit: an
    # insufficient_funds comes from the magic amount, not from the seed.
    assert float(mandate["per_debit_limit"]["amount"]) >= 4040.05
    assert float(funds) >= float(mandate["per_debit_limit"]["amount"])

    pending = []
    for n in range(3):
        for amount, code in MAGIC.items():
            order = _debit(pc, collection, amount, n)
            assert (order["status"], order["failure_code"]) == ("failed", code), order
        order = _debit(pc, collection, "4040.05", n)
        assert order["status"] == "pending", order
        pending.append(order["id"])
    assert pc.post("/sandbox/v1/clock/advance", {"seconds": 61}).status_code == 200
    _expire_due(app)
    for order_id in pending:
        order = pc.get(f"/v1/collection/orders/{order_id}").json()
        assert (order["status"], order["failure_code"]) == ("failed", "processing_failed"), order
    assert _ledger(pc, payer_account) == funds  # nothing moved

    # The same mandate pays the largest seeded park bill (the rent), and a debit besides.
    bills = [pc.get(f"/v1/collection/bills/{b}").json() for b in collection["park"]["bill_ids"]]
    rent = max(bills, key=lambda b: float(b["amount"]["amount"]))
    paid = pc.post(f"/v1/collection/bills/{rent['id']}/pay",
                   {"mandate_id": collection["payer"]["mandate_id"]})
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded", paid.text
    assert _debit(pc, collection, "99.00", 9)["status"] == "succeeded"

    # A reset gives back the same mandate, with its limits and funds.
    reset = pc.post("/sandbox/v1/reset")
    assert reset.status_code == 200, reset.text
    again = reset.json()["seeded"]["collection"]
    assert again["payer"] == collection["payer"]
    assert _ledger(pc, payer_account) == funds
    order = _debit(pc, again, "4040.01", 0)
    assert (order["status"], order["failure_code"]) == ("failed", "insufficient_funds")
