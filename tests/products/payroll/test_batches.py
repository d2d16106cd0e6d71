"""Payroll batches over HTTP: upload, validate, confirm, pay, fail, return, cancel, result file."""

from __future__ import annotations

import csv
import io
import logging
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from products.accounts import service as accounts
from products.accounts.models import Hold, JournalEntry
from products.payroll import processing
from products.payroll.models import PayrollBatch, PayrollItem
from tests.products.payroll.support import (
    TODAY,
    Person,
    advance_days,
    balance,
    batch_body,
    csv_text,
    events,
    items_for,
    magic_card,
    open_account,
    open_person_account,
    people,
    run_payroll,
    upload,
)
from tests.tools.api import PartnerClient, new_partner_client, problem
from tests.tools.jobs import assert_failure_logged, break_clock, statuses

START = 10_000_000_00


def _ledger_entries(app, tenant_id, prefix="payroll:"):
    with app.state.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.tenant_id == tenant_id, JournalEntry.journal_ref.startswith(prefix)))


def _audit(app, tenant_id):
    with app.state.database.transaction() as session:
        return accounts.audit(session, tenant_id)


def test_csv_batch_scheduled_paid_with_failures_and_a_return_then_result_file(app, employer):
    pc = employer.client
    staff = people(6)
    staff[1] = Person("户名不符", staff[1].id_number, staff[1].card)  # name check fails
    staff[2] = Person(staff[2].name, staff[2].id_number, magic_card("0002"))  # closed
    staff[3] = Person("李RETURN", staff[3].id_number, staff[3].card)  # paid, then returned
    items = items_for(staff, [1000_00, 2000_00, 3000_00, 4000_00, 5000_00, 6000_00])
    value_date = TODAY + timedelta(days=3)
    text = csv_text(employer.account_id, items, value_date=value_date, reference="HR-2026-11-A")

    r = upload(pc, text.encode())
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "validated" and batch["source"] == "csv"
    assert batch["item_count"] == 6 and batch["total"] == {"amount": "21000.00", "currency": "CNY"}
    # The pre-check predicts the two refusals, before any money moves.
    warnings = {(w["line"], w["code"]) for w in batch["validation"]["warnings"]}
    assert warnings == {(3, "name_mismatch"), (4, "account_closed")}
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 0)
    bid = batch["id"]

    r = pc.post(f"/v1/payroll/batches/{bid}/confirm")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "scheduled"
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 21000_00)

    run_payroll(app)
    advance_days(app, pc.tenant_id, 2)
    run_payroll(app)
    assert pc.get(f"/v1/payroll/batches/{bid}").json()["status"] == "scheduled"

    advance_days(app, pc.tenant_id, 1)  # the value date on the test clock
    run_payroll(app)
    done = pc.get(f"/v1/payroll/batches/{bid}").json()
    assert done["status"] == "partially_completed", done
    assert done["progress"]["succeeded"] == 4 and done["progress"]["failed"] == 2
    assert done["progress"]["failed_amount"]["amount"] == "5000.00"
    # The failed items' money is back: only the paid ones left the account, nothing held.
    assert balance(app, pc.tenant_id, employer.account_id) == (START - 16000_00, 0)
    assert _ledger_entries(app, pc.tenant_id) == 4

    failed = pc.get(f"/v1/payroll/batches/{bid}/items?status=failed&limit=1").json()
    assert len(failed["data"]) == 1 and failed["next_cursor"]
    rest = pc.get(f"/v1/payroll/batches/{bid}/items?status=failed&limit=1"
                  f"&cursor={failed['next_cursor']}").json()
    assert rest["next_cursor"] is None
    reasons = {i["item_reference"]: i["reason_code"] for i in failed["data"] + rest["data"]}
    assert reasons == {"E00002": "name_mismatch", "E00003": "account_closed"}
    one = failed["data"][0]
    assert "*" in one["id_number"] and "*" in one["account_number"] and "*" in one["employee_name"]
    assert one["id_number"] != staff[1].id_number

    advance_days(app, pc.tenant_id, 1)  # the receiving bank returns the RETURN item (退票)
    run_payroll(app)
    returned = pc.get(f"/v1/payroll/batches/{bid}/items?status=returned").json()["data"]
    assert [(i["item_reference"], i["reason_code"]) for i in returned] == [("E00004",
                                                                            "account_closed")]
    assert balance(app, pc.tenant_id, employer.account_id) == (START - 12000_00, 0)
    assert pc.get(f"/v1/payroll/batches/{bid}").json()["progress"]["returned"] == 1

    types = [e.type for e in events(app, pc.tenant_id) if e.type.startswith("payroll")]
    assert types.count("payroll_item.failed") == 2
    assert types.count("payroll_item.returned") == 1
    for expected in ("payroll_batch.validated", "payroll_batch.confirmed",
                     "payroll_batch.processing", "payroll_batch.completed"):
        assert expected in types
    for event in events(app, pc.tenant_id, "payroll_item.failed"):
        assert all(p.id_number not in str(event.data) and p.card not in str(event.data)
                   for p in staff)

    r = pc.get(f"/v1/payroll/batches/{bid}/result.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:6] == ["" + employer.account_id, "wages", value_date.isoformat(), "6",
                           "21000.00", "HR-2026-11-A"]
    result = {row[5]: (row[6], row[7]) for row in rows[1:]}
    assert result == {"E00001": ("succeeded", ""), "E00002": ("failed", "name_mismatch"),
                      "E00003": ("failed", "account_closed"), "E00004": ("returned",
                                                                         "account_closed"),
                      "E00005": ("succeeded", ""), "E00006": ("succeeded", "")}
    assert all(len(row) == 8 for row in rows[1:])
    assert not any(p.id_number in r.text or p.card in r.text for p in staff)
    assert _audit(app, pc.tenant_id) == []


