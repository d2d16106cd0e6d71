"""Refunds: partial and repeated, never more than collected (also 32 at once), commissions
given back in proportion, and the money back where it came from."""

from __future__ import annotations

import threading

from tests.products.collection.support import clearing_invariants, money, setup_platform
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
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(32)

    def refund(i: int) -> None:
        barrier.wait()
        response = p.post(f"/orders/{order['id']}/refunds", {"amount": money("5.00")},
                          idempotency_key=f"concurrent-{i}")
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(results)) == [201, 409], results
    assert results.count(201) == 20
    view = p.get(f"/orders/{order['id']}").json()
    assert view["refunded"] == money("100.00")
    totals = clearing_invariants(p)
    assert totals["refunded"] == 10000 and totals["clearing"] == 0


def test_refund_of_a_settled_order_needs_money_in_clearing(app, http):
    p = setup_platform(app, http)
    order = p.order("50.00")
    p.advance(86400 + 120)
    p.run_jobs()
    # settled: the clearing account is empty, so the refund cannot be paid yet
    problem(p.post(f"/orders/{order['id']}/refunds", {"amount": money("10.00")}), 409,
            "clearing_funds_short")
    assert p.get(f"/orders/{order['id']}").json()["refunded"] == money("0.00")
    p.order("20.00")
    refund = p.post(f"/orders/{order['id']}/refunds", {"amount": money("10.00")})
    assert refund.status_code == 201, refund.text
    clearing_invariants(p)
