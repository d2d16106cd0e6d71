from __future__ import annotations

from tests.products.payroll.support import balance, batch_body, items_for, people, run_payroll


def test_json_batch_end_to_end(app, employer):
    pc = employer.client
    persons = people(3)
    r = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(persons)))
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "validated", batch
    r = pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "processing"
    run_payroll(app)
    r = pc.get(f"/v1/payroll/batches/{batch['id']}")
    assert r.json()["status"] == "completed", r.text
    print(r.json()["progress"], balance(app, pc.tenant_id, employer.account_id))
