"""Sandbox magic values in mandate debits, as the magic-value table says them.

- 4040.05: the order stays pending with no failure code (as a pending transfer shows none),
  then fails `processing_failed` 60 s later on the tenant's clock.
- The payer name 户名不符, or one containing MISMATCH, fails the bank's name check with the
  code a transfer's name mismatch has (`name_mismatch`), for an order and for a park bill paid
  by mandate; nothing moves, and the mandate's month keeps its limit. Production never applies
  a magic value.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.products.collection.support import money, ref, setup_platform
from tests.products.collection.test_park import new_bill
from tests.products.collection.test_park_refunds import park_with_tenant


def _mandate(p, name: str) -> str:
    response = p.post("/mandates", {
        "reference": ref("MD"), "payer_name": name, "payer_account_id": p.payer_account,
        "per_debit_limit": money("50000.00"), "monthly_limit": money("1000000.00"),
        "expires_on": (p.today() + timedelta(days=365)).isoformat()})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_pending_magic_order_shows_no_failure_until_it_fails(app, http):
    p = setup_platform(app, http)
    pending = p.order("4040.05")
    assert (pending["status"], pending["failure_code"]) == ("pending", None), pending
    assert p.get(f"/orders/{pending['id']}").json()["failure_code"] is None
    created = p.pc.get("/v1/events?type=collection_order.created&limit=10").json()["data"]
    assert [e["data"]["failure_code"] for e in created if e["data"]["id"] == pending["id"]] \
        == [None]
    p.advance(30)
    p.run_jobs()
    assert p.get(f"/orders/{pending['id']}").json()["failure_code"] is None
    p.advance(31)
    p.run_jobs()
    failed = p.get(f"/orders/{pending['id']}").json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "processing_failed"), failed


@pytest.mark.parametrize("name", ["户名不符", "MISMATCH Co", "张mismatch伟"])
def test_a_magic_payer_name_fails_the_mandate_debit_as_a_transfer_does(app, http, name):
    p = setup_platform(app, http)
    mandate = _mandate(p, name)
    before, clearing = p.balance(p.payer_account), p.clearing()
    order = p.order("120.00", mandate_id=mandate)
    assert (order["status"], order["failure_code"]) == ("failed", "name_mismatch"), order
    assert order["failure_message"]
    assert (p.balance(p.payer_account), p.clearing()) == (before, clearing)
    # the refused debit did not use the month's limit
    assert p.get(f"/mandates/{mandate}").json()["debited_this_month"] == money("0.00")
    # a transfer's name mismatch has the same code
    payee = p.account()
    transfer = p.pc.post("/v1/transfers", {
        "from_account_id": p.payer_account, "to_account_id": payee, "amount": money("1.00"),
        "to_account_name": "不是这个户名"}).json()
    assert transfer["failure_code"] == order["failure_code"]
    # the refusing magic amounts keep their own codes
    assert p.order("4040.02", mandate_id=mandate)["failure_code"] == "account_closed"
    # the payer's account is fine: a mandate in another name debits it
    assert p.order("120.00")["status"] == "succeeded"


def test_a_magic_payer_name_fails_a_park_bill_paid_by_mandate(app, http):
    p = setup_platform(app, http)
    mandate = _mandate(p, "户名不符")
    park, occupant = park_with_tenant(p, remind_after=[1])
    bill = new_bill(p, park["id"], occupant["id"], ref("RENT"), "800.00",
                    p.today() + timedelta(days=10))
    paid = p.post(f"/bills/{bill['id']}/pay", {"mandate_id": mandate})
    assert paid.status_code == 201, paid.text
    assert (paid.json()["status"], paid.json()["failure_code"]) == ("failed", "name_mismatch")
    assert p.get(f"/bills/{bill['id']}").json()["status"] == "open"


def test_production_mandates_ignore_the_magic_name(app, http):
    p = setup_platform(app, http, environment="production")
    order = p.order("120.00", mandate_id=_mandate(p, "MISMATCH Co"))
    assert (order["status"], order["failure_code"]) == ("succeeded", None), order