def test_in_bank_payees_are_credited_directly_and_name_checked(app, employer):
    pc = employer.client
    staff = people(3, seed=21)
    own = open_person_account(app, pc.tenant_id, staff[0])
    open_person_account(app, pc.tenant_id, staff[1])
    items = items_for(staff)
    items[1]["employee_name"] = "某某某"  # not the holder's name: 户名不符 at this bank
    body = batch_body(employer.account_id, items)
    batch = pc.post("/v1/payroll/batches", body).json()
    assert [w["code"] for w in batch["validation"]["warnings"]] == ["name_mismatch"]
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    paid = {i["item_reference"]: i for i in pc.get(
        f"/v1/payroll/batches/{batch['id']}/items").json()["data"]}
    assert paid["E00001"]["paid_to"] == "this_bank" and paid["E00003"]["paid_to"] == "other_bank"
    assert paid["E00002"]["status"] == "failed"
    assert balance(app, pc.tenant_id, own)[0] == 1000_00
    # A credit at this bank is final: it cannot come back as a return.
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/items/{paid['E00001']['id']}"
                    "/simulate-return", {}), 409, "not_returnable")


def test_simulated_return_route_gives_the_money_back(app, employer):
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                      items_for(people(2)))).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    item = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"][0]
    before = balance(app, pc.tenant_id, employer.account_id)[0]
    r = pc.post(f"/v1/payroll/batches/{batch['id']}/items/{item['id']}/simulate-return",
                {"reason_code": "account_frozen", "after_seconds": 3600})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    run_payroll(app)
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before
    advance_days(app, pc.tenant_id, 1 / 24)
    run_payroll(app)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}/items/{item['id']}").json()
    assert got["status"] == "returned" and got["reason_code"] == "account_frozen"
    assert balance(app, pc.tenant_id, employer.account_id)[0] == before + 1000_00
    # Returned once only: a second return of the same item is refused.
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/items/{item['id']}/simulate-return",
                    {}), 409, "invalid_state")
    assert _ledger_entries(app, pc.tenant_id, "payroll-return:") == 1


