"""Refunds: partial and repeated, never more than collected (also 32 at once), commissions
given back in proportion, and the money back where it came from."""

from __future__ import annotations

from tests.products.collection.support import (
    clearing_invariants,
    concurrent_refunds,
    money,
    next_cutoff,
    setup_platform,
)
from tests.tools.api import problem


def test_partial_and_repeated_refunds_never_exceed_the_order(app, http):
    p = setup_platform(app, http)
    payer = p.balance(p.payer_account)
    order = p.order("100.00", splits=[(0, "60.00"), (1, "39.00")], fee="1.00")
    first = p.post(f"/orders/{order['id']}/refunds", {"amount": money("30.00"),
                                                     "refund_reference": "RF-1", "reason": "少菜"})
    assert first.status_code == 201, first.text
    refund = first.json()
    assert refund["status"] == "succeeded" and refund["refund_reference"] == "RF-1"
    # in proportion to what is left of each share: 18.00, 11.70, 0.30
    assert [s["amount"]["amount"] for s in refund["splits"]] == ["18.00", "11.70", "0.30"]
    # the commission comes back in proportion: 0.36 x 18/60 and 0.50 x 11.70/39
    assert [s["fee_refund"]["amount"] for s in refund["splits"]] == ["0.11", "0.15", "0.00"]
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("70.01")}), 409,
            "refund_exceeds_collected")
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("1.00"),
                                                     "refund_reference": "RF-1"}), 409,
            "duplicate_reference")
    second = p.post(f"/orders/{order['id']}/refunds", {
        "amount": money("20.00"), "splits": [{"sub_merchant_id": p.merchants[1],
                                              "amount": money("20.00")}]}).json()
    assert [s["sub_merchant_id"] for s in second["splits"]] == [p.merchants[1]]
    problem(p.post(f"/orders/{order['id']}/refunds", {
        "amount": money("10.00"), "splits": [{"sub_merchant_id": p.merchants[1],
                                              "amount": money("10.00")}]}), 422, "invalid_split")
    problem(p.post(f"/orders/{order['id']}/refunds", {
        "amount": money("10.00"), "splits": [{"sub_merchant_id": p.merchants[0],
                                              "amount": money("9.00")}]}), 422,
            "splits_do_not_sum")
    problem(p.post(f"/orders/{order['id']}/refunds", {
        "amount": money("1.00"), "splits": [{"sub_merchant_id": "csm_x",
                                             "amount": money("1.00")}]}), 422, "invalid_split")
    last = p.post(f"/orders/{order['id']}/refunds", {"amount": money("50.00")}).json()
    assert last["amount"] == money("50.00")
    view = p.get(f"/orders/{order['id']}").json()
    assert view["refunded"] == money("100.00") and view["refundable"] == money("0.00")
    # every share refunded in full gives its whole commission back
    assert [(s["refunded"]["amount"], s["fee"]["amount"]) for s in view["splits"]] == [
        ("60.00", "0.36"), ("39.00", "0.50"), ("1.00", "0.00")]
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("0.01")}), 409,
            "refund_exceeds_collected")
    assert p.balance(p.payer_account) == payer and p.clearing() == 0
    listed = p.get(f"/orders/{order['id']}/refunds").json()["data"]
    assert len(listed) == 3
    assert p.get(f"/refunds/{first.json()['id']}").json() == refund
    clearing_invariants(p)


def test_refunds_without_idempotency_key_or_of_unknown_orders_are_refused(app, http):
    p = setup_platform(app, http)
    order = p.order("10.00")
    response = p.pc.http.post(f"/v1/collection/orders/{order['id']}/refunds",
                              json={"amount": money("1.00")}, headers=p.pc.auth("POST"))
    problem(response, 400, "idempotency_key_required")
    problem(p.post("/orders/cord_nope/refunds", {"amount": money("1.00")}), 404,
            "order_not_found")
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("-1.00")}), 422)
    assert p.get(f"/orders/{order['id']}").json()["refunded"] == money("0.00")


def test_32_concurrent_refunds_never_exceed_the_collected_amount(app, http):
    p = setup_platform(app, http)
    order = p.order("100.00", splits=[(0, "70.00"), (1, "30.00")])
    # 32 refunds of 5.00 against 100.00: exactly 20 may succeed
    results = concurrent_refunds(p, order["id"], "5.00")
    assert sorted(set(results)) == [201, 409], results
    assert results.count(201) == 20
    view = p.get(f"/orders/{order['id']}").json()
    assert view["refunded"] == money("100.00")
    totals = clearing_invariants(p)
    assert totals["refunded"] == 10000 and totals["clearing"] == 0


def settle_the_day(p) -> None:
    """Close the business day and run its settlement."""
    p.advance_to(next_cutoff(p, 0, 2))
    p.run_jobs()


