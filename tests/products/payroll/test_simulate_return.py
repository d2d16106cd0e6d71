"""`POST …/items/{item}/simulate-return`: every field of the body has a default, so the body
itself may be left out."""

from __future__ import annotations

from tests.products.payroll.support import (
    advance_days,
    balance,
    batch_body,
    items_for,
    people,
    run_payroll,
)
from tests.tools.api import problem


def _paid_item(app, employer):  # type: ignore[no-untyped-def]
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                      items_for(people(2, seed=31)))).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    item = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"][0]
    assert item["status"] == "succeeded"
    return f"/v1/payroll/batches/{batch['id']}/items/{item['id']}"


def test_a_return_without_a_body_takes_the_defaults(app, employer):
    pc = employer.client
    path = _paid_item(app, employer)
    before = balance(app, pc.tenant_id, employer.account_id)[0]

    returned = pc.post(f"{path}/simulate-return")  # no body, no content type
    assert returned.status_code == 200, returned.text
    # the defaults: returned at once (after_seconds 0), as account_closed
    assert returned.json()["status"] == "returned"
    assert returned.json()["reason_code"] == "account_closed"
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before + 1000_00
    assert pc.get(path).json()["status"] == "returned"


def test_an_empty_json_body_is_the_defaults_too_and_a_bad_one_changes_nothing(app, employer):
    pc = employer.client
    path = _paid_item(app, employer)
    before = balance(app, pc.tenant_id, employer.account_id)[0]

    problem(pc.post(f"{path}/simulate-return", {"reason_code": "lost_in_the_post"}), 422,
            "validation_failed")
    problem(pc.post(f"{path}/simulate-return", {"after_seconds": -1}), 422, "validation_failed")
    assert pc.get(path).json()["status"] == "succeeded"
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before

    returned = pc.post(f"{path}/simulate-return", content=b"",
                       headers={"Content-Type": "application/json"})
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned"
    assert returned.json()["reason_code"] == "account_closed"


def test_the_document_says_the_body_is_optional(http):
    operation = http.get("/openapi.json").json()["paths"][
        "/v1/payroll/batches/{batch_id}/items/{item_id}/simulate-return"]["post"]
    assert operation["requestBody"].get("required", False) is False


def test_asking_again_for_a_return_already_scheduled_is_refused_and_moves_nothing(app, employer):
    pc = employer.client
    path = _paid_item(app, employer)
    before = balance(app, pc.tenant_id, employer.account_id)[0]
    first = pc.post(f"{path}/simulate-return", {"after_seconds": 3600})
    assert first.status_code == 200 and first.json()["status"] == "succeeded", first.text

    # Neither later nor at once: the return stays due in an hour, as first asked.
    for body in ({"after_seconds": 86400}, {}):
        refused = problem(pc.post(f"{path}/simulate-return", body), 409,
                          "return_already_scheduled")
        assert refused["return_due_at"] == "2026-11-02T03:00:00Z"
    assert pc.get(path).json()["status"] == "succeeded"
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before

    advance_days(app, pc.tenant_id, 1 / 24)
    run_payroll(app)
    got = pc.get(path).json()
    assert (got["status"], got["reason_code"]) == ("returned", "account_closed")
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before + 1000_00