def test_production_tenants_cannot_simulate_returns(app, http, clock):
    prod = new_partner_client(app, http, environment="production")
    problem(prod.post("/v1/payroll/batches/pbatch_x/items/pitem_y/simulate-return", {}), 403,
            "sandbox_only")


def test_cancel_releases_the_hold_and_cannot_cancel_twice_or_once_processing(app, employer):
    pc = employer.client
    future = batch_body(employer.account_id, items_for(people(3)),
                        value_date=TODAY + timedelta(days=5), reference="HR-CANCEL")
    batch = pc.post("/v1/payroll/batches", future).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 3000_03)
    r = pc.post(f"/v1/payroll/batches/{batch['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert balance(app, pc.tenant_id, employer.account_id) == (START, 0)
    items = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
    assert {i["status"] for i in items} == {"cancelled"}
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/cancel"), 409, "invalid_state")
    problem(pc.post(f"/v1/payroll/batches/{batch['id']}/confirm"), 409, "invalid_state")
    advance_days(app, pc.tenant_id, 6)
    run_payroll(app)
    assert _ledger_entries(app, pc.tenant_id) == 0
    # A cancelled batch gives its external reference back.
    again = pc.post("/v1/payroll/batches", {**future, "header": {
        **future["header"], "value_date": (TODAY + timedelta(days=6)).isoformat()}})
    assert again.status_code == 201, again.text

    later = TODAY + timedelta(days=6)
    now = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(people(2)),
                                                    value_date=later)).json()
    assert pc.post(f"/v1/payroll/batches/{now['id']}/confirm").json()["status"] == "processing"
    problem(pc.post(f"/v1/payroll/batches/{now['id']}/cancel"), 409, "invalid_state")
    # A validated batch that is never confirmed can be cancelled too (nothing was held).
    idle = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items_for(people(1)),
                                                     value_date=later)).json()
    assert pc.post(f"/v1/payroll/batches/{idle['id']}/cancel").json()["status"] == "cancelled"


def test_an_unfunded_batch_is_refused_and_nothing_is_held(app, employer):
    pc = employer.client
    poor = open_account(app, pc.tenant_id, fen=2000_00)
    batch = pc.post("/v1/payroll/batches", batch_body(poor, items_for(people(3)))).json()
    assert batch["status"] == "validated"
    body = problem(pc.post(f"/v1/payroll/batches/{batch['id']}/confirm"), 409,
                   "insufficient_funds")
    assert "2000.00" in body["detail"] and body["batch_id"] == batch["id"]
    assert balance(app, pc.tenant_id, poor) == (2000_00, 0)
    assert pc.get(f"/v1/payroll/batches/{batch['id']}").json()["status"] == "validated"
    with app.state.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Hold)) == 0
    # Funded later, the same batch confirms.
    with app.state.database.transaction() as session:
        accounts.deposit(session, pc.tenant_id, poor, 2000_00, journal_ref="top-up-1")
    assert pc.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200


def test_confirm_is_idempotent_and_holds_once(app, employer):
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                      items_for(people(2)))).json()
    first = pc.post(f"/v1/payroll/batches/{batch['id']}/confirm", idempotency_key="confirm-1")
    again = pc.post(f"/v1/payroll/batches/{batch['id']}/confirm", idempotency_key="confirm-1")
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert balance(app, pc.tenant_id, employer.account_id)[1] == 2000_01


def test_worker_pays_each_item_once_even_when_a_chunk_is_rerun(app, employer):
    """Chunks are atomic with their postings: re-running the job never pays an item twice."""
    pc = employer.client
    batch = pc.post("/v1/payroll/batches", batch_body(employer.account_id,
                                                      items_for(people(7)))).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    run_payroll(app)
    with app.state.database.transaction() as session:
        refs = session.scalars(select(JournalEntry.journal_ref).where(
            JournalEntry.tenant_id == pc.tenant_id,
            JournalEntry.journal_ref.startswith("payroll:"))).all()
        ids = session.scalars(select(PayrollItem.id).where(
            PayrollItem.batch_id == batch["id"])).all()
    assert sorted(refs) == sorted(f"payroll:{i}" for i in ids)
    assert _audit(app, pc.tenant_id) == []


