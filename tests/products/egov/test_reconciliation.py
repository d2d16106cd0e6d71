"""A portal compares its records of a day with the same upload, route name and answer as
collection's (`…/reconciliation/{date}/comparisons`); the old `…/differences` still answers and
is marked deprecated."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import SHANGHAI
from products.accounts.reconciliation import ReconciliationStatementOut
from tests.products.collection.support import next_cutoff, setup_platform
from tests.products.egov.helpers import (
    ORIGIN,
    advance,
    create_order,
    events,
    open_account,
    pay,
    run_jobs,
    setup_portal,
)
from tests.tools.api import problem


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def _closed_day(app, http, partner):  # type: ignore[no-untyped-def]
    setup_portal(app, partner)
    first = create_order(partner, amount=money("25.00"))
    second = create_order(partner, amount=money("100.00"))
    dropped = create_order(partner)
    pay(http, first)
    pay(http, second, method="qr")
    partner.post(f"/v1/egov/payment-orders/{dropped['id']}/cancel", {})
    day = datetime.fromisoformat(first["created_at"].replace("Z", "+00:00")).astimezone(
        SHANGHAI).date()
    advance(app, partner.tenant_id, 86400 + 60)
    return day, first, second, dropped


def _compare(partner, day, body: str, route: str = "comparisons"):  # type: ignore[no-untyped-def]
    return partner.post(f"/v1/egov/reconciliation/{day}/{route}", content=body.encode(),
                        headers={"Content-Type": "text/csv"})


def test_a_portal_compares_its_records_as_collection_does(app, http, partner):
    day, first, second, dropped = _closed_day(app, http, partner)
    records = ("kind,reference,id,amount,status\r\n"
               f"payment_order,{first['portal_reference']},,25.00,paid\r\n"
               f"payment_order,,{second['id']},99.00,paid\r\n"        # the id alone
               "payment_order,WB-UNKNOWN,,1.00,paid\r\n")
    compared = _compare(partner, day, records)
    assert compared.status_code == 201, compared.text
    answer = compared.json()
    assert answer["id"].startswith("egrec_")
    assert (answer["business_date"], answer["record_count"]) == (day.isoformat(), 3)
    assert answer["agrees"] is False and answer["matched"] == 1
    assert [m["id"] for m in answer["amount_mismatches"]] == [second["id"]]
    assert [m["reference"] for m in answer["missing_at_bank"]] == ["WB-UNKNOWN"]
    assert [m["reference"] for m in answer["missing_at_platform"]] == [dropped["portal_reference"]]
    # the cancelled order moved nothing: the bank's money is the two paid orders
    assert answer["totals"] == {"payment_order": {
        "bank": {"count": 2, "amount": money("125.00")},
        "platform": {"count": 3, "amount": money("125.00")}}}
    statement = partner.get(f"/v1/egov/reconciliation/{day}").json()
    assert statement["totals"]["payment_order"]["moved"] == answer["totals"]["payment_order"][
        "bank"]
    assert [e["resource"]["id"] for e in events(partner, "reconciliation.compared")] == [
        answer["id"]]

    # the very same answer's layout as a collection comparison's
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    collection_day = p.today()
    p.order("10.00", number="ORD-1")
    p.advance_to(next_cutoff(p, 0, 2))
    theirs = p.pc.request("POST", f"/v1/collection/reconciliation/{collection_day}/comparisons",
                          content=b"kind,reference,id,amount,status\r\norder,ORD-1,,10.00,"
                                  b"succeeded\r\n", headers={"Content-Type": "text/csv"})
    assert theirs.status_code == 201, theirs.text
    assert set(theirs.json()) == set(answer)


def test_a_bad_upload_is_refused_and_publishes_nothing(app, http, partner):
    day, *_ = _closed_day(app, http, partner)
    problem(_compare(partner, day, "nonsense"), 422, "invalid_records")
    problem(_compare(partner, day, "kind,reference,id,amount,status\r\n"
                                   "payment_order,,,1.00,paid\r\n"), 422, "invalid_records")
    problem(partner.post(f"/v1/egov/reconciliation/{day}/comparisons", content=b"x",
                         headers={"Content-Type": "application/xml"}), 415,
            "unsupported_media_type")
    assert events(partner, "reconciliation.compared") == []
    # a day not closed yet on the portal's clock
    problem(_compare(partner, day.replace(year=day.year + 1),
                     "kind,reference,amount,status\r\npayment_order,X,1.00,paid\r\n"), 409,
            "statement_not_ready")


def test_the_old_differences_route_still_answers(app, http, partner):
    day, first, second, dropped = _closed_day(app, http, partner)
    records = ("kind,reference,amount,status\r\n"
               f"payment_order,{first['portal_reference']},25.00,paid\r\n"
               f"payment_order,{second['portal_reference']},100.00,paid\r\n")
    old = _compare(partner, day, records, route="differences")
    assert old.status_code == 200, old.text
    body = old.json()
    assert body["business_date"] == day.isoformat()
    assert body["differences"]["matched"] == 2
    assert body["differences"]["totals"] == _compare(partner, day, records).json()["totals"]


def test_the_document_names_one_comparison_and_deprecates_the_old_route(http):
    document = http.get("/openapi.json").json()
    paths = document["paths"]
    new = paths["/v1/egov/reconciliation/{business_date}/comparisons"]["post"]
    theirs = paths["/v1/collection/reconciliation/{business_date}/comparisons"]["post"]
    assert new["operationId"] == "egov-compare-reconciliation"
    assert not new.get("deprecated", False)
    assert paths["/v1/egov/reconciliation/{business_date}/differences"]["post"]["deprecated"]
    for operation in (new, theirs):
        assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ComparisonOut"}
        assert operation["requestBody"]["content"]["text/csv"]["example"].startswith(
            "kind,reference,id,amount,status\n")


def test_orders_paid_into_the_previous_collection_account_stay_on_the_statement(app, http, partner):
    """The portal changes its collection account during the day: the order paid into the old
    account is still on the day's statement (with the account it was paid into), the balances
    cover both accounts and agree with the ledger, and a comparison finds nothing missing."""
    old_payee = setup_portal(app, partner)
    first = create_order(partner, amount=money("77.00"))
    pay(http, first)
    new_payee = open_account(app, partner.tenant_id, name="上海市财政局非税收入新专户")
    moved = partner.request("PUT", "/v1/egov/portal", json={
        "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": new_payee,
        "origins": [ORIGIN]})
    assert moved.status_code == 200, moved.text
    second = create_order(partner, amount=money("25.00"))
    pay(http, second)
    day = datetime.fromisoformat(first["created_at"].replace("Z", "+00:00")).astimezone(
        SHANGHAI).date()
    advance(app, partner.tenant_id, 86400 + 60)

    statement = partner.get(f"/v1/egov/reconciliation/{day}").json()
    paid_into = {line["reference"]: line["detail"]["payee_account_id"] for line in statement["lines"]}
    assert paid_into == {first["portal_reference"]: old_payee, second["portal_reference"]: new_payee}
    assert statement["clearing_account_id"] == new_payee
    assert statement["clearing_account_ids"] == [new_payee, old_payee]
    assert (statement["opening_balance"]["amount"], statement["closing_balance"]["amount"],
            statement["net_clearing_effect"]["amount"]) == ("0.00", "102.00", "102.00")
    assert statement["ledger_agrees"] is True
    csv_text = partner.get(f"/v1/egov/reconciliation/{day}?format=csv").text
    assert first["portal_reference"] in csv_text and old_payee in csv_text

    records = ("kind,reference,id,amount,status\r\n"
               f"payment_order,{first['portal_reference']},,77.00,paid\r\n"
               f"payment_order,{second['portal_reference']},,25.00,paid\r\n")
    answer = _compare(partner, day, records).json()
    assert answer["agrees"] is True and answer["missing_at_bank"] == [], answer


def test_an_expired_order_is_on_the_statement_of_the_day_it_expired(app, http, partner):
    """An order expires at its `expires_at`, whenever the platform notices: one expiring at
    23:50 and found at 01:00 the next day belongs to the day it expired."""
    setup_portal(app, partner)

    def now() -> datetime:
        return datetime.fromisoformat(partner.get("/sandbox/v1/clock").json()["now"]
                                      .replace("Z", "+00:00")).astimezone(SHANGHAI)

    day = now().date() + timedelta(days=1)
    expiry = datetime(day.year, day.month, day.day, 23, 50, tzinfo=SHANGHAI)
    order = create_order(partner, expires_at=expiry.isoformat())
    advance(app, partner.tenant_id, (expiry + timedelta(minutes=70) - now()).total_seconds())
    assert run_jobs(app, "egov.expire_orders") == {"egov.expire_orders": 1}
    advance(app, partner.tenant_id, 86400)
    statement = partner.get(f"/v1/egov/reconciliation/{day.isoformat()}").json()
    ReconciliationStatementOut.model_validate(statement)  # the document's shape
    listed = {line["id"]: line for line in statement["lines"]}
    assert listed[order["id"]]["status"] == "expired"
    assert datetime.fromisoformat(listed[order["id"]]["occurred_at"].replace("Z", "+00:00")) == expiry
    after = partner.get(f"/v1/egov/reconciliation/{(day + timedelta(days=1)).isoformat()}").json()
    assert order["id"] not in {line["id"] for line in after["lines"]}
