"""Collection orders by mandate and by virtual account, splits, fees and their rules."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from products.collection.models import Order
from tests.products.collection.support import Platform, money, ref, setup_platform
from tests.tools.api import new_partner_client, problem


def order_count(p: Platform) -> int:
    with p.database.transaction() as s:
        return s.scalar(select(func.count()).select_from(Order).where(
            Order.tenant_id == p.tenant_id)) or 0


def events(p: Platform, prefix: str) -> list[str]:
    from gateway.events import Event

    with p.database.transaction() as s:
        return list(s.scalars(select(Event.type).where(Event.tenant_id == p.tenant_id,
                                                       Event.type.startswith(prefix))
                              .order_by(Event.created_at, Event.id)))


def test_mandate_order_succeeds_and_moves_money_to_clearing(app, http):
    p = setup_platform(app, http)
    settings = p.settings()
    assert len(settings["clearing_account_ids"]) == 8
    assert settings["clearing_account_id"] == settings["clearing_account_ids"][0]
    before = p.balance(p.payer_account)
    order = p.order("100.00", splits=[(0, "60.00"), (1, "39.00")], fee="1.00")
    assert order["status"] == "succeeded"
    assert order["scene"] == "general" and order["business_date"] == p.today().isoformat()
    assert [s["amount"]["amount"] for s in order["splits"]] == ["60.00", "39.00", "1.00"]
    # 0.6 % of 60.00, a fixed 0.50, and the platform's own share carries no commission
    assert [s["fee"]["amount"] for s in order["splits"]] == ["0.36", "0.50", "0.00"]
    assert [s["sub_merchant_id"] for s in order["splits"]] == p.merchants + [None]
    assert order["refundable"] == money("100.00")
    assert p.balance(p.payer_account) == before - 10000
    assert p.clearing() == 10000
    again = p.get(f"/orders/{order['id']}")
    assert again.status_code == 200 and again.json() == order
    assert events(p, "collection_order.") == ["collection_order.succeeded"]
    listed = p.get("/orders?status=succeeded").json()
    assert [o["id"] for o in listed["data"]] == [order["id"]]


def test_bad_orders_are_refused_and_change_nothing(app, http):
    p = setup_platform(app, http)
    payer = p.balance(p.payer_account)
    base = {"merchant_order_no": ref(), "amount": money("10.00"),
            "payer": {"method": "mandate", "mandate_id": p.extra["mandate_id"]},
            "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("10.00")}]}

    def send(change, status, code=None, **kwargs):
        body = {**base, **change}
        return problem(p.post("/orders", body, **kwargs), status, code)

    send({"splits": [{"sub_merchant_id": p.merchants[0], "amount": money("9.99")}]}, 422,
         "splits_do_not_sum")
    send({"platform_fee": money("0.01")}, 422, "splits_do_not_sum")
    send({"splits": [{"sub_merchant_id": "csm_nope", "amount": money("10.00")}]}, 422,
         "sub_merchant_not_found")
    send({"splits": [{"sub_merchant_id": p.merchants[0], "amount": money("5.00")},
                     {"sub_merchant_id": p.merchants[0], "amount": money("5.00")}]}, 422,
         "invalid_split")
    send({"splits": []}, 422, "validation_failed")
    send({"amount": {"amount": 10.0, "currency": "CNY"}}, 422, "validation_failed")
    send({"amount": money("0.00")}, 422, "validation_failed")
    send({"payer": {"method": "cash"}}, 422, "validation_failed")
    send({"payer": {"method": "mandate", "mandate_id": "cmd_nope"}}, 404, "mandate_not_found")
    send({"merchant_order_no": "bad number with spaces"}, 422, "validation_failed")
    # money moves: the Idempotency-Key is required
    response = p.pc.http.post("/v1/collection/orders", json=base, headers=p.pc.auth("POST"))
    problem(response, 400, "idempotency_key_required")
    assert order_count(p) == 0
    assert p.balance(p.payer_account) == payer and p.clearing() == 0

    first = p.order("10.00", number="ORD-SAME")
    problem(p.post("/orders", {**base, "merchant_order_no": "ORD-SAME"}), 409,
            "duplicate_reference")
    assert order_count(p) == 1 and first["status"] == "succeeded"


def test_idempotency_key_replays_the_order(app, http):
    p = setup_platform(app, http)
    body = {"merchant_order_no": ref(), "amount": money("12.34"),
            "payer": {"method": "mandate", "mandate_id": p.extra["mandate_id"]},
            "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("12.34")}]}
    first = p.post("/orders", body, idempotency_key="order-1")
    second = p.post("/orders", body, idempotency_key="order-1")
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json() == second.json()
    assert order_count(p) == 1


def test_mandate_limits_revocation_and_expiry(app, http):
    p = setup_platform(app, http, mandate=False)
    created = p.post("/mandates", {
        "reference": "MD-LIMITS", "payer_name": "李娜", "payer_account_id": p.payer_account,
        "per_debit_limit": money("100.00"), "monthly_limit": money("150.00"),
        "expires_on": (p.today() + timedelta(days=3)).isoformat()})
    assert created.status_code == 201, created.text
    mandate = created.json()
    assert mandate["payer_name"] == "李*" and mandate["status"] == "active"
    mid = mandate["id"]
    problem(p.post("/mandates", {**{k: v for k, v in mandate.items() if False},
                                 "reference": "MD-LIMITS", "payer_name": "李娜",
                                 "payer_account_id": p.payer_account,
                                 "per_debit_limit": money("100.00"),
                                 "monthly_limit": money("150.00"),
                                 "expires_on": p.today().isoformat()}), 409, "duplicate_reference")
    problem(p.post("/mandates", {"reference": "MD-X", "payer_name": "李娜",
                                 "payer_account_id": p.payer_account,
                                 "per_debit_limit": money("200.00"),
                                 "monthly_limit": money("150.00"),
                                 "expires_on": p.today().isoformat()}), 422, "validation_failed")
    problem(p.post("/mandates", {"reference": "MD-Y", "payer_name": "李娜",
                                 "payer_account_id": "acct_nope",
                                 "per_debit_limit": money("1.00"), "monthly_limit": money("1.00"),
                                 "expires_on": p.today().isoformat()}), 422, "account_not_usable")

    body = problem(p.post("/orders", {
        "merchant_order_no": ref(), "amount": money("100.01"),
        "payer": {"method": "mandate", "mandate_id": mid},
        "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("100.01")}]}), 409,
        "mandate_limit_exceeded")
    assert body["limit"] == "per_debit"
    p.order("100.00", mandate_id=mid)
    body = problem(p.post("/orders", {
        "merchant_order_no": ref(), "amount": money("50.01"),
        "payer": {"method": "mandate", "mandate_id": mid},
        "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("50.01")}]}), 409,
        "mandate_limit_exceeded")
    assert body["limit"] == "monthly"
    p.order("50.00", mandate_id=mid)
    view = p.get(f"/mandates/{mid}").json()
    assert view["debited_this_month"] == money("150.00")
    assert view["remaining_this_month"] == money("0.00")
    assert order_count(p) == 2

    revoked = p.post(f"/mandates/{mid}/revoke", {"requested_by": "payer", "reason": "不再使用"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_by"] == "payer"
    problem(p.post(f"/mandates/{mid}/revoke", {"requested_by": "payer"}), 409, "invalid_state")
    problem(p.post("/orders", {
        "merchant_order_no": ref(), "amount": money("1.00"),
        "payer": {"method": "mandate", "mandate_id": mid},
        "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("1.00")}]}), 409,
        "mandate_not_active")

    other = p.post("/mandates", {
        "reference": "MD-EXPIRES", "payer_name": "李娜", "payer_account_id": p.payer_account,
        "per_debit_limit": money("100.00"), "monthly_limit": money("150.00"),
        "expires_on": p.today().isoformat()}).json()
    p.advance(2 * 86400)
    assert p.run_jobs().get("collection.mandate_expiry", 0) >= 1
    assert p.get(f"/mandates/{other['id']}").json()["status"] == "expired"
    assert "debit_mandate.expired" in events(p, "debit_mandate.")


def test_payer_bank_refusals_record_a_failed_order(app, http):
    p = setup_platform(app, http, payer_funds_fen=50_000_00)
    failed = p.order("4040.01")
    assert failed["status"] == "failed" and failed["failure_code"] == "insufficient_funds"
    assert failed["refundable"] == money("0.00")
    short = p.order("49000.00")
    assert short["status"] == "succeeded"
    real = p.order("1500.00")
    assert real["status"] == "failed" and real["failure_code"] == "insufficient_funds"
    pending = p.order("4040.05")
    assert pending["status"] == "pending"
    assert p.clearing() == 4900000
    p.advance(61)
    p.run_jobs()
    resolved = p.get(f"/orders/{pending['id']}").json()
    assert resolved["status"] == "failed" and resolved["failure_code"] == "processing_failed"
    problem(p.post(f"/orders/{failed['id']}/refunds", {"amount": money("1.00")}), 409,
            "order_not_refundable")
    assert p.clearing() == 4900000


def test_virtual_account_order_is_paid_by_transfer_or_expires(app, http):
    p = setup_platform(app, http)
    va = p.post("/virtual-accounts", {"label": "付款人 10023"})
    assert va.status_code == 201, va.text
    account = va.json()
    assert len(account["account_number"]) >= 12 and account["owner_type"] == "payer"

    first = p.order("30.00", virtual_account_id=account["id"])
    second = p.order("20.00", virtual_account_id=account["id"], number="ORD-NAMED")
    assert first["status"] == second["status"] == "pending"
    assert first["virtual_account_number"] == account["account_number"]

    # 25.00 names the second order in its memo: it pays that one, 5.00 stays as credit
    incoming = p.post(f"/virtual-accounts/{account['id']}/simulate-incoming", {
        "amount": money("25.00"), "remitter_name": "苏州恒达精密机械有限公司",
        "memo": "ORD-NAMED"})
    assert incoming.status_code == 201, incoming.text
    body = incoming.json()
    assert body["status"] == "partially_applied" and body["applied"] == money("20.00")
    assert [a["id"] for a in body["applications"]] == [second["id"]]
    assert body["remitter_name"].startswith("苏") and "*" in body["remitter_name"]
    assert p.get(f"/orders/{second['id']}").json()["status"] == "succeeded"
    assert p.get(f"/virtual-accounts/{account['id']}").json()["unapplied"] == money("5.00")
    assert p.clearing() == 2000

    # 25.00 more: the credit (30.00) pays the older order in full
    p.post(f"/virtual-accounts/{account['id']}/simulate-incoming",
           {"amount": money("25.00"), "remitter_name": "张伟"})
    assert p.get(f"/orders/{first['id']}").json()["status"] == "succeeded"
    assert p.clearing() == 5000

    # an order nobody pays expires; money arriving later is kept as credit, which pays the
    # next order at once
    late = p.order("40.00", virtual_account_id=account["id"])
    p.advance(1830)
    p.run_jobs()
    expired = p.get(f"/orders/{late['id']}").json()
    assert expired["status"] == "expired"
    assert expired["finalized_at"] == expired["expires_at"]  # not when the job noticed
    p.post(f"/virtual-accounts/{account['id']}/simulate-incoming",
           {"amount": money("40.00"), "remitter_name": "张伟", "memo": late["merchant_order_no"]})
    assert p.get(f"/orders/{late['id']}").json()["status"] == "expired"
    assert p.get(f"/virtual-accounts/{account['id']}").json()["unapplied"] == money("40.00")
    paid_at_once = p.order("40.00", virtual_account_id=account["id"])
    assert paid_at_once["status"] == "succeeded"
    transfers = p.get(f"/virtual-accounts/{account['id']}/incoming-transfers").json()["data"]
    # first in, first applied: the first transfer's 5.00 credit paid the older order with the
    # second; the third's 40.00 paid the order created after it
    assert [(t["status"], t["applied"]) for t in transfers] == [
        ("applied", money("40.00")), ("applied", money("25.00")), ("applied", money("25.00"))]
    assert events(p, "virtual_account.") == ["virtual_account.created"] + [
        "virtual_account.funds_received"] * 3


def transfer(p: Platform, account_id: str, amount: str, memo: str = "") -> dict:
    response = p.post(f"/virtual-accounts/{account_id}/simulate-incoming",
                      {"amount": money(amount), "remitter_name": "张伟", "memo": memo})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_memo_names_an_order_only_as_a_whole_token(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    short = p.order("5.00", virtual_account_id=account["id"], number="X-1")
    long = p.order("8.00", virtual_account_id=account["id"], number="X-12")
    other = p.order("5.00", virtual_account_id=account["id"], number="X-2")

    # "X-12" does not name the older "X-1": the 8.00 pays X-12 and nothing else
    paid = transfer(p, account["id"], "8.00", "X-12")
    assert [a["id"] for a in paid["applications"]] == [long["id"]]
    assert p.get(f"/orders/{short['id']}").json()["status"] == "pending"

    # Chinese text and punctuation delimit a token; a longer token containing the reference
    # ("AX-1", "X-1_b") does not name it, so the credit goes to the oldest order
    paid = transfer(p, account["id"], "5.00", "货款X-2，谢谢")
    assert [a["id"] for a in paid["applications"]] == [other["id"]]
    paid = transfer(p, account["id"], "5.00", "AX-1 X-1_b")
    assert [a["id"] for a in paid["applications"]] == [short["id"]]


def test_a_memo_naming_two_orders_pays_the_longest_reference_first(app, http):
    from products.collection.virtual import memo_rank

    assert memo_rank("X-12", "X-1") == (False, 0)
    assert memo_rank(" X-12 ", "X-12", "cord_x") == (True, 4)
    assert memo_rank("X-1 X-12", "X-1") < memo_rank("X-1 X-12", "X-12")
    assert memo_rank("for X-1.", "X-1") == (False, 3)
    assert memo_rank("", "X-1") == memo_rank(None, "X-1") == (False, 0)

    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    p.order("5.00", virtual_account_id=account["id"], number="X-1")
    long = p.order("5.00", virtual_account_id=account["id"], number="X-12")
    paid = transfer(p, account["id"], "5.00", "X-1 X-12")
    assert [a["id"] for a in paid["applications"]] == [long["id"]]


def test_each_incoming_transfer_says_how_much_of_its_own_money_was_applied(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    order = p.order("20.00", virtual_account_id=account["id"])
    first = transfer(p, account["id"], "10.00", order["merchant_order_no"])
    assert (first["status"], first["applied"]) == ("unapplied", money("0.00"))
    # the order takes the first transfer's 10.00, then 10.00 of the second; 5.00 is credit
    second = transfer(p, account["id"], "15.00", order["merchant_order_no"])
    assert (second["status"], second["applied"]) == ("partially_applied", money("10.00"))

    def applied() -> list[tuple[str, dict]]:
        rows = p.get(f"/virtual-accounts/{account['id']}/incoming-transfers").json()["data"]
        return [(t["status"], t["applied"]) for t in sorted(rows, key=lambda t: t["id"])]

    assert applied() == [("applied", money("10.00")), ("partially_applied", money("10.00"))]
    assert p.get(f"/virtual-accounts/{account['id']}").json()["unapplied"] == money("5.00")
    # the credit left pays a later order: the second transfer's row says so
    assert p.order("5.00", virtual_account_id=account["id"])["status"] == "succeeded"
    assert applied() == [("applied", money("10.00")), ("applied", money("15.00"))]


def test_a_pending_order_keeps_the_fee_rule_of_its_creation(app, http):
    p = setup_platform(app, http)
    fixed = p.merchants[1]  # a fixed 0.50 per order share
    account = p.post("/virtual-accounts", {"label": "付款人"}).json()
    before = p.order("100.00", virtual_account_id=account["id"], splits=[(1, "100.00")])
    changed = p.patch(f"/sub-merchants/{fixed}", {"fee_rule": {"type": "percentage",
                                                               "rate": "0.2"}})
    assert changed.status_code == 200, changed.text
    after = p.order("100.00", virtual_account_id=account["id"], splits=[(1, "100.00")])

    # one transfer pays both: the older order under the old rule, the newer under the new one
    transfer(p, account["id"], "200.00")
    paid = [p.get(f"/orders/{o['id']}").json() for o in (before, after)]
    assert [o["status"] for o in paid] == ["succeeded", "succeeded"]
    assert [o["splits"][0]["fee"] for o in paid] == [money("0.50"), money("20.00")]


def test_collection_accounts_cannot_be_debited_outside_collection(app, http):
    import pytest

    from products.accounts import service as accounts
    from products.accounts.errors import AccountNotFound

    p = setup_platform(app, http)
    p.order("10.00")
    clearing = p.settings()["clearing_account_id"]
    va = p.post("/virtual-accounts", {"label": "x"}).json()
    p.post(f"/virtual-accounts/{va['id']}/simulate-incoming",
           {"amount": money("5.00"), "remitter_name": "张伟"})
    with p.database.transaction() as s:
        # the clearing account is the bank's: partners cannot even see it
        with pytest.raises(AccountNotFound):
            accounts.create_transfer(s, p.tenant_id, from_account_id=clearing,
                                     to_account_id=p.payer_account, amount_fen=100, actor="test")
        # a virtual account's credit moves only through collection's matcher
        record = accounts.create_transfer(s, p.tenant_id, from_account_id=va["ledger_account_id"],
                                          to_account_id=p.payer_account, amount_fen=100,
                                          actor="test")
        assert record.status == "failed" and record.failure_code == "debit_restricted"
        forged = accounts.create_transfer(s, p.tenant_id, from_account_id=va["ledger_account_id"],
                                          to_account_id=p.payer_account, amount_fen=100,
                                          actor="test", authorization="collection")
        assert forged.status == "failed" and forged.failure_code == "debit_not_authorized"
    assert p.clearing() == 1000 and p.balance(va["ledger_account_id"]) == 500


def test_simulated_transfers_are_sandbox_only_and_tenants_are_isolated(app, http):
    p = setup_platform(app, http)
    account = p.post("/virtual-accounts", {"label": "x"}).json()
    order = p.order("10.00")
    other = setup_platform(app, http, mandate=False)
    problem(other.get(f"/orders/{order['id']}"), 404, "order_not_found")
    problem(other.get(f"/virtual-accounts/{account['id']}"), 404, "virtual_account_not_found")
    problem(other.post(f"/virtual-accounts/{account['id']}/simulate-incoming",
                       {"amount": money("1.00"), "remitter_name": "张伟"}), 404,
            "virtual_account_not_found")
    problem(other.post(f"/orders/{order['id']}/refunds", {"amount": money("1.00")}), 404,
            "order_not_found")
    assert not other.get("/orders").json()["data"]

    prod = setup_platform(app, http, environment="production", mandate=False)
    prod_va = prod.post("/virtual-accounts", {"label": "x"})
    assert prod_va.status_code == 201, prod_va.text
    problem(prod.post(f"/virtual-accounts/{prod_va.json()['id']}/simulate-incoming",
                      {"amount": money("1.00"), "remitter_name": "张伟"}), 403, "sandbox_only")


def test_scopes_are_enforced(app, http):
    p = setup_platform(app, http)
    reader = new_partner_client(app, http, scopes=["collection:read"])
    response = reader.post("/v1/collection/orders", {
        "merchant_order_no": ref(), "amount": money("1.00"),
        "payer": {"method": "mandate", "mandate_id": p.extra["mandate_id"]},
        "splits": [{"sub_merchant_id": p.merchants[0], "amount": money("1.00")}]})
    problem(response, 403, "insufficient_scope")
    assert reader.get("/v1/collection/orders").status_code == 200
    problem(http.get("/v1/collection/orders"), 401)