# --- one tenant whose run fails among others ---------------------------------------------------

def _employers(app, http) -> list[tuple[PartnerClient, str]]:
    """Two employers (partners with a funded account), in the order the jobs serve tenants."""
    out = []
    for _ in range(2):
        pc = new_partner_client(app, http)
        out.append((pc, open_account(app, pc.tenant_id, fen=START)))
    return sorted(out, key=lambda e: e[0].tenant_id)


def _confirmed(pc: PartnerClient, account_id: str, staff: list[Person], **kwargs) -> str:
    batch = pc.post("/v1/payroll/batches", batch_body(account_id, items_for(staff), **kwargs))
    assert batch.status_code == 201, batch.text
    confirmed = pc.post(f"/v1/payroll/batches/{batch.json()['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    return batch.json()["id"]


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_to_start_its_batches_does_not_stop_the_others(app, http, clock,
                                                                          caplog):
    (stuck, a), (served, b) = _employers(app, http)
    batches = {pc.tenant_id: _confirmed(pc, account, people(2), value_date=TODAY + timedelta(1))
               for pc, account in ((stuck, a), (served, b))}
    assert set(statuses(app.state.database, PayrollBatch, batches).values()) == {"scheduled"}
    advance_days(app, served.tenant_id, 1)  # its value date has come
    break_clock(app.state.database, stuck.tenant_id)

    with caplog.at_level(logging.ERROR):
        assert processing.start_due_batches(app.state.database) == 1
    assert statuses(app.state.database, PayrollBatch, batches) == {stuck.tenant_id: "scheduled",
                                                     served.tenant_id: "processing"}
    assert_failure_logged(caplog, stuck.tenant_id)


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_to_pay_its_batches_does_not_stop_the_others(app, http, clock, caplog):
    (stuck, a), (served, b) = _employers(app, http)
    # The failing tenant's batch is the oldest: paid first.
    batches = {pc.tenant_id: _confirmed(pc, account, people(3))
               for pc, account in ((stuck, a), (served, b))}
    assert set(statuses(app.state.database, PayrollBatch, batches).values()) == {"processing"}
    break_clock(app.state.database, stuck.tenant_id)

    with caplog.at_level(logging.ERROR):
        assert processing.pay_batches(app.state.database) >= 3
    assert statuses(app.state.database, PayrollBatch, batches) == {stuck.tenant_id: "processing",
                                                     served.tenant_id: "completed"}
    assert balance(app, served.tenant_id, b)[1] == 0
    assert_failure_logged(caplog, stuck.tenant_id)


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_its_returns_does_not_stop_the_others(app, http, clock, caplog):
    (stuck, a), (served, b) = _employers(app, http)
    staff = people(1)
    returned = [Person("李RETURN", staff[0].id_number, staff[0].card)]  # paid, then returned
    batches = {pc.tenant_id: _confirmed(pc, account, returned)
               for pc, account in ((stuck, a), (served, b))}
    run_payroll(app)
    with app.state.database.transaction() as session:
        items = {tenant: session.scalar(select(PayrollItem.id).where(PayrollItem.batch_id == batch))
                 for tenant, batch in batches.items()}
    assert set(statuses(app.state.database, PayrollItem, items).values()) == {"succeeded"}
    for pc in (stuck, served):
        advance_days(app, pc.tenant_id, 1)  # the receiving bank returns the item
    break_clock(app.state.database, stuck.tenant_id)

    with caplog.at_level(logging.ERROR):
        assert processing.process_returns(app.state.database) == 1
    assert statuses(app.state.database, PayrollItem, items) == {stuck.tenant_id: "succeeded",
                                                  served.tenant_id: "returned"}
    assert_failure_logged(caplog, stuck.tenant_id)
