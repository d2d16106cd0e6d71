"""Cancelling park bills through HTTP, around overdue bills and refunds: a bill nothing is paid
on may be withdrawn whether open or overdue (also once every payment on it was refunded), a bill
with money on it is refused with the payments to refund, and a cancelled bill is done with: no
dunning, no late fees, no payment by mandate, and money transferred for it is kept as the
tenant's credit, never lost and never applied to it."""

from __future__ import annotations

from datetime import timedelta

from tests.products.collection.support import (
    Platform,
    clearing_invariants,
    money,
    next_cutoff,
    setup_platform,
)
from tests.products.collection.test_park import at, bill_events, new_bill
from tests.products.collection.test_park_refunds import park_with_tenant, refund
from tests.tools.api import problem


def cancel(p: Platform, bill_id: str) -> dict:
    response = p.post(f"/bills/{bill_id}/cancel")
    assert response.status_code == 200, response.text
    return response.json()


def test_an_overdue_bill_whose_payments_were_refunded_is_cancelled(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park, occupant = park_with_tenant(p, remind_after=[1, 5])
    due = p.today() + timedelta(days=1)
    bill = new_bill(p, park["id"], occupant["id"], "RENT-C1", "1000.00", due)
    p.advance_to(at(p, due + timedelta(days=2)))
    p.run_jobs()
    # paid late (principal and two days' fee), by transfer to the tenant's virtual account
    va = occupant["virtual_account_id"]
    paid = p.post(f"/virtual-accounts/{va}/simulate-incoming",
                  {"amount": money("1002.00"), "remitter_name": "苏州恒达精密机械有限公司"})
    assert paid.status_code == 201, paid.text
    order_id = paid.json()["applications"][0]["order_id"]
    assert p.get(f"/bills/{bill['id']}").json()["status"] == "paid"

    # a paid bill keeps its money: the problem says why and what to refund
    refused = problem(p.post(f"/bills/{bill['id']}/cancel"), 409, "bill_partly_paid")
    assert refused["payments_to_refund"] == [{"order_id": order_id,
                                              "refundable": money("1002.00")}]
    # in part: still refused, naming what is left of the payment
    refund(p, order_id, "2.00")
    refused = problem(p.post(f"/bills/{bill['id']}/cancel"), 409, "bill_partly_paid")
    assert refused["payments_to_refund"] == [{"order_id": order_id,
                                              "refundable": money("1000.00")}]
    assert "1000.00 CNY has been paid" in refused["detail"]
    # the rest: the bill is unpaid again, overdue by its due date
    refund(p, order_id, "1000.00")
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["outstanding"]) == (
        "overdue", money("0.00"), money("1002.00"))

    cancelled = cancel(p, bill["id"])
    assert (cancelled["status"], cancelled["outstanding"], cancelled["paid"]) == (
        "cancelled", money("0.00"), money("0.00"))
    assert cancelled["cancelled_at"] is not None
    assert [x["refunded"] for x in cancelled["payments"]] == [money("1002.00")]
    kind, data = bill_events(p, bill["id"])[-1]
    assert (kind, data["status"]) == ("bill.cancelled", "cancelled")
    # once is enough: a second cancel names the state it found
    again = problem(p.post(f"/bills/{bill['id']}/cancel"), 409, "invalid_state")
    assert again["current_status"] == "cancelled"
    assert [t for t, _ in bill_events(p, bill["id"])].count("bill.cancelled") == 1
    totals = clearing_invariants(p)
    assert totals["refunded"] == 1002_00


def test_cancelling_an_overdue_bill_stops_its_dunning_and_late_fees(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park, occupant = park_with_tenant(p, remind_after=[1, 3, 10])
    due = p.today() + timedelta(days=1)
    bill = new_bill(p, park["id"], occupant["id"], "RENT-C2", "1000.00", due)
    kept = new_bill(p, park["id"], occupant["id"], "RENT-C2-KEPT", "1000.00", due)
    p.advance_to(at(p, due + timedelta(days=1)))
    p.run_jobs()
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["late_fee"]) == ("overdue", money("1.00"))
    notices = len(view["notices"])

    # an overdue bill nothing was paid on is withdrawn like an open one; the fee charged is
    # shown, owed no more
    cancelled = cancel(p, bill["id"])
    assert (cancelled["status"], cancelled["late_fee"], cancelled["outstanding"]) == (
        "cancelled", money("1.00"), money("0.00"))
    events = len(bill_events(p, bill["id"]))

    p.advance_to(at(p, due + timedelta(days=12)))
    p.run_jobs()
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["late_fee"], view["outstanding"]) == (
        "cancelled", money("1.00"), money("0.00"))
    assert len(view["notices"]) == notices
    assert len(bill_events(p, bill["id"])) == events  # no reminder, no late fee, nothing
    # the other bill's dunning went on
    other = p.get(f"/bills/{kept['id']}").json()
    assert other["late_fee"] == money("12.00")
    # (after a clock jump only the latest reminder due is sent)
    assert [n["offset_days"] for n in other["notices"]][-2:] == [1, 10]


def test_a_cancelled_bill_is_not_paid_and_money_sent_for_it_is_kept_as_credit(app, http):
    p = setup_platform(app, http)
    park, occupant = park_with_tenant(p, remind_after=[1])
    bill = new_bill(p, park["id"], occupant["id"], "RENT-C3", "500.00",
                    p.today() + timedelta(days=5))
    cancel(p, bill["id"])
    payer = p.balance(p.payer_account)

    refused = problem(p.post(f"/bills/{bill['id']}/pay", {"mandate_id": p.extra["mandate_id"]}),
                      409, "bill_not_payable")
    assert refused["bill_status"] == "cancelled"
    assert p.balance(p.payer_account) == payer

    # the tenant pays it by transfer all the same, naming it: the money is not applied to
    # the cancelled bill, and stays on the tenant's virtual account as credit
    va = occupant["virtual_account_id"]
    sent = p.post(f"/virtual-accounts/{va}/simulate-incoming",
                  {"amount": money("500.00"), "remitter_name": "苏州恒达精密机械有限公司",
                   "memo": "RENT-C3"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["applications"] == []
    assert (sent.json()["status"], sent.json()["applied"]) == ("unapplied", money("0.00"))
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["payments"]) == ("cancelled", money("0.00"), [])
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("500.00")
    account = p.get(f"/virtual-accounts/{va}").json()
    assert account["unapplied"] == money("500.00")
    assert p.balance(account["ledger_account_id"]) == 500_00

    # the credit pays the tenant's next bill (what it would do with any unmatched transfer)
    reissued = new_bill(p, park["id"], occupant["id"], "RENT-C3-BIS", "500.00",
                        p.today() + timedelta(days=5))
    assert p.get(f"/bills/{reissued['id']}").json()["status"] == "paid"
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("0.00")
    assert p.get(f"/bills/{bill['id']}").json()["status"] == "cancelled"

    # naming the cancelled bill again while another is open: the memo names nothing payable,
    # so the money goes where an unnamed transfer's would, the open bill
    water = new_bill(p, park["id"], occupant["id"], "WATER-C3", "80.00",
                     p.today() + timedelta(days=9), item="water")
    sent = p.post(f"/virtual-accounts/{va}/simulate-incoming",
                  {"amount": money("100.00"), "remitter_name": "苏州恒达精密机械有限公司",
                   "memo": "RENT-C3"})
    assert [(a["id"], a["amount"]) for a in sent.json()["applications"]] == [
        (water["id"], money("80.00"))]
    assert p.get(f"/bills/{bill['id']}").json()["paid"] == money("0.00")
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("20.00")
    clearing_invariants(p)
