"""Every rule of a batch broken once: a clear finding or problem, and nothing held or paid."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from products.payroll.models import PayrollItem
from tests.products.payroll.support import (
    TODAY,
    advance_days,
    balance,
    batch_body,
    events,
    items_for,
    open_account,
    people,
    run_payroll,
)
from tests.tools.api import new_partner_client, problem

START = 10_000_000_00


def _stored_items(app, batch_id):
    with app.state.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(PayrollItem).where(
            PayrollItem.batch_id == batch_id))


def test_every_bad_item_is_listed_with_line_field_and_code_and_the_batch_rejected(app, employer):
    pc = employer.client
    items = items_for(people(9))
    items[0]["id_number"] = items[0]["id_number"][:-1] + ("0" if items[0]["id_number"][-1] != "0"
                                                          else "1")
    items[1]["account_number"] = items[1]["account_number"][:-1] + str(
        (int(items[1]["account_number"][-1]) + 1) % 10)  # Luhn fails
    items[2]["amount"]["amount"] = "12.345"
    items[3]["amount"]["amount"] = "0.00"
    items[4]["item_reference"] = items[5]["item_reference"]  # a duplicate (reported on line 6)
    items[6]["employee_name"] = ""
    items[7]["amount"]["amount"] = "-5.00"
    items[8]["item_reference"] = "has space"
    body = batch_body(employer.account_id, items, total_fen=1)
    r = pc.post("/v1/payroll/batches", body)
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "rejected"
    found = {(e["line"], e["field"], e["code"]) for e in batch["validation"]["errors"]}
    assert found == {
        (1, "id_number", "invalid_id_number"),
        (2, "account_number", "invalid_account_number"),
        (3, "amount", "invalid_amount"),
        (4, "amount", "invalid_amount"),
        (6, "item_reference", "duplicate_item_reference"),
        (7, "employee_name", "missing_name"),
        (8, "amount", "invalid_amount"),
        (9, "item_reference", "invalid_item_reference"),
        (0, "declared_total", "total_mismatch"),
    }
    assert batch["validation"]["error_count"] == 9
    assert all(e["message"] for e in batch["validation"]["errors"])
    # Nothing stored to pay, nothing held, and it cannot be confirmed.
    assert _stored_items(app, batch["id"]) == 0
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/confirm"), 409, "invalid_state")
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 0)
    assert [e.type for e in events(app, pc.tenant_id, "payroll_batch.rejected")]
    listed = pc.get(f"/v1/payroll/batches/{batch['id']}/findings?severity=error&limit=5").json()
    assert len(listed["data"]) == 5 and listed["next_cursor"]
    # The rejected batch's external reference can be used again.
    fixed = batch_body(employer.account_id, items_for(people(2)),
                       reference=body["header"]["external_reference"])
    assert pc.post("/v1/payroll/batches", fixed).json()["status"] == "validated"


def test_declared_count_must_match(app, employer):
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(people(3)),
                                                      count=4)).json()
    assert batch["status"] == "rejected"
    assert [(e["field"], e["code"]) for e in batch["validation"]["errors"]] == [
        ("declared_count", "count_mismatch")]


def test_header_problems_are_refused_before_anything_is_stored(app, employer):
    pc = employer.client
    items = items_for(people(1))
    cases = [
        ({"value_date": (TODAY - timedelta(days=1)).isoformat()}, 422, "value_date_in_past"),
        ({"value_date": (TODAY + timedelta(days=91)).isoformat()}, 422, "value_date_too_far"),
        ({"payer_account_id": "acct_nope"}, 422, "payer_account_not_found"),
        ({"purpose": "dividends"}, 422, "validation_failed"),
        ({"declared_count": 0}, 422, "validation_failed"),
        ({"declared_count": True}, 422, "validation_failed"),
        ({"declared_count": "1"}, 422, "validation_failed"),
        ({"declared_total": {"amount": 10.0, "currency": "CNY"}}, 422, "validation_failed"),
        ({"external_reference": "bad ref"}, 422, "validation_failed"),
        ({"wage_month": "2026-13"}, 422, "validation_failed"),
    ]
    for change, status, code in cases:
        body = batch_body(employer.account_id, items)
        body["header"].update(change)
        refused = problem(pc.post("/v1/payroll/batches", body), status, code)
        # Each error points at the field as sent: the JSON body's header.
        [field] = change
        assert refused["errors"] and all(e["field"].startswith(f"body.header.{field}")
                                         for e in refused["errors"]), refused
    problem(pc.post("/v1/payroll/batches", {"header": batch_body(employer.account_id, items)
                                            ["header"], "items": []}), 422, "validation_failed")
    assert pc.get("/v1/payroll/batches").json()["data"] == []


def test_another_tenants_account_and_batches_do_not_exist(app, http, employer):
    pc = employer.client
    other = new_partner_client(app, http)
    theirs = open_account(app, other.tenant_id, fen=100_00)
    problem(pc.post("/v1/payroll/batches", batch_body(theirs, items_for(people(1)))), 422,
            "payer_account_not_found")
    mine = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                     items_for(people(1)))).json()
    for path in ("", "/items", "/findings", "/result.csv"):
        problem(other.get(f"/v1/payroll/batches/{mine['id']}{path}"), 404,
                "payroll_batch_not_found")
    problem(other.post(f"/v1/payroll/batches/{mine['id']}/confirm"), 404)
    problem(other.post(f"/v1/payroll/batches/{mine['id']}/cancel"), 404)
    assert other.get("/v1/payroll/batches").json()["data"] == []


def test_a_live_external_reference_is_refused(app, employer):
    pc = employer.client
    body = batch_body(employer.account_id, items_for(people(1)), reference="HR-DUP")
    first = pc.post("/v1/payroll/batches", body).json()
    dup = problem(pc.post("/v1/payroll/batches", body), 409, "duplicate_external_reference")
    assert dup["batch_id"] == first["id"]


def test_scopes_and_idempotency_key(app, http, employer):
    pc = employer.client
    body = batch_body(employer.account_id, items_for(people(1)))
    r = pc.http.post("/v1/payroll/batches", json=body, headers=pc.auth("POST"))
    problem(r, 400, "idempotency_key_required")
    reader = new_partner_client(app, http, scopes=["payroll:read"])
    problem(reader.post("/v1/payroll/batches", body), 403, "insufficient_scope")
    nobody = new_partner_client(app, http, scopes=["accounts:read"])
    problem(nobody.get("/v1/payroll/batches"), 403, "insufficient_scope")
    problem(pc.http.get("/v1/payroll/batches"), 401)


def test_magic_amounts_fail_items_when_paid(app, employer):
    pc = employer.client
    staff = people(3)
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(
        staff, [404001, 404003, 1000_00]))).json()
    assert [w["code"] for w in batch["validation"]["warnings"]] == ["insufficient_funds",
                                                                    "account_frozen"]
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    assert got["status"] == "partially_completed"
    assert balance(app, pc.tenant_id, employer.account_id) == (START - 1000_00, 0)


def test_a_batch_whose_items_all_fail_is_failed(app, employer):
    pc = employer.client
    staff = people(2)
    items = items_for(staff)
    for item in items:
        item["employee_name"] = "MISMATCH " + item["employee_name"]
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items)).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    assert got["status"] == "failed" and got["progress"]["failed"] == 2
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 0)
    assert len(events(app, pc.tenant_id, "payroll_item.failed")) == 2


def test_a_passed_value_date_cannot_be_confirmed(app, employer):
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                      items_for(people(1)))).json()
    advance_days(app, pc.tenant_id, 1)
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/confirm"), 409, "value_date_passed")
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 0)


def test_list_and_pagination(app, employer):
    pc = employer.client
    ids = [pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                     items_for(people(1, seed=s)))).json()["id"]
           for s in range(3)]
    page = pc.get("/v1/payroll/batches?limit=2").json()
    assert [b["id"] for b in page["data"]] == ids[::-1][:2]
    rest = pc.get(f"/v1/payroll/batches?limit=2&cursor={page['next_cursor']}").json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    problem(pc.get("/v1/payroll/batches?cursor=%%%"), 422, "invalid_cursor")
    problem(pc.get("/v1/payroll/batches?limit=101"), 422)
    problem(pc.get(f"/v1/payroll/batches/{ids[0]}/items?cursor=bm90LWEtbnVtYmVy"), 422,
            "invalid_cursor")
    problem(pc.get(f"/v1/payroll/batches/{ids[0]}/items?status=lost"), 422)


def test_magic_amount_4040_05_stays_pending_with_its_money_held_then_fails_a_minute_later(
        app, employer):
    """As the sandbox's magic table says for every payment: pending (amount held), then
    `processing_failed` 60 s later on the test clock, the money back to the payer."""
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(
        people(2), [404005, 1000_00]))).json()
    assert [w["code"] for w in batch["validation"]["warnings"]] == ["processing_failed"]
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    assert got["status"] == "processing" and got["held"]["amount"] == "4040.05"
    assert (got["progress"]["succeeded"], got["progress"]["pending"]) == (1, 1)
    items = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
    assert [i["status"] for i in items] == ["pending", "succeeded"]
    assert balance(app, pc.tenant_id, employer.account_id) == (START - 1000_00, 404005)

    advance_days(app, pc.tenant_id, 59 / 86400)
    run_payroll(app)
    assert pc.get(f"/v1/payroll/batches/{batch['id']}").json()["status"] == "processing"
    advance_days(app, pc.tenant_id, 1 / 86400)  # 60 s after the batch started paying
    run_payroll(app)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    assert got["status"] == "partially_completed" and got["held"]["amount"] == "0.00"
    item = pc.get(f"/v1/payroll/batches/{batch['id']}/items?status=failed").json()["data"]
    assert [(i["amount"]["amount"], i["reason_code"]) for i in item] == [
        ("4040.05", "processing_failed")]
    assert balance(app, pc.tenant_id, employer.account_id) == (START - 1000_00, 0)
    assert len(events(app, pc.tenant_id, "payroll_item.failed")) == 1


def test_a_bad_id_number_is_never_quoted_in_findings_or_the_result_file(app, employer):
    pc = employer.client
    staff = people(3)
    good = staff[0].id_number
    items = items_for(staff)
    # February 30th, a birth date in the future, a province that does not exist.
    items[0]["id_number"] = good[:6] + "19900230" + good[14:]
    items[1]["id_number"] = good[:6] + "20990101" + good[14:]
    items[2]["id_number"] = "99" + good[2:]
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items)).json()
    errors = batch["validation"]["errors"]
    assert [e["code"] for e in errors] == ["invalid_id_number"] * 3
    assert [e["message"] for e in errors] == [
        "The ID number is not valid: the birth date (positions 7-14) is not a calendar date.",
        "The ID number is not valid: the birth date (positions 7-14) is in the future.",
        "The ID number is not valid: positions 1-2 are not a province code."]
    result = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv").content.decode("utf-8-sig")
    for text in (str(batch), result):
        for secret in ("19900230", "1990-02-30", "20990101", "2099-01-01", "'99'"):
            assert secret not in text
