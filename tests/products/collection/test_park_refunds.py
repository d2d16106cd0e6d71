"""Refunds of park bill payments: a mistaken payment (a mandate debit of the wrong amount, a
transfer to the wrong bill) is refunded like any order, in part and repeatedly, and the
refund reopens that amount on its bill, whose dunning and late fees resume."""

from __future__ import annotations

from datetime import timedelta

from tests.products.collection.support import (
    Platform,
    clearing_invariants,
    concurrent_refunds,
    money,
    next_cutoff,
    setup_platform,
    uscc,
)
from tests.products.collection.test_park import at, bill_events, new_bill
from tests.tools.api import problem


def park_with_tenant(p: Platform, *, remind_after: list[int]) -> tuple[dict, dict]:
    park = p.post("/parks", {"name": "星湖科技园", "sub_merchant_id": p.merchants[1],
                             "dunning": {"remind_before_days": [1], "remind_on_due": True,
                                         "remind_after_days": remind_after,
                                         "late_fee_daily_rate": "0.001",
                                         "late_fee_cap_rate": "0.05"}})
    assert park.status_code == 201, park.text
    occupant = p.post(f"/parks/{park.json()['id']}/tenants",
                      {"name": "苏州恒达精密机械有限公司", "uscc": uscc()})
    assert occupant.status_code == 201, occupant.text
    return park.json(), occupant.json()


def refund(p: Platform, order_id: str, amount: str, **kwargs) -> dict:
    response = p.post(f"/orders/{order_id}/refunds", {"amount": money(amount)}, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_mandate_payment_refunded_in_part_and_again_reopens_the_bill(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park, occupant = park_with_tenant(p, remind_after=[2])
    due = p.today() + timedelta(days=3)
    bill = new_bill(p, park["id"], occupant["id"], "RENT-1", "1000.00", due)
    order = p.post(f"/bills/{bill['id']}/pay", {"mandate_id": p.extra["mandate_id"]}).json()
    assert p.get(f"/bills/{bill['id']}").json()["status"] == "paid"
    payer = p.balance(p.payer_account)

    # the debit was 300.00 too much: refunded at once, the bill owes it again
    first = refund(p, order["id"], "300.00")
    assert first["advanced"] == money("0.00")
    assert p.balance(p.payer_account) == payer + 300_00
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["outstanding"], view["paid_at"]) == (
        "open", money("700.00"), money("300.00"), None)
    assert view["payments"][0]["refunded"] == money("300.00")
    kind, data = bill_events(p, bill["id"])[-1]
    assert kind == "bill.payment_refunded"
    assert data["refund"] == {"id": first["id"], "payment_id": view["payments"][0]["id"],
                              "order_id": order["id"], "amount": money("300.00"),
                              "principal": money("300.00"), "late_fee": money("0.00")}
    assert data["bill"]["status"] == "open"

    # dunning resumes for the reopened 300.00: overdue, late fee 0.30 a day, a reminder
    p.advance_to(at(p, due + timedelta(days=2)))
    p.run_jobs()
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["late_fee"], view["outstanding"]) == (
        "overdue", money("0.60"), money("300.60"))
    assert (view["notices"][-1]["kind"], view["notices"][-1]["outstanding"]) == (
        "after_due", money("300.60"))

    # never more than the payment collected; cancelling waits for its refund
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("700.01")}), 409,
            "refund_exceeds_collected")
    refused = problem(p.post(f"/bills/{bill['id']}/cancel"), 409, "bill_partly_paid")
    assert refused["payments_to_refund"] == [{"order_id": order["id"],
                                              "refundable": money("700.00")}]

    # the rest, after the order was settled: the bank advances it, like any refund
    rest = refund(p, order["id"], "700.00")
    assert rest["advanced"] == money("700.00")
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["late_fee"], view["outstanding"]) == (
        "overdue", money("0.00"), money("0.60"), money("1000.60"))
    assert p.get(f"/orders/{order['id']}").json()["refundable"] == money("0.00")
    p.advance(86400)
    p.run_jobs()
    assert p.get(f"/bills/{bill['id']}").json()["late_fee"] == money("1.60")
    totals = clearing_invariants(p)
    assert totals["refunded"] == 1000_00


