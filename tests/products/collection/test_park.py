"""A park (智慧园区) through HTTP on the test clock: bills reminded, overdue with a late fee,
paid by transfer to the tenant's virtual account (oldest first, partial payments kept), by
mandate, and a clock jump that sends only the reminder still meaningful."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from gateway.clock import SHANGHAI
from gateway.events import Event
from tests.products.collection.support import (
    Platform,
    clearing_invariants,
    money,
    next_cutoff,
    setup_platform,
    uscc,
)
from tests.tools.api import problem


def bill_events(p: Platform, bill_id: str) -> list[tuple[str, dict]]:
    with p.database.transaction() as s:
        return [(e.type, e.data) for e in s.scalars(
            select(Event).where(Event.tenant_id == p.tenant_id, Event.resource_id == bill_id)
            .order_by(Event.created_at, Event.id))]


def at(p: Platform, day, hour: int = 1) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=SHANGHAI)


def new_bill(p: Platform, park_id: str, tenant_id: str, reference: str, amount: str, due,
             item: str = "rent") -> dict:
    response = p.post(f"/parks/{park_id}/bills", {
        "reference": reference, "park_tenant_id": tenant_id, "item": item,
        "period": "2026-11", "amount": money(amount), "due_date": due.isoformat()})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_bill_reminded_overdue_with_late_fee_and_paid_by_transfer(app, http):
    p = setup_platform(app, http)
    property_co = p.merchants[1]  # fixed 0.50 per order
    p.advance_to(next_cutoff(p, 10))
    today = p.today()
    created = p.post("/parks", {"name": "星湖科技园", "sub_merchant_id": property_co,
                                "dunning": {"remind_before_days": [3], "remind_on_due": True,
                                            "remind_after_days": [1, 5],
                                            "late_fee_daily_rate": "0.001",
                                            "late_fee_cap_rate": "0.05"}})
    assert created.status_code == 201, created.text
    park = created.json()
    problem(p.post("/parks", {"name": "x", "sub_merchant_id": property_co,
                              "dunning": {"late_fee_daily_rate": "0.5"}}), 422)
    problem(p.post("/parks", {"name": "x", "sub_merchant_id": property_co,
                              "dunning": {"remind_after_days": [1, 1]}}), 422)
    occupant = p.post(f"/parks/{park['id']}/tenants", {"name": "苏州恒达精密机械有限公司",
                                                       "uscc": uscc(), "unit": "B2-301"})
    assert occupant.status_code == 201, occupant.text
    occupant = occupant.json()
    problem(p.post(f"/parks/{park['id']}/tenants", {"name": "dup", "uscc": occupant["uscc"]}),
            409, "duplicate_uscc")
    va = occupant["virtual_account_id"]
    assert occupant["virtual_account_number"] and occupant["credit"] == money("0.00")
    refused = p.post("/orders", {"merchant_order_no": "X-1", "amount": money("1.00"),
                                 "payer": {"method": "virtual_account", "virtual_account_id": va},
                                 "splits": [{"sub_merchant_id": property_co,
                                             "amount": money("1.00")}]})
    problem(refused, 409, "virtual_account_not_usable")

    due = today + timedelta(days=5)
    rent = new_bill(p, park["id"], occupant["id"], "RENT-2026-11", "10000.00", due)
    water = new_bill(p, park["id"], occupant["id"], "WATER-2026-11", "200.00",
                     today + timedelta(days=10), item="water")
    assert rent["status"] == "open" and rent["outstanding"] == money("10000.00")
    problem(p.post(f"/parks/{park['id']}/bills", {
        "reference": "RENT-2026-11", "park_tenant_id": occupant["id"], "item": "rent",
        "period": "2026-11", "amount": money("1.00"), "due_date": due.isoformat()}), 409,
        "duplicate_reference")
    problem(p.post(f"/parks/{park['id']}/bills", {
        "reference": "OLD", "park_tenant_id": occupant["id"], "item": "rent", "period": "x",
        "amount": money("1.00"), "due_date": (today - timedelta(days=1)).isoformat()}), 422,
        "due_date_in_past")
    problem(p.post(f"/parks/{park['id']}/bills", {
        "reference": "NOPE", "park_tenant_id": "cptn_nope", "item": "rent", "period": "x",
        "amount": money("1.00"), "due_date": due.isoformat()}), 422, "park_tenant_not_found")
    problem(p.post(f"/parks/{park['id']}/bills", {
        "reference": "GAS", "park_tenant_id": occupant["id"], "item": "gas", "period": "x",
        "amount": money("1.00"), "due_date": due.isoformat()}), 422, "validation_failed")

    p.advance_to(at(p, due - timedelta(days=3)))
    p.run_jobs()
    p.advance_to(at(p, due))
    p.run_jobs()
    assert p.get(f"/bills/{rent['id']}").json()["status"] == "open"
    p.advance_to(at(p, due + timedelta(days=1)))
    p.run_jobs()
    overdue = p.get(f"/bills/{rent['id']}").json()
    assert overdue["status"] == "overdue" and overdue["late_fee"] == money("10.00")
    p.advance_to(at(p, due + timedelta(days=5)))
    p.run_jobs()
    overdue = p.get(f"/bills/{rent['id']}").json()
    assert overdue["late_fee"] == money("50.00")
    assert overdue["outstanding"] == money("10050.00")
    assert [(n["kind"], n["offset_days"]) for n in overdue["notices"]] == [
        ("before_due", 3), ("due", 0), ("after_due", 1), ("after_due", 5)]
    types = [t for t, _ in bill_events(p, rent["id"])]
    assert types.count("bill.reminder") == 4 and types.count("bill.overdue") == 1
    assert types.count("bill.late_fee_accrued") == 2

    # half the principal by transfer, naming the rent bill: the late fee keeps accruing on the rest
    paid = p.post(f"/virtual-accounts/{va}/simulate-incoming", {
        "amount": money("5000.00"), "remitter_name": "苏州恒达精密机械有限公司",
        "memo": "RENT-2026-11 房租"})
    assert paid.status_code == 201, paid.text
    assert [(a["kind"], a["id"]) for a in paid.json()["applications"]] == [("bill", rent["id"])]
    half = p.get(f"/bills/{rent['id']}").json()
    assert half["status"] == "overdue" and half["paid"] == money("5000.00")
    assert half["payments"][0]["principal"] == money("5000.00")
    p.advance_to(at(p, due + timedelta(days=7)))
    p.run_jobs()
    assert p.get(f"/bills/{rent['id']}").json()["late_fee"] == money("60.00")

    # 6,000.00 without a memo: the oldest bill (rent: 5,000.00 + 60.00) is paid first, then
    # the water bill; the rest stays as the tenant's credit
    p.post(f"/virtual-accounts/{va}/simulate-incoming",
           {"amount": money("6000.00"), "remitter_name": "苏州恒达精密机械有限公司"})
    done = p.get(f"/bills/{rent['id']}").json()
    assert done["status"] == "paid" and done["outstanding"] == money("0.00")
    assert done["payments"][1]["principal"] == money("5000.00")
    assert done["payments"][1]["late_fee"] == money("60.00")
    water_paid = p.get(f"/bills/{water['id']}").json()
    # the water bill was two days overdue too: 0.20 a day
    assert water_paid["status"] == "paid" and water_paid["paid"] == money("200.40")
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("739.60")
    # a new bill is paid from the credit at once
    power = new_bill(p, park["id"], occupant["id"], "POWER-2026-11", "300.00",
                     p.today() + timedelta(days=10), item="electricity")
    assert p.get(f"/bills/{power['id']}").json()["status"] == "paid"
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("439.60")
    assert bill_events(p, rent["id"])[-1][0] == "bill.paid"
    # money is paid on it: cancelling is refused, naming the payments to refund first
    refused = problem(p.post(f"/bills/{rent['id']}/cancel"), 409, "bill_partly_paid")
    assert "refund its payments first" in refused["detail"]
    assert [x["order_id"] for x in refused["payments_to_refund"]] == [
        x["order_id"] for x in done["payments"]]
    # a bill payment is refundable, but never beyond what that payment collected
    bill_order = done["payments"][0]["order_id"]
    problem(p.post(f"/orders/{bill_order}/refunds", {"amount": money("5000.01")}), 409,
            "refund_exceeds_collected")
    listed = p.get(f"/parks/{park['id']}/bills?status=paid").json()["data"]
    assert {b["id"] for b in listed} == {rent["id"], water["id"], power["id"]}
    # the list and the events show a bill as its GET does: payments and notices included
    assert next(b for b in listed if b["id"] == rent["id"]) == done
    paid_event = bill_events(p, rent["id"])[-1][1]
    assert paid_event["bill"]["payments"] == done["payments"]
    assert paid_event["bill"]["notices"] == done["notices"]

    # another tenant pays by mandate
    other = p.post(f"/parks/{park['id']}/tenants", {"name": "杭州华信物流有限公司",
                                                    "uscc": uscc()}).json()
    fee = new_bill(p, park["id"], other["id"], "FEE-OTHER", "1800.00",
                   p.today() + timedelta(days=3), item="property_fee")
    order = p.post(f"/bills/{fee['id']}/pay", {"mandate_id": p.extra["mandate_id"]})
    assert order.status_code == 201, order.text
    assert order.json()["status"] == "succeeded" and order.json()["bill_id"] == fee["id"]
    assert p.get(f"/bills/{fee['id']}").json()["status"] == "paid"
    problem(p.post(f"/bills/{fee['id']}/pay", {"mandate_id": p.extra["mandate_id"]}), 409,
            "bill_not_payable")
    cancelled = new_bill(p, park["id"], other["id"], "FEE-CANCEL", "10.00",
                         p.today() + timedelta(days=3))
    assert p.post(f"/bills/{cancelled['id']}/cancel").json()["status"] == "cancelled"

    p.advance(2 * 86400)
    p.run_jobs()
    totals = clearing_invariants(p)
    assert totals["collected"] == 5000_00 + 5060_00 + 200_40 + 300_00 + 1800_00
    assert totals["clearing"] == 0
    # the property company was paid its bills less 0.50 per payment (5 payments)
    assert p.balance(p.merchant_accounts[1]) == totals["collected"] - 5 * 50


def test_a_clock_jump_sends_only_the_reminder_still_meaningful(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    park = p.post("/parks", {"name": "园区", "sub_merchant_id": p.merchants[1],
                             "dunning": {"remind_before_days": [7, 3], "remind_on_due": True,
                                         "remind_after_days": [1, 7, 15],
                                         "late_fee_daily_rate": "0.001",
                                         "late_fee_cap_rate": "0.05"}}).json()
    occupant = p.post(f"/parks/{park['id']}/tenants", {"name": "租户", "uscc": uscc()}).json()
    bill = new_bill(p, park["id"], occupant["id"], "JUMP", "1000.00",
                    p.today() + timedelta(days=5))
    p.advance(100 * 86400)
    p.run_jobs()
    view = p.get(f"/bills/{bill['id']}").json()
    assert view["status"] == "overdue"
    assert view["late_fee"] == money("50.00")  # 100 days x 1.00, capped at 5 %
    assert [(n["kind"], n["offset_days"]) for n in view["notices"]] == [("after_due", 15)]
    assert p.run_jobs().get("collection.dunning", 0) == 0
    # rules changed later: the schedule is re-planned, nothing stale is sent
    updated = p.patch(f"/parks/{park['id']}", {"dunning": {"remind_after_days": [120]}})
    assert updated.status_code == 200, updated.text
    p.advance(30 * 86400)
    p.run_jobs()
    kinds = [(n["kind"], n["offset_days"]) for n in p.get(f"/bills/{bill['id']}").json()["notices"]]
    assert kinds == [("after_due", 15), ("after_due", 120)]


def test_a_memo_names_a_bill_only_as_a_whole_token(app, http):
    p = setup_platform(app, http)
    park = p.post("/parks", {"name": "星湖科技园", "sub_merchant_id": p.merchants[1]}).json()
    occupant = p.post(f"/parks/{park['id']}/tenants", {"name": "苏州恒达精密机械有限公司",
                                                       "uscc": uscc()}).json()
    va = occupant["virtual_account_id"]
    older = new_bill(p, park["id"], occupant["id"], "B-1", "100.00",
                     p.today() + timedelta(days=5))
    named = new_bill(p, park["id"], occupant["id"], "B-12", "300.00",
                     p.today() + timedelta(days=10))
    # "B-12" does not name the bill "B-1" (due first): the transfer pays B-12 in full
    paid = p.post(f"/virtual-accounts/{va}/simulate-incoming", {
        "amount": money("300.00"), "remitter_name": "苏州恒达精密机械有限公司", "memo": "B-12"})
    assert paid.status_code == 201, paid.text
    assert [(a["id"], a["amount"]) for a in paid.json()["applications"]] == [
        (named["id"], money("300.00"))]
    assert p.get(f"/bills/{named['id']}").json()["status"] == "paid"
    assert p.get(f"/bills/{older['id']}").json()["paid"] == money("0.00")

    # a part payment of a bill counts as applied, the rest of a later transfer as credit
    p.post(f"/virtual-accounts/{va}/simulate-incoming",
           {"amount": money("60.00"), "remitter_name": "苏州恒达精密机械有限公司"})
    p.post(f"/virtual-accounts/{va}/simulate-incoming",
           {"amount": money("60.00"), "remitter_name": "苏州恒达精密机械有限公司"})
    rows = p.get(f"/virtual-accounts/{va}/incoming-transfers").json()["data"]
    assert [(t["status"], t["applied"]) for t in sorted(rows, key=lambda t: t["id"])] == [
        ("applied", money("300.00")), ("applied", money("60.00")),
        ("partially_applied", money("40.00"))]
    assert p.get(f"/park-tenants/{occupant['id']}").json()["credit"] == money("20.00")
