"""The sandbox seed: a new sandbox tenant finds a canteen and a park ready to use."""

from __future__ import annotations

from sqlalchemy.orm import Session

from products.collection.seed import seed_collection
from sandbox.fakedata import FakeData
from tests.products.collection.support import clearing_invariants, money, setup_platform


def test_seed_collection_creates_a_canteen_and_a_park(app, http):
    p = setup_platform(app, http, mandate=False)
    with p.database.transaction() as session:
        assert isinstance(session, Session)
        summary = seed_collection(session, p.tenant_id, FakeData(7))
    employer = summary["canteen"]["employer_id"]
    diners = p.get(f"/canteen/employers/{employer}/diners").json()["data"]
    assert len(diners) == 5
    assert all(d["subsidy_balance"] == money("300.00") for d in diners)
    assert all(d["personal_balance"] == money("100.00") for d in diners)
    park = summary["park"]["park_id"]
    bills = p.get(f"/parks/{park}/bills?limit=100").json()["data"]
    assert len(bills) == 9 and {b["status"] for b in bills} == {"open"}
    meal = p.post("/canteen/meals", {"merchant_order_no": "SEED-MEAL", "diner_id": diners[0]["id"],
                                     "amount": money("18.50"),
                                     "sub_merchant_id": summary["sub_merchants"][0]})
    assert meal.status_code == 201 and meal.json()["status"] == "succeeded"
    tenant = summary["park"]["tenants"][0]
    paid = p.post("/orders", {"merchant_order_no": "SEED-ORDER", "amount": money("99.00"),
                              "payer": {"method": "mandate",
                                        "mandate_id": summary["payer"]["mandate_id"]},
                              "splits": [{"sub_merchant_id": summary["sub_merchants"][0],
                                          "amount": money("99.00")}]})
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"
    assert tenant["virtual_account_number"]
    clearing_invariants(p)
