"""Money is conserved whatever happens: any sequence of orders, refunds, grants, top-ups, meals,
month-end expiries, bill payments and settlements keeps the ledger balanced, the clearing
account equal to collected - refunded - settled, every pool equal to its sub-ledger, and no
order refunded beyond what it collected."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gateway.clock import SHANGHAI
from gateway.money import parse_fen
from products.accounts.models import Account
from products.collection.models import (
    Bill,
    CollectionSettings,
    Diner,
    Employer,
    Order,
    OrderSplit,
    Settlement,
    SubsidyLot,
    VirtualAccount,
)
from tests.products.collection.support import (
    Platform,
    clearing_invariants,
    money,
    ref,
    setup_platform,
    uscc,
)

cents = st.integers(min_value=1, max_value=300_00)
ops = st.one_of(
    st.tuples(st.just("order"), cents, st.integers(0, 2), st.integers(0, 100)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 100)),
    st.tuples(st.just("grant"), st.integers(1, 200_00)),
    st.tuples(st.just("top_up"), st.integers(0, 2), st.integers(1, 100_00)),
    st.tuples(st.just("meal"), st.integers(0, 2), st.integers(1, 80_00)),
    st.tuples(st.just("advance"), st.integers(1, 40 * 24)),
    st.tuples(st.just("bill"), st.integers(1, 5_000_00), st.integers(0, 20)),
    st.tuples(st.just("transfer"), st.integers(1, 6_000_00)),
    st.tuples(st.just("pay_bill"), st.integers(0, 50)),
)


def fen(value: int) -> dict[str, str]:
    return money(f"{value // 100}.{value % 100:02d}")


class World:
    def __init__(self, p: Platform) -> None:
        self.p = p
        self.orders: list[str] = []
        self.bills: list[str] = []
        funding = p.account(1_000_000_00)
        self.employer = p.post("/canteen/employers", {"name": "雇主", "uscc": uscc(),
                                                      "funding_account_id": funding}).json()["id"]
        self.diners = [p.post(f"/canteen/employers/{self.employer}/diners", {
            "employee_no": f"E{i}", "name": "王伟",
            "funding_account_id": p.account(50_000_00, person=True)}).json()["id"]
            for i in range(3)]
        self.park = p.post("/parks", {"name": "园区", "sub_merchant_id": p.merchants[1]}).json()
        occupant = p.post(f"/parks/{self.park['id']}/tenants", {"name": "租户",
                                                                "uscc": uscc()}).json()
        self.occupant, self.va = occupant["id"], occupant["virtual_account_id"]
        self.grants = 0
        self.advanced = 0  # refunds of earlier dates' orders, advanced by the bank
        self.bill_refunds = 0  # refunds of bill payments (they reopen the bill)

    def apply(self, op: tuple) -> None:
        p, kind = self.p, op[0]
        if kind == "order":
            _, amount, shape, fee_pct = op
            fee = amount * fee_pct // 400
            rest = amount - fee
            splits = [(0, rest)] if shape == 0 or rest < 2 else [(0, rest // 2), (1, rest - rest // 2)]
            body = {"merchant_order_no": ref(), "amount": fen(amount),
                    "payer": {"method": "mandate", "mandate_id": p.extra["mandate_id"]},
                    "splits": [{"sub_merchant_id": p.merchants[i], "amount": fen(a)}
                               for i, a in splits if a]}
            if fee:
                body["platform_fee"] = fen(fee)
            response = p.post("/orders", body)
            assert response.status_code == 201, response.text
            self.orders.append(response.json()["id"])
        elif kind == "refund" and self.orders:
            _, index, pct = op
            order = p.get(f"/orders/{self.orders[index % len(self.orders)]}").json()
            left = parse_fen(order["refundable"]["amount"])
            amount = max(1, left * pct // 100)
            response = p.post(f"/orders/{order['id']}/refunds", {"amount": fen(amount)})
            assert response.status_code in (201, 409), response.text
            if response.status_code == 409:
                # a refund of a settled order is never refused for want of money
                assert response.json()["code"] in ("refund_exceeds_collected",
                                                   "order_not_refundable")
            elif order["business_date"] < p.today().isoformat():
                assert response.json()["advanced"] == response.json()["amount"]
                self.advanced += 1
            if response.status_code == 201 and order["bill_id"]:
                self.bill_refunds += 1
        elif kind == "grant":
            self.grants += 1
            month = p.now().astimezone(SHANGHAI).strftime("%Y-%m")
            response = p.post(f"/canteen/employers/{self.employer}/grants", {
                "reference": f"G{self.grants}", "month": month,
                "items": [{"diner_id": d, "amount": fen(op[1])} for d in self.diners]})
            assert response.status_code == 201, response.text
        elif kind == "top_up":
            response = p.post(f"/canteen/diners/{self.diners[op[1]]}/top-ups",
                              {"amount": fen(op[2])})
            assert response.status_code == 201, response.text
        elif kind == "meal":
            response = p.post("/canteen/meals", {
                "merchant_order_no": ref("M"), "diner_id": self.diners[op[1]],
                "amount": fen(op[2]), "sub_merchant_id": p.merchants[0]})
            assert response.status_code == 201, response.text
            if response.json()["status"] == "succeeded":
                self.orders.append(response.json()["id"])
        elif kind == "advance":
            p.advance(op[1] * 3600)
            p.run_jobs()
        elif kind == "bill":
            response = p.post(f"/parks/{self.park['id']}/bills", {
                "reference": ref("B"), "park_tenant_id": self.occupant, "item": "rent",
                "period": "p", "amount": fen(op[1]),
                "due_date": (p.today() + timedelta(days=op[2])).isoformat()})
            assert response.status_code == 201, response.text
            self.bills.append(response.json()["id"])
        elif kind == "transfer":
            response = p.post(f"/virtual-accounts/{self.va}/simulate-incoming",
                              {"amount": fen(op[1]), "remitter_name": "租户"})
            assert response.status_code == 201, response.text
            # bill payments are refunded like any order
            self.orders += [a["order_id"] for a in response.json()["applications"]]
        elif kind == "pay_bill" and self.bills:
            bill = self.bills[op[1] % len(self.bills)]
            response = p.post(f"/bills/{bill}/pay", {"mandate_id": p.extra["mandate_id"]})
            assert response.status_code in (201, 409), response.text
            if response.status_code == 201 and response.json()["status"] == "succeeded":
                self.orders.append(response.json()["id"])

    def check(self) -> None:
        p = self.p
        clearing_invariants(p)
        with p.database.transaction() as s:
            settings_row = s.get(CollectionSettings, p.tenant_id)
            personal = s.scalar(select(func.coalesce(func.sum(Diner.personal_balance_fen), 0))
                                .where(Diner.tenant_id == p.tenant_id))
            assert s.get(Account, settings_row.wallet_pool_account_id).ledger_fen == personal
            employer = s.get(Employer, self.employer)
            lots = s.scalars(select(SubsidyLot).where(SubsidyLot.tenant_id == p.tenant_id,
                                                      SubsidyLot.status == "open"))
            assert s.get(Account, employer.subsidy_pool_account_id).ledger_fen == sum(
                lot.balance_fen for lot in lots)
            for va in s.scalars(select(VirtualAccount).where(
                    VirtualAccount.tenant_id == p.tenant_id)):
                assert s.get(Account, va.ledger_account_id).ledger_fen == va.unapplied_fen
            # every payee is paid its whole positive net (no fee account aside): never short
            # because another payee's refund was paid out of the clearing account
            for row in s.scalars(select(Settlement).where(Settlement.tenant_id == p.tenant_id)):
                assert row.status in ("paid", "carried", "nothing"), row.status
                assert row.paid_fen == (row.net_fen if row.net_fen > 0 else 0)
                assert row.carried_out_fen == (row.net_fen if row.net_fen < 0 else 0)
            for order in s.scalars(select(Order).where(Order.tenant_id == p.tenant_id)):
                splits = list(s.scalars(select(OrderSplit).where(OrderSplit.order_id == order.id)))
                assert sum(x.amount_fen for x in splits) == order.amount_fen
                assert sum(x.refunded_fen for x in splits) == order.refunded_fen <= order.amount_fen
                assert all(0 <= x.fee_refunded_fen <= x.fee_fen <= x.amount_fen for x in splits)
                if order.scene == "canteen" and order.status == "succeeded":
                    assert order.subsidy_fen + order.personal_fen == order.amount_fen
            # a bill counts as paid what its payments collected less what was refunded of them
            kept: dict[str, int] = {}
            for order in s.scalars(select(Order).where(Order.tenant_id == p.tenant_id,
                                                       Order.bill_id.is_not(None),
                                                       Order.status == "succeeded")):
                kept[order.bill_id] = kept.get(order.bill_id, 0) + (order.amount_fen
                                                                    - order.refunded_fen)
            for bill in s.scalars(select(Bill).where(Bill.tenant_id == p.tenant_id)):
                assert bill.paid_principal_fen + bill.paid_late_fee_fen == kept.get(bill.id, 0)
                assert 0 <= bill.paid_principal_fen <= bill.amount_fen
                assert 0 <= bill.paid_late_fee_fen <= bill.late_fee_fen
                assert (bill.status == "paid") == (bill.outstanding_fen == 0), bill.status


def test_money_is_conserved_under_any_sequence(app, http):
    p = setup_platform(app, http, fee_rules=[{"type": "percentage", "rate": "0.0123"},
                                             {"type": "fixed", "amount": money("0.50")}])
    world = World(p)

    @settings(max_examples=8, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(ops, min_size=1, max_size=12))
    def run(sequence: list[tuple]) -> None:
        for op in sequence:
            world.apply(op)
        world.check()

    run()
    assert world.advanced, "no refund of an earlier date's order was tried"
    assert world.bill_refunds, "no bill payment was refunded"