def test_a_refund_after_the_due_date_turns_a_paid_bill_overdue_without_fees_for_paid_days(
        app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park, occupant = park_with_tenant(p, remind_after=[1])
    due = p.today() + timedelta(days=1)
    bill = new_bill(p, park["id"], occupant["id"], "RENT-2", "1000.00", due)
    va = occupant["virtual_account_id"]
    paid = p.post(f"/virtual-accounts/{va}/simulate-incoming",
                  {"amount": money("1000.00"), "remitter_name": "苏州恒达精密机械有限公司"})
    assert paid.status_code == 201, paid.text
    order_id = paid.json()["applications"][0]["order_id"]
    p.advance_to(at(p, due + timedelta(days=4)))
    p.run_jobs()
    assert p.get(f"/bills/{bill['id']}").json()["late_fee"] == money("0.00")

    # the transfer was meant for another bill: the whole payment goes back to the remitter
    back = refund(p, order_id, "1000.00")
    assert back["advanced"] == money("1000.00")
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["late_fee"], view["outstanding"]) == (
        "overdue", money("0.00"), money("0.00"), money("1000.00"))
    assert view["overdue_at"] is not None
    assert [t for t, _ in bill_events(p, bill["id"])][-2:] == [
        "bill.payment_refunded", "bill.overdue"]
    # the money left for the remitter's bank: nothing is credited back to the tenant
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("0.00")

    # dunning resumes: the reminder still meaningful today, then late fees from tomorrow only
    p.run_jobs()
    notices = p.get(f"/bills/{bill['id']}").json()["notices"]
    assert [(n["kind"], n["offset_days"], n["outstanding"]) for n in notices][-1] == (
        "after_due", 1, money("1000.00"))
    p.advance(86400)
    p.run_jobs()
    assert p.get(f"/bills/{bill['id']}").json()["late_fee"] == money("1.00")
    assert [t for t, _ in bill_events(p, bill["id"])].count("bill.overdue") == 1
    clearing_invariants(p)


def test_a_refund_gives_back_the_payments_late_fee_first_then_its_principal(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park, occupant = park_with_tenant(p, remind_after=[])
    due = p.today() + timedelta(days=1)
    bill = new_bill(p, park["id"], occupant["id"], "RENT-3", "1000.00", due)
    p.advance_to(at(p, due + timedelta(days=2)))
    p.run_jobs()
    order = p.post(f"/bills/{bill['id']}/pay", {"mandate_id": p.extra["mandate_id"]}).json()
    assert order["amount"] == money("1002.00")

    refund(p, order["id"], "1.50")
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["outstanding"]) == ("overdue", money("1.50"))
    assert bill_events(p, bill["id"])[-1][1]["refund"]["late_fee"] == money("1.50")
    # only late fee is owed: no more accrues
    p.advance(86400)
    p.run_jobs()
    assert p.get(f"/bills/{bill['id']}").json()["late_fee"] == money("2.00")

    refund(p, order["id"], "10.00")
    kind, data = bill_events(p, bill["id"])[-1]
    assert (kind, data["refund"]["late_fee"], data["refund"]["principal"]) == (
        "bill.payment_refunded", money("0.50"), money("9.50"))
    assert p.get(f"/bills/{bill['id']}").json()["outstanding"] == money("11.50")
    p.advance(86400)
    p.run_jobs()
    assert p.get(f"/bills/{bill['id']}").json()["late_fee"] == money("2.01")  # 9.50 x 0.001
    clearing_invariants(p)


def test_a_bill_is_cancelled_once_its_payments_are_refunded(app, http):
    p = setup_platform(app, http)
    park, occupant = park_with_tenant(p, remind_after=[1])
    bill = new_bill(p, park["id"], occupant["id"], "RENT-4", "1000.00",
                    p.today() + timedelta(days=5))
    va = occupant["virtual_account_id"]
    p.post(f"/virtual-accounts/{va}/simulate-incoming",
           {"amount": money("400.00"), "remitter_name": "租户"})
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"]) == ("open", money("400.00"))
    refused = problem(p.post(f"/bills/{bill['id']}/cancel"), 409, "bill_partly_paid")
    assert "refund its payments first" in refused["detail"]
    refund(p, view["payments"][0]["order_id"], "400.00")
    cancelled = p.post(f"/bills/{bill['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"


def test_32_concurrent_refunds_of_a_bill_payment_never_exceed_it(app, http):
    p = setup_platform(app, http)
    park, occupant = park_with_tenant(p, remind_after=[1])
    bill = new_bill(p, park["id"], occupant["id"], "RENT-5", "1000.00",
                    p.today() + timedelta(days=5))
    order = p.post(f"/bills/{bill['id']}/pay", {"mandate_id": p.extra["mandate_id"]}).json()
    results = concurrent_refunds(p, order["id"], "50.00")
    assert sorted(set(results)) == [201, 409], results
    assert results.count(201) == 20
    view = p.get(f"/bills/{bill['id']}").json()
    assert (view["status"], view["paid"], view["outstanding"]) == (
        "open", money("0.00"), money("1000.00"))
    assert view["payments"][0]["refunded"] == money("1000.00")
    kinds = [t for t, _ in bill_events(p, bill["id"])]
    assert kinds.count("bill.payment_refunded") == 20
    assert clearing_invariants(p)["refunded"] == 1000_00
