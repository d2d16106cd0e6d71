"""Daily settlement at the cut-off and the reconciliation statement of each day."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from sqlalchemy import select

from gateway.events import Event
from products.accounts.reconciliation import ReconciliationStatementOut
from tests.products.collection.support import (
    clearing_invariants,
    money,
    next_cutoff,
    setup_platform,
)
from tests.tools.api import problem


def settlements(p, day):
    rows = p.get(f"/settlements?settlement_date={day.isoformat()}&limit=100").json()["data"]
    return {(r["sub_merchant_id"] or "platform"): r for r in rows}


def test_three_days_of_settlement_with_refunds_after_settlement_and_statements(app, http):
    p = setup_platform(app, http)
    m0, m1 = p.merchants
    acc0, acc1 = p.merchant_accounts
    p.advance_to(next_cutoff(p, 10))  # 10:00 in Shanghai: far from the midnight cut-off
    day1 = p.today()

    a = p.order("100.00", splits=[(0, "60.00"), (1, "39.00")], fee="1.00", number="A-1")
    b = p.order("50.00", splits=[(0, "50.00")], number="B-1")
    p.post(f"/orders/{a['id']}/refunds", {"amount": money("30.00"), "refund_reference": "RA-1"})
    failed = p.order("4040.01", number="F-1")
    pending_va = p.post("/virtual-accounts", {"label": "late payer"}).json()
    late = p.post("/orders", {
        "merchant_order_no": "V-1", "amount": money("5.00"),
        "payer": {"method": "virtual_account", "virtual_account_id": pending_va["id"],
                  "expires_in_seconds": 2 * 86400},
        "splits": [{"sub_merchant_id": m0, "amount": money("5.00")}]}).json()

    # before the cut-off nothing is settled and the statement is not ready
    problem(p.get(f"/reconciliation/{day1.isoformat()}"), 409, "statement_not_ready")
    assert p.run_jobs().get("collection.settle", 0) == 0

    p.advance_to(next_cutoff(p, 0, 2))  # day 1 closed
    day2 = p.today()
    p.post(f"/virtual-accounts/{pending_va['id']}/simulate-incoming",
           {"amount": money("5.00"), "remitter_name": "张伟"})  # pays V-1 on day 2
    p.run_jobs()
    s1 = settlements(p, day1)
    assert set(s1) == {m0, m1, "platform"}
    # m0: 110.00 gross, commission 0.36 + 0.30 less 0.11 given back, refunded 18.00
    assert (s1[m0]["gross"], s1[m0]["fees"], s1[m0]["refunded"], s1[m0]["paid"]) == (
        money("110.00"), money("0.55"), money("18.00"), money("91.45"))
    assert (s1[m1]["gross"], s1[m1]["fees"], s1[m1]["refunded"], s1[m1]["paid"]) == (
        money("39.00"), money("0.35"), money("11.70"), money("26.95"))
    # the platform: its own 1.00 and the commissions, less what was given back
    assert (s1["platform"]["gross"], s1["platform"]["refunded"], s1["platform"]["paid"]) == (
        money("2.16"), money("0.56"), money("1.60"))
    assert all(r["status"] == "paid" and r["carried_out"] == money("0.00") for r in s1.values())
    assert p.balance(acc0) == 9145 and p.balance(acc1) == 2695
    assert p.balance(p.platform_account) == 160
    assert p.settings()["settled_through"] == day1.isoformat()

    statement = p.get(f"/reconciliation/{day1.isoformat()}").json()
    assert statement["ledger_agrees"] is True
    assert statement["opening_balance"] == money("0.00")
    assert statement["closing_balance"] == money("120.00")
    lines = {(line["kind"], line["reference"]): line for line in statement["lines"]}
    assert lines[("order", "A-1")]["clearing_effect"] == money("100.00")
    assert lines[("order", "F-1")]["status"] == "failed"
    assert lines[("order", "F-1")]["clearing_effect"] == money("0.00")
    assert lines[("order", "V-1")]["status"] == "pending"
    assert lines[("refund", "RA-1")]["clearing_effect"] == money("-30.00")
    assert statement["totals"]["order"]["count"] == 4
    assert statement["summary"]["settlement_of_this_date"]["paid"] == money("120.00")
    assert not any(line["kind"] == "settlement" for line in statement["lines"])

    # day 2: a refund of the settled order B is paid at once, advanced by the bank, and taken
    # from m0's next settlement
    c = p.order("80.00", splits=[(1, "80.00")], number="C-2")
    refund_b = p.post(f"/orders/{b['id']}/refunds", {"amount": money("50.00")})
    assert refund_b.status_code == 201, refund_b.text
    assert refund_b.json()["advanced"] == money("50.00")
    p.advance_to(next_cutoff(p, 0, 2))
    day3 = p.today()
    p.run_jobs()
    s2 = settlements(p, day2)
    # m0: V-1's 5.00 (commission 0.03) less the 50.00 refund (its 0.30 commission given back):
    # its 4.97 repays the bank's 49.70 advance in part, the rest is carried
    assert s2[m0]["status"] == "carried" and s2[m0]["carried_out"] == money("-44.73")
    assert s2[m0]["net"] == money("-44.73") and s2[m0]["paid"] == money("0.00")
    assert (s2[m0]["advanced"], s2[m0]["advance_repaid"]) == (money("49.70"), money("4.97"))
    # the bank fronted m0's refund, not the clearing account: m1 is paid its whole net
    assert s2[m1]["net"] == money("79.50")
    assert s2[m1]["status"] == "paid" and s2[m1]["paid"] == money("79.50")
    assert s2[m1]["carried_out"] == money("0.00") and s2[m1]["advance_repaid"] == money("0.00")
    # the platform repays the 0.30 commission it gives back and is paid the rest
    assert (s2["platform"]["advanced"], s2["platform"]["advance_repaid"]) == (
        money("0.30"), money("0.30"))
    assert s2["platform"]["status"] == "paid" and s2["platform"]["paid"] == money("0.23")
    assert p.clearing() == 0
    statement2 = p.get(f"/reconciliation/{day2.isoformat()}?format=json").json()
    assert statement2["ledger_agrees"] is True
    assert statement2["opening_balance"] == money("120.00")
    assert statement2["closing_balance"] == money("85.00")
    kinds = [line["kind"] for line in statement2["lines"]]
    assert kinds.count("settlement") == 3
    v1 = [line for line in statement2["lines"] if line["reference"] == "V-1"][0]
    assert v1["status"] == "succeeded" and v1["clearing_effect"] == money("5.00")
    rb = [line for line in statement2["lines"] if line["id"] == refund_b.json()["id"]][0]
    assert rb["clearing_effect"] == money("0.00") and rb["detail"]["funded_by"] == "advance"

    # day 3: m0 sells again; it repays the rest of the advance and is paid what is left
    p.order("100.00", splits=[(0, "100.00")], number="D-3")
    p.advance_to(next_cutoff(p, 0, 2))
    p.run_jobs()
    s3 = settlements(p, day3)
    assert s3[m0]["carried_in"] == money("-44.73") and s3[m0]["paid"] == money("54.67")
    assert s3[m0]["advance_repaid"] == money("44.73") and s3[m0]["carried_out"] == money("0.00")
    assert m1 not in s3  # nothing owed to it, nothing sold
    assert s3["platform"]["carried_in"] == money("0.00")
    assert s3["platform"]["paid"] == money("0.60")
    assert p.clearing() == 0
    # the statement of day 3 shows day 2's repayments as their own lines
    statement3 = p.get(f"/reconciliation/{day3.isoformat()}").json()
    ReconciliationStatementOut.model_validate(statement3)  # the document's shape
    assert statement3["ledger_agrees"] is True
    repayments = {line["detail"]["payee"]: line for line in statement3["lines"]
                  if line["kind"] == "advance_repayment"}
    assert {k: (v["amount"], v["clearing_effect"]) for k, v in repayments.items()} == {
        m0: (money("4.97"), money("-4.97")), "platform": (money("0.30"), money("-0.30"))}
    assert statement3["totals"]["advance_repayment"]["amount"] == money("5.27")
    assert statement3["summary"]["settlement_of_this_date"]["advance_repaid"] == money("44.73")
    totals = clearing_invariants(p)
    assert totals["collected"] == 100_00 + 50_00 + 5_00 + 80_00 + 100_00
    assert totals["advances"] == 0  # every advance repaid
    assert c["status"] == "succeeded" and failed["status"] == "failed"
    assert late["status"] == "pending"
    with p.database.transaction() as s:
        types = list(s.scalars(select(Event.type).where(Event.tenant_id == p.tenant_id,
                                                        Event.type.startswith("settlement."))))
    assert types.count("settlement.paid") == 3 + 2 + 2
    assert types.count("settlement.carried_forward") == 1


def test_statement_as_csv_and_the_comparison_of_uploaded_records(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    day = p.today()
    one = p.order("10.00", number="ORD-1")
    p.order("20.00", number="ORD-2")
    p.order("4040.01", number="ORD-3")
    p.post(f"/orders/{one['id']}/refunds", {"amount": money("4.00"), "refund_reference": "R-1"})
    p.advance_to(next_cutoff(p, 0, 2))

    response = p.get(f"/reconciliation/{day.isoformat()}", headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0]["row_type"] == "opening_balance" and rows[0]["amount"] == "0.00"
    assert rows[-1]["row_type"] == "closing_balance" and rows[-1]["amount"] == "26.00"
    assert rows[-1]["status"] == "agrees"
    detail = [r for r in rows if r["row_type"] == "line"]
    assert {(r["kind"], r["reference"], r["status"], r["amount"]) for r in detail} == {
        ("order", "ORD-1", "succeeded", "10.00"), ("order", "ORD-2", "succeeded", "20.00"),
        ("order", "ORD-3", "failed", "4040.01"), ("refund", "R-1", "succeeded", "4.00")}
    assert p.get(f"/reconciliation/{day.isoformat()}?format=csv").text == response.text
    # negotiated as RFC 9110 says, and caches are told so
    assert response.headers["vary"] == "Accept"
    for accept, media in (("TEXT/CSV", "text/csv"), ("text/csv;q=0, */*", "application/json"),
                          ("application/json;q=0.5, text/csv;q=0.9", "text/csv"),
                          (None, "application/json")):
        chosen = p.get(f"/reconciliation/{day.isoformat()}",
                       headers={"Accept": accept} if accept else {})
        assert chosen.headers["content-type"].startswith(media), accept
        assert chosen.headers["vary"] == "Accept"
    problem(p.get(f"/reconciliation/{day.isoformat()}", headers={"Accept": "application/xml"}),
            406, "not_acceptable")

    upload = ("kind,reference,amount,status\r\n"
              "order,ORD-1,10.00,succeeded\r\n"   # matches
              "order,ORD-2,21.00,succeeded\r\n"   # amount differs
              "order,ORD-3,4040.01,succeeded\r\n"  # status differs
              "order,ORD-9,5.00,succeeded\r\n")   # the bank has no such order
    compared = p.pc.request("POST", f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                            content=upload.encode(), headers={"Content-Type": "text/csv"})
    assert compared.status_code == 201, compared.text
    diff = compared.json()
    assert diff["agrees"] is False and diff["matched"] == 1 and diff["record_count"] == 4
    assert [d["reference"] for d in diff["amount_mismatches"]] == ["ORD-2"]
    assert diff["amount_mismatches"][0]["bank_amount"] == money("20.00")
    assert [(d["reference"], d["bank_status"], d["platform_status"])
            for d in diff["status_mismatches"]] == [("ORD-3", "failed", "succeeded")]
    assert [d["reference"] for d in diff["missing_at_bank"]] == ["ORD-9"]
    assert diff["missing_at_platform"] == []  # only the kinds uploaded (orders) are compared

    records = {"records": [
        {"kind": "order", "reference": "ORD-1", "amount": money("10.00"), "status": "succeeded"},
        {"kind": "order", "reference": "ORD-2", "amount": "20.00", "status": "SUCCEEDED"},
        {"kind": "order", "reference": "ORD-3", "amount": "4040.01", "status": "failed"},
        {"kind": "refund", "reference": "R-1", "amount": "4.00", "status": "succeeded"}]}
    agreed = p.pc.request("POST", f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                          content=json.dumps(records).encode(),
                          headers={"Content-Type": "application/json"})
    assert agreed.status_code == 201 and agreed.json()["agrees"] is True
    assert agreed.json()["matched"] == 4

    def bad(body, content_type, status=422, code="invalid_records"):
        response = p.pc.request("POST",
                                f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                                content=body, headers={"Content-Type": content_type})
        return problem(response, status, code)

    errors = bad(b"kind,reference,amount,status\norder,Y,1.5.0,ok\norder,X,1.00,ok\n"
                 b"order,,1.00,ok\norder,X,2.00,ok\n", "text/csv")["errors"]
    assert [e["field"] for e in errors] == ["row 1.amount", "row 3.reference", "row 4.reference"]
    assert "duplicates" in errors[2]["message"]
    bad(b"reference,amount\nX,1.00\n", "text/csv")
    bad(b'{"records": [{"kind": "order", "reference": "X", "amount": 1.0, "status": "ok"}]}',
        "application/json")
    bad(b"not json", "application/json")
    # JSON nested deeper than the parser's stack (once a 500, found by fuzzing)
    bad(b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json")
    bad(b"\xff\xfe", "text/csv")
    bad(b"x", "application/xml", 415, "unsupported_media_type")
    # A file saved with bare CR line ends (once a 500) compares like any other.
    classic = p.pc.request("POST", f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                           content=upload.replace("\r\n", "\r").encode(),
                           headers={"Content-Type": "text/csv"})
    assert classic.status_code == 201, classic.text
    assert {k: classic.json()[k] for k in ("matched", "record_count")} == {
        "matched": 1, "record_count": 4}
    unreadable = bad(b"kind,reference,amount,status\norder,ORD-1,10.00,succeeded\norder,"
                     + b"x" * 200_000 + b",1.00,succeeded\n", "text/csv")
    assert "record 2" in unreadable["detail"]
    future = (day + timedelta(days=5)).isoformat()
    problem(p.pc.request("POST", f"/v1/collection/reconciliation/{future}/comparisons",
                         content=upload.encode(), headers={"Content-Type": "text/csv"}), 409,
            "statement_not_ready")
    problem(p.get("/reconciliation/2026-13-01"), 422)


def test_cutoff_rolls_late_orders_to_the_next_date_and_locks_after_the_first_order(app, http):
    p = setup_platform(app, http, cutoff="23:00")
    assert p.settings()["cutoff"] == "23:00"
    p.advance_to(next_cutoff(p, 22, 30))
    before = p.order("10.00")
    day = p.today()
    p.advance_to(next_cutoff(p, 23, 30))
    after = p.order("10.00")
    assert before["business_date"] == day.isoformat()
    assert after["business_date"] == (day + timedelta(days=1)).isoformat()
    problem(p.patch("/settings", {"cutoff": "22:00"}), 409, "cutoff_locked")
    problem(p.patch("/settings", {"cutoff": "25:00"}), 422, "validation_failed")
    problem(p.patch("/settings", {"fee_account_id": "acct_nope"}), 422, "account_not_usable")
    p.advance(120)  # 23:32: day `day` closed at 23:00
    p.run_jobs()
    statement = p.get(f"/reconciliation/{day.isoformat()}").json()
    assert statement["cutoff"] == "23:00"
    assert [line["id"] for line in statement["lines"]] == [before["id"]]
    assert statement["ledger_agrees"] is True
    assert p.get(f"/settlements?settlement_date={day.isoformat()}").json()["data"]
    assert p.settings()["settled_through"] == day.isoformat()


def test_platform_fees_wait_for_a_fee_account(app, http):
    p = setup_platform(app, http, fee_account=False,
                       fee_rules=[{"type": "percentage", "rate": "0.01"}])
    assert p.settings()["fee_account_id"] is None
    problem(p.post("/virtual-accounts", {"label": "x"}), 409, "platform_account_required")
    p.order("100.00")
    p.advance(86400 + 120)
    p.run_jobs()
    by = {r["payee_type"]: r for r in p.get("/settlements").json()["data"]}
    assert by["merchant"]["paid"] == money("99.00")
    assert by["platform"]["status"] == "carried" and by["platform"]["carried_out"] == money("1.00")
    assert p.patch("/settings", {"fee_account_id": p.platform_account}).status_code == 200
    p.order("10.00")
    p.advance(86400)
    p.run_jobs()
    assert p.balance(p.platform_account) == 110
    clearing_invariants(p)