def test_refund_of_a_settled_order_is_advanced_by_the_bank_and_repaid_by_its_sub_merchant(
        app, http):
    p = setup_platform(app, http)  # m0: 0.6 % commission, m1: 0.50 a share
    m0, m1 = p.merchants
    p.advance_to(next_cutoff(p, 10))
    order = p.order("100.00", splits=[(0, "100.00")])
    day1 = p.today()
    settle_the_day(p)
    assert p.balance(p.merchant_accounts[0]) == 99_40 and p.clearing() == 0
    payer = p.balance(p.payer_account)

    # day 2: the clearing account is empty, yet the payer is refunded at once, by the bank
    refund = p.post(f"/orders/{order['id']}/refunds", {"amount": money("10.00")})
    assert refund.status_code == 201, refund.text
    assert refund.json()["advanced"] == money("10.00")
    assert p.balance(p.payer_account) == payer + 10_00 and p.clearing() == 0
    assert clearing_invariants(p)["advances"] == -10_00
    day2 = p.today()
    p.order("50.00", splits=[(1, "50.00")])
    settle_the_day(p)
    s2 = {r["sub_merchant_id"] or "platform": r for r in p.get(
        f"/settlements?settlement_date={day2.isoformat()}").json()["data"]}
    # m1 never funds m0's refund: it is paid its whole net share
    assert (s2[m1]["net"], s2[m1]["paid"], s2[m1]["status"]) == (
        money("49.50"), money("49.50"), "paid")
    # m0 owes the bank 9.94 (10.00 less the 0.06 commission given back), carried
    assert (s2[m0]["advanced"], s2[m0]["net"], s2[m0]["carried_out"], s2[m0]["status"]) == (
        money("9.94"), money("-9.94"), money("-9.94"), "carried")
    # the platform repays the commission it gave back out of its 0.50, and is paid the rest
    assert (s2["platform"]["advance_repaid"], s2["platform"]["paid"]) == (
        money("0.06"), money("0.44"))
    assert p.balance(p.merchant_accounts[1]) == 49_50
    assert clearing_invariants(p)["advances"] == -9_94

    # day 3: m0 sells again: its settlement repays the advance first, then pays the rest
    day3 = p.today()
    p.order("30.00", splits=[(0, "30.00")])
    settle_the_day(p)
    s3 = {r["sub_merchant_id"] or "platform": r for r in p.get(
        f"/settlements?settlement_date={day3.isoformat()}").json()["data"]}
    assert (s3[m0]["carried_in"], s3[m0]["advance_repaid"], s3[m0]["paid"],
            s3[m0]["carried_out"]) == (money("-9.94"), money("9.94"), money("19.88"),
                                       money("0.00"))
    assert p.balance(p.merchant_accounts[0]) == 99_40 + 19_88
    assert clearing_invariants(p)["advances"] == 0
    for day in (day1, day2, day3):
        assert p.get(f"/reconciliation/{day.isoformat()}").json()["ledger_agrees"] is True


def test_refund_of_a_settled_split_order_takes_each_share_from_its_sub_merchant(app, http):
    p = setup_platform(app, http)
    m0, m1 = p.merchants
    p.advance_to(next_cutoff(p, 10))
    order = p.order("100.00", splits=[(0, "60.00"), (1, "39.00")], fee="1.00")
    settle_the_day(p)
    day2 = p.today()
    refund = p.post(f"/orders/{order['id']}/refunds", {"amount": money("30.00")}).json()
    assert [s["amount"]["amount"] for s in refund["splits"]] == ["18.00", "11.70", "0.30"]
    assert refund["advanced"] == money("30.00")
    settle_the_day(p)
    s2 = {r["sub_merchant_id"] or "platform": r for r in p.get(
        f"/settlements?settlement_date={day2.isoformat()}").json()["data"]}
    # each owes its share less the commission given back; the platform its share and those
    assert {k: (r["advanced"]["amount"], r["carried_out"]["amount"]) for k, r in s2.items()} == {
        m0: ("17.89", "-17.89"), m1: ("11.55", "-11.55"), "platform": ("0.56", "-0.56")}
    assert clearing_invariants(p)["advances"] == -30_00


def test_32_concurrent_refunds_of_a_settled_order_never_exceed_the_collected_amount(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    order = p.order("100.00", splits=[(0, "70.00"), (1, "30.00")])
    settle_the_day(p)
    results = concurrent_refunds(p, order["id"], "5.00")
    assert sorted(set(results)) == [201, 409], results
    assert results.count(201) == 20
    assert p.get(f"/orders/{order['id']}").json()["refunded"] == money("100.00")
    totals = clearing_invariants(p)
    assert totals["advances"] == -100_00 and totals["clearing"] == 0
