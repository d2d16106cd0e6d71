"""Collection's comparison of a partner's records with the daily statement: the upload may give
the `id` column, and the totals are per kind, of money that moved, equal to the statement's."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.events import Event
from products.collection.models import ReconciliationComparison
from tests.products.collection.support import money, next_cutoff, setup_platform
from tests.tools.api import problem


def _day_with_a_failure_and_a_refund(app, http):  # type: ignore[no-untyped-def]
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 10))
    day = p.today()
    one = p.order("10.00", number="ORD-1")
    p.order("20.00", number="ORD-2")
    failed = p.order("4040.01", number="ORD-3")  # the magic amount: refused, nothing moves
    assert failed["status"] == "failed"
    refund = p.post(f"/orders/{one['id']}/refunds", {"amount": money("4.00"),
                                                      "refund_reference": "R-1"}).json()
    p.advance_to(next_cutoff(p, 0, 2))
    return p, day, refund


def _compare(p, day, body: str, content_type: str = "text/csv"):  # type: ignore[no-untyped-def]
    return p.pc.request("POST", f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                        content=body.encode(), headers={"Content-Type": content_type})


def test_totals_are_per_kind_of_money_that_moved_and_agree_with_the_statement(app, http):
    p, day, refund = _day_with_a_failure_and_a_refund(app, http)
    upload = ("kind,reference,amount,status\r\n"
              "order,ORD-1,10.00,succeeded\r\n"
              "order,ORD-2,20.00,succeeded\r\n"
              "order,ORD-3,4040.01,failed\r\n"
              "refund,R-1,4.00,succeeded\r\n")
    compared = _compare(p, day, upload)
    assert compared.status_code == 201, compared.text
    answer = compared.json()
    assert answer["agrees"] is True and answer["matched"] == 4
    assert "bank_total" not in answer and "platform_total" not in answer
    # the failed order moved nothing; orders and the refund are never added together
    assert answer["totals"] == {
        "order": {"bank": {"count": 2, "amount": money("30.00")},
                  "platform": {"count": 2, "amount": money("30.00")}},
        "refund": {"bank": {"count": 1, "amount": money("4.00")},
                   "platform": {"count": 1, "amount": money("4.00")}}}
    statement = p.get(f"/reconciliation/{day.isoformat()}").json()
    for kind, total in answer["totals"].items():
        assert statement["totals"][kind]["moved"] == total["bank"]
    assert statement["totals"]["order"]["count"] == 3  # every line is still listed and counted

    # the partner's own money that moved is counted by its statuses, per kind
    short = _compare(p, day, "kind,reference,amount,status\r\norder,ORD-1,10.00,succeeded\r\n"
                             "order,ORD-3,4040.01,succeeded\r\n").json()
    assert short["totals"] == {"order": {"bank": {"count": 2, "amount": money("30.00")},
                                         "platform": {"count": 2, "amount": money("4050.01")}}}
    assert [m["reference"] for m in short["status_mismatches"]] == ["ORD-3"]


def test_records_may_give_the_id_column(app, http):
    p, day, refund = _day_with_a_failure_and_a_refund(app, http)
    orders = {o["merchant_order_no"]: o for o in p.get("/orders").json()["data"]}
    upload = ("kind,reference,id,amount,status\r\n"
              f"order,ORD-1,{orders['ORD-1']['id']},10.00,succeeded\r\n"
              f"order,,{orders['ORD-2']['id']},20.00,succeeded\r\n"   # the id alone
              f"refund,,{refund['id']},4.00,succeeded\r\n")
    answer = _compare(p, day, upload).json()
    assert answer["matched"] == 3 and answer["missing_at_bank"] == []
    assert [m["reference"] for m in answer["missing_at_platform"]] == ["ORD-3"]
    assert answer["totals"]["refund"]["platform"] == {"count": 1, "amount": money("4.00")}


def test_a_bad_upload_is_refused_and_records_nothing(app, http):
    p, day, _ = _day_with_a_failure_and_a_refund(app, http)

    def recorded() -> tuple[int, int]:
        with p.database.transaction() as s:
            return (s.scalar(select(func.count()).select_from(ReconciliationComparison).where(
                        ReconciliationComparison.tenant_id == p.tenant_id)),
                    s.scalar(select(func.count()).select_from(Event).where(
                        Event.tenant_id == p.tenant_id, Event.type == "reconciliation.compared")))

    problem(_compare(p, day, "kind,reference,id,amount,status\r\norder,,,1.00,succeeded\r\n"),
            422, "invalid_records")
    problem(_compare(p, day, "kind,amount,status\r\norder,1.00,succeeded\r\n"), 422,
            "invalid_records")
    assert recorded() == (0, 0)
    # an `id` column alone names a record too (here one the bank does not know)
    compared = _compare(p, day, "kind,id,amount,status\r\norder,x,1.00,succeeded\r\n")
    assert compared.status_code == 201, compared.text
    assert compared.json()["totals"] == {"order": {
        "bank": {"count": 2, "amount": money("30.00")},
        "platform": {"count": 1, "amount": money("1.00")}}}
    assert recorded() == (1, 1)
