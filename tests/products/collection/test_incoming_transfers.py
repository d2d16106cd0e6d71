"""What each incoming transfer paid (`applications`), as the simulation's answer, the list of a
virtual account's transfers and one transfer show it: first in, first applied, the parts adding
up to `applied`, loaded with one query for a page."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event

from tests.products.collection.support import Platform, money, setup_platform, uscc
from tests.products.collection.test_park import new_bill
from tests.tools.api import problem


def transfer(p: Platform, account_id: str, amount: str, memo: str = "") -> dict:
    response = p.post(f"/virtual-accounts/{account_id}/simulate-incoming",
                      {"amount": money(amount), "remitter_name": "张伟", "memo": memo})
    assert response.status_code == 201, response.text
    return response.json()


def listed(p: Platform, account_id: str, **params: object) -> list[dict]:
    response = p.get(f"/virtual-accounts/{account_id}/incoming-transfers", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def parts(transfer_out: dict) -> list[tuple[str, str, str]]:
    return [(a["kind"], a["id"], a["amount"]["amount"]) for a in transfer_out["applications"]]


def test_the_list_and_one_transfer_show_what_the_transfer_paid(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    order = p.order("120.00", virtual_account_id=account["id"])
    sent = transfer(p, account["id"], "150.00", order["merchant_order_no"])
    assert parts(sent) == [("order", order["id"], "120.00")]
    assert sent["applications"][0]["order_id"] == order["id"]

    (row,) = listed(p, account["id"])
    assert row == sent
    one = p.get(f"/virtual-accounts/{account['id']}/incoming-transfers/{sent['id']}")
    assert one.status_code == 200, one.text
    assert one.json() == sent

    problem(p.get(f"/virtual-accounts/{account['id']}/incoming-transfers/cin_nope"), 404,
            "incoming_transfer_not_found")
    other = p.post("/virtual-accounts", {"label": "另一付款人"}).json()
    problem(p.get(f"/virtual-accounts/{other['id']}/incoming-transfers/{sent['id']}"), 404,
            "incoming_transfer_not_found")
    problem(p.get(f"/virtual-accounts/cva_nope/incoming-transfers/{sent['id']}"), 404,
            "virtual_account_not_found")


def test_credit_is_spent_first_in_first_applied_and_each_transfer_lists_its_part(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    first = transfer(p, account["id"], "50.00")  # no order yet: credit
    assert (first["status"], first["applications"]) == ("unapplied", [])
    second = transfer(p, account["id"], "100.00")
    # an order paid from the credit later draws on the first transfer, then the second
    order = p.order("120.00", virtual_account_id=account["id"])
    assert order["status"] == "succeeded"
    small = p.order("20.00", virtual_account_id=account["id"])
    assert small["status"] == "succeeded"

    rows = {row["id"]: row for row in listed(p, account["id"])}
    assert parts(rows[first["id"]]) == [("order", order["id"], "50.00")]
    assert parts(rows[second["id"]]) == [("order", order["id"], "70.00"),
                                         ("order", small["id"], "20.00")]
    for row in rows.values():
        assert sum(int(a["amount"]["amount"].replace(".", "")) for a in row["applications"]) \
            == int(row["applied"]["amount"].replace(".", ""))
    assert rows[second["id"]]["status"] == "partially_applied"
    assert rows[second["id"]]["applied"] == money("90.00")

    # a transfer arriving onto credit left over: its answer lists what its own money paid
    third_order = p.order("30.00", virtual_account_id=account["id"])
    assert third_order["status"] == "pending"
    third = transfer(p, account["id"], "25.00")
    assert parts(third) == [("order", third_order["id"], "20.00")]
    assert parts(p.get(f"/virtual-accounts/{account['id']}/incoming-transfers/"
                       f"{second['id']}").json()) == [
        ("order", order["id"], "70.00"), ("order", small["id"], "20.00"),
        ("order", third_order["id"], "10.00")]


def test_a_park_tenants_transfer_lists_the_bills_it_paid(app, http):
    p = setup_platform(app, http)
    park = p.post("/parks", {"name": "星湖科技园", "sub_merchant_id": p.merchants[1]}).json()
    occupant = p.post(f"/parks/{park['id']}/tenants", {"name": "苏州恒达精密机械有限公司",
                                                       "uscc": uscc()})
    assert occupant.status_code == 201, occupant.text
    va = occupant.json()["virtual_account_id"]
    rent = new_bill(p, park["id"], occupant.json()["id"], "RENT-1", "300.00",
                    p.today() + timedelta(days=5))
    water = new_bill(p, park["id"], occupant.json()["id"], "WATER-1", "80.00",
                     p.today() + timedelta(days=9), item="water")
    sent = transfer(p, va, "350.00")
    assert parts(sent) == [("bill", rent["id"], "300.00"), ("bill", water["id"], "50.00")]
    payments = {pay["order_id"] for pay in p.get(f"/bills/{rent['id']}").json()["payments"]}
    assert {sent["applications"][0]["order_id"]} == payments
    (row,) = listed(p, va)
    assert row["applications"] == sent["applications"]


def test_a_page_of_transfers_loads_its_applications_with_one_query(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    for i in range(6):
        p.order("10.00", virtual_account_id=account["id"], number=f"PAGE-{i}")
        transfer(p, account["id"], "10.00", f"PAGE-{i}")

    database = app.state.database
    reads: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if "collection_incoming_applications" in statement:
            reads.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        rows = listed(p, account["id"], limit=5)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert len(rows) == 5
    assert all(len(row["applications"]) == 1 for row in rows)
    assert len(reads) == 1, reads
