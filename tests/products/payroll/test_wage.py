"""Supervised migrant-worker wage accounts: real-name workers, restricted debits, the
regulator's view and arrears warnings on the test clock."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
from sqlalchemy import select, text, update

from gateway.identifiers import generate_uscc
from gateway.jobs import run_all_once
from products.accounts import service as accounts
from products.accounts.errors import DebitRestricted, PaymentRefused
from products.accounts.port import DebitContext
from products.payroll import processing, wage
from products.payroll.ledger import PayrollDebit
from products.payroll.models import PayrollBatch, PayrollItem
from products.payroll.wage import wage_account_guard
from tests.products.payroll.support import (
    TODAY,
    Person,
    advance_days,
    balance,
    batch_body,
    csv_text,
    events,
    items_for,
    open_account,
    people,
    run_payroll,
    tenant_today,
    upload,
)
from tests.tools.api import PartnerClient, new_partner_client, problem
from tests.tools.jobs import assert_failure_logged, break_clock

RNG = random.Random(3)


@dataclass
class Project:
    client: PartnerClient
    id: str
    wage_account: str
    developer_account: str
    workers: list[Person]
    worker_ids: list[str]


def _worker_body(p: Person, team: str = "钢筋班") -> dict[str, str]:
    return {"name": p.name, "id_number": p.id_number, "card_number": p.card, "team": team,
            "contract_start": "2026-10-01"}


def make_project(app, client: PartnerClient, *, code: str = "P-2026-001", region: str = "310115",
                 fund_fen: int = 100_000_00, workers: int = 3, seed: int = 40,
                 payday: int = 10, balance_check_days: int = 3) -> Project:
    developer = open_account(app, client.tenant_id, fen=10_000_000_00,
                             name="上海浦江房地产开发有限公司", uscc=generate_uscc(RNG))
    r = client.post("/v1/payroll/wage-projects", {
        "project_code": code, "name": "浦江镇保障房二期", "region_code": region,
        "contractor_name": "上海恒达建设工程有限公司", "contractor_uscc": generate_uscc(RNG),
        "developer_name": "上海浦江房地产开发有限公司", "developer_uscc": generate_uscc(RNG),
        "developer_account_id": developer, "payday": payday, "arrears_grace_days": 3,
        "balance_check_days": balance_check_days})
    assert r.status_code == 201, r.text
    project = r.json()
    staff = people(workers, seed=seed)
    ids = []
    for p in staff:
        w = client.post(f"/v1/payroll/wage-projects/{project['id']}/workers", _worker_body(p))
        assert w.status_code == 201, w.text
        ids.append(w.json()["id"])
    if fund_fen:
        f = client.post(f"/v1/payroll/wage-projects/{project['id']}/fundings",
                        {"amount": {"amount": f"{fund_fen // 100}.{fund_fen % 100:02d}",
                                    "currency": "CNY"}})
        assert f.status_code == 201, f.text
    return Project(client, project["id"], project["wage_account_id"], developer, staff, ids)


@pytest.fixture
def contractor(app, http, clock) -> PartnerClient:
    return new_partner_client(app, http, name="建筑劳务实名制平台")


def test_project_opens_a_restricted_wage_account_funded_by_the_developer(app, contractor):
    project = make_project(app, contractor)
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00, 0)
    with app.state.database.transaction() as session:
        account = accounts.get_account(session, contractor.tenant_id, project.wage_account)
        assert (account.kind, account.debit_restriction) == ("wage", "wage_account")
    got = contractor.get(f"/v1/payroll/wage-projects/{project.id}").json()
    assert got["payday"] == 10 and got["wage_account_id"] == project.wage_account
    fundings = contractor.get(f"/v1/payroll/wage-projects/{project.id}/fundings").json()["data"]
    assert [f["amount"]["amount"] for f in fundings] == ["100000.00"]
    assert events(app, contractor.tenant_id, "wage_project.funded")
    problem(contractor.post("/v1/payroll/wage-projects", {
        "project_code": "P-2026-001", "name": "x", "region_code": "310115",
        "contractor_name": "x", "contractor_uscc": generate_uscc(RNG), "developer_name": "y",
        "developer_uscc": generate_uscc(RNG), "payday": 10}), 409, "duplicate_project_code")
    problem(contractor.post("/v1/payroll/wage-projects", {
        "project_code": "P-2", "name": "x", "region_code": "310115", "contractor_name": "x",
        "contractor_uscc": "91310000000000000X", "developer_name": "y",
        "developer_uscc": generate_uscc(RNG), "payday": 10}), 422, "invalid_uscc")
    problem(contractor.post("/v1/payroll/wage-projects", {
        "project_code": "P-3", "name": "x", "region_code": "310115", "contractor_name": "x",
        "contractor_uscc": generate_uscc(RNG), "developer_name": "y",
        "developer_uscc": generate_uscc(RNG), "payday": 31}), 422, "validation_failed")
    # A funding the developer cannot afford is refused and moves nothing.
    poor = open_account(app, contractor.tenant_id, fen=10_00)
    problem(contractor.post(f"/v1/payroll/wage-projects/{project.id}/fundings",
                            {"amount": {"amount": "50.00", "currency": "CNY"},
                             "from_account_id": poor}), 409, "insufficient_funds")
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00, 0)


def test_worker_registration_rules_and_csv_import(app, contractor):
    project = make_project(app, contractor, workers=1)
    other = people(4, seed=77)
    bad = _worker_body(other[0])
    bad["id_number"] = "110101199003071234"
    bad["card_number"] = "6222000000000000001"
    body = problem(contractor.post(f"/v1/payroll/wage-projects/{project.id}/workers", bad), 422,
                   "worker_validation_failed")
    assert {e["code"] for e in body["errors"]} == {"invalid_id_number", "invalid_account_number"}
    problem(contractor.post(f"/v1/payroll/wage-projects/{project.id}/workers",
                            _worker_body(project.workers[0])), 409, "worker_already_registered")

    lines = ["姓名,身份证号,银行卡号,班组,合同开始,合同结束"]
    lines += [f"{p.name},{p.id_number},{p.card},木工班,2026-10-01," for p in other[1:]]
    r = contractor.request("POST", f"/v1/payroll/wage-projects/{project.id}/workers/csv",
                           content="\r\n".join(lines).encode("gbk"),
                           headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    assert r.json()["registered"] == 3 and r.json()["data"][0]["team"] == "木工班"
    # All or nothing: one bad line refuses the file with its line number.
    more = people(6, seed=78)[4:]
    lines = [f"{p.name},{p.id_number},{p.card},木工班,2026-10-01," for p in more]
    lines.append(f"{more[0].name},123,{more[0].card},木工班,2026-10-01,")
    body = problem(contractor.request(
        "POST", f"/v1/payroll/wage-projects/{project.id}/workers/csv",
        content="\n".join(lines).encode(), headers={"Content-Type": "text/csv"}), 422)
    assert {e["line"] for e in body["errors"]} == {3}
    listed = contractor.get(f"/v1/payroll/wage-projects/{project.id}/workers?limit=100").json()
    assert len(listed["data"]) == 4
    assert all("*" in w["id_number"] and "*" in w["card_number"] for w in listed["data"])


def test_a_wage_batch_pays_only_registered_active_workers_to_their_cards(app, contractor):
    project = make_project(app, contractor, workers=4)
    a, b, c, d = project.workers
    contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/"
                       f"{project.worker_ids[3]}", json={"status": "left"})
    stranger = people(1, seed=500)[0]
    other_card = people(1, seed=501)[0].card
    items = items_for([a, stranger, Person(b.name, b.id_number, other_card), d,
                       Person("王某某", c.id_number, c.card)])
    # December's wages (paid on 12-01): D, who left in November, is owed nothing for December.
    batch = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items, value_date=date(2026, 12, 1), wage_month="2026-12")).json()
    assert batch["status"] == "rejected" and batch["wage_project_id"] == project.id
    found = {(e["line"], e["code"]) for e in batch["validation"]["errors"]}
    assert found == {(2, "worker_not_registered"), (3, "card_not_registered"),
                     (4, "worker_not_active"), (5, "worker_name_mismatch")}
    problem(contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for([a]), purpose="bonus")), 422, "purpose_not_allowed")

    good = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for([a, b, c], [4000_00, 4100_00, 4200_00]))).json()
    assert good["status"] == "validated", good["validation"]
    assert contractor.post(f"/v1/payroll/batches/{good['id']}/confirm").status_code == 200
    run_payroll(app)
    assert contractor.get(f"/v1/payroll/batches/{good['id']}").json()["status"] == "completed"
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 12300_00, 0)


def test_no_other_debit_leaves_a_wage_account(app, contractor):
    project = make_project(app, contractor)
    tenant = contractor.tenant_id
    elsewhere = open_account(app, tenant)
    core = accounts.get_core_banking()
    # Through the public transfers API, as any partner would try it: recorded as failed.
    r = contractor.post("/v1/transfers", {"from_account_id": project.wage_account,
                                          "to_account_id": elsewhere,
                                          "amount": {"amount": "100.00", "currency": "CNY"}})
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["failure_code"]) == ("failed", "debit_restricted")
    with app.state.database.transaction() as session:
        refused = accounts.create_transfer(session, tenant, from_account_id=project.wage_account,
                                           to_account_id=elsewhere, amount_fen=100_00,
                                           actor="someone")
        assert (refused.status, refused.failure_code) == ("failed", "debit_restricted")
        refused = accounts.create_transfer(session, tenant, from_account_id=project.wage_account,
                                           to_account_id=elsewhere, amount_fen=100_00,
                                           actor="someone", authorization="please")
        assert (refused.status, refused.failure_code) == ("failed", "wage_account_restricted")
    with app.state.database.transaction() as session, pytest.raises(PaymentRefused) as exc:
        core.transfer(session, tenant, from_account_id=project.wage_account,
                      to_account_id=elsewhere, amount_fen=1, journal_ref="steal-1",
                      reference_type="x", reference_id="x",
                      authorization=PayrollDebit("pbatch_none"))
    assert exc.value.code == "wage_account_restricted"
    with app.state.database.transaction() as session, pytest.raises(DebitRestricted):
        core.place_hold(session, tenant, account_id=project.wage_account, amount_fen=1,
                        hold_ref="h-1", reference_type="x", reference_id="x")
    # A batch of another payer cannot be used as an authorization for this account either.
    normal = open_account(app, tenant, fen=1000_00)
    batch = contractor.post("/v1/payroll/batches", batch_body(
        normal, items_for(project.workers[:1]))).json()
    with app.state.database.transaction() as session, pytest.raises(PaymentRefused):
        core.place_hold(session, tenant, account_id=project.wage_account, amount_fen=1000_00,
                        hold_ref="h-2", reference_type="x", reference_id="x",
                        authorization=PayrollDebit(batch["id"]))
    assert balance(app, tenant, project.wage_account) == (100_000_00, 0)


def test_a_worker_who_leaves_after_confirmation_is_not_paid_for_a_month_not_owed(app,
                                                                                 contractor):
    project = make_project(app, contractor)
    # December's wages, paid on 12-01: the worker leaving in November is owed nothing for
    # December.
    batch = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(project.workers), value_date=date(2026, 12, 1),
        wage_month="2026-12")).json()
    contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/"
                           f"{project.worker_ids[1]}", json={"status": "left"})
    assert r.status_code == 200 and r.json()["status"] == "left"
    advance_days(app, contractor.tenant_id, 29)  # 12-01: the value date
    run_payroll(app)
    items = contractor.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
    assert [(i["status"], i["reason_code"]) for i in items] == [
        ("succeeded", None), ("failed", "worker_not_active"), ("succeeded", None)]
    paid = 1000_00 + 1000_02
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - paid, 0)


@pytest.fixture
def operations(app, http) -> PartnerClient:
    return new_partner_client(app, http, scopes=["operations:read", "operations:write"],
                              operations=True)


def test_the_regulator_sees_its_regions_and_the_contractor_never_does(app, http, contractor,
                                                                      operations):
    project = make_project(app, contractor)
    beijing_platform = new_partner_client(app, http)
    make_project(app, beijing_platform, code="BJ-1", region="110105", seed=90)
    regulator = new_partner_client(app, http, scopes=["payroll:supervise"], name="上海市人社局")
    problem(regulator.get("/v1/payroll/supervision/projects"), 403, "region_not_granted")
    r = operations.post("/v1/operations/payroll/regulators",
                        {"partner_id": regulator.partner_id, "region_code": "310000",
                         "name": "上海市"})
    assert r.status_code == 201, r.text
    problem(contractor.post("/v1/operations/payroll/regulators",
                            {"partner_id": contractor.partner_id, "region_code": "310000"}), 403)

    listed = regulator.get("/v1/payroll/supervision/projects").json()["data"]
    assert [p["id"] for p in listed] == [project.id]
    seen = regulator.get(f"/v1/payroll/supervision/projects/{project.id}").json()
    assert seen["balance"]["amount"] == "100000.00" and seen["active_workers"] == 3

    batch = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(project.workers[:2]))).json()
    contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    month = regulator.get(f"/v1/payroll/supervision/projects/{project.id}/workers"
                          "?month=2026-11").json()["data"]
    assert sorted(w["payment_status"] for w in month) == ["not_due", "paid", "paid"]
    assert all("*" in w["id_number"] for w in month)
    problem(regulator.get(f"/v1/payroll/supervision/projects/{project.id}/workers?month=11"), 422)
    # Year 0000 matches YYYY-MM but is no calendar month (once a 500, found by fuzzing).
    problem(regulator.get(f"/v1/payroll/supervision/projects/{project.id}/workers"
                          "?month=0000-01"), 422, "invalid_month")

    # The contractor holds every partner scope but never the supervisor's view.
    for path in ("/v1/payroll/supervision/projects",
                 f"/v1/payroll/supervision/projects/{project.id}",
                 f"/v1/payroll/supervision/projects/{project.id}/workers?month=2026-11"):
        problem(contractor.get(path), 403, "insufficient_scope")
    # Another region's regulator does not find the project.
    beijing = new_partner_client(app, http, scopes=["payroll:supervise"])
    operations.post("/v1/operations/payroll/regulators",
                    {"partner_id": beijing.partner_id, "region_code": "110000"})
    problem(beijing.get(f"/v1/payroll/supervision/projects/{project.id}"), 404,
            "wage_project_not_found")
    assert len(beijing.get("/v1/payroll/supervision/projects").json()["data"]) == 1
    grants = operations.get("/v1/operations/payroll/regulators").json()["data"]
    assert {(g["partner_id"], g["region_code"]) for g in grants} == {
        (regulator.partner_id, "310000"), (beijing.partner_id, "110000")}
    r = operations.request("DELETE", f"/v1/operations/payroll/regulators/{regulator.partner_id}"
                                     "/regions/310000")
    assert r.status_code == 204
    problem(regulator.get("/v1/payroll/supervision/projects"), 403, "region_not_granted")


def _arrears(app) -> None:
    while sum(run_all_once(app.state.database, only=["payroll.arrears"]).values()):
        pass


def test_arrears_warning_fires_on_the_right_day_and_not_before(app, http, contractor, operations):
    regulator = new_partner_client(app, http, scopes=["payroll:supervise"])
    operations.post("/v1/operations/payroll/regulators",
                    {"partner_id": regulator.partner_id, "region_code": "310100"})
    project = make_project(app, contractor, fund_fen=5000_00)
    a = project.workers[0]
    batch = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for([a], [4000_00]))).json()
    contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)

    def warnings(tenant_id: str) -> list:
        return events(app, tenant_id, "wage_project.arrears_warning")

    assert date(2026, 11, 2) == TODAY
    advance_days(app, contractor.tenant_id, 10)  # 11-12: payday (10th) + 2 days
    _arrears(app)
    assert warnings(regulator.tenant_id) == []
    advance_days(app, contractor.tenant_id, 1)  # 11-13: payday + 3 days
    _arrears(app)
    fired = warnings(regulator.tenant_id)
    assert len(fired) == 1
    data = fired[0].data
    assert (data["kind"], data["cycle"], data["business_date"]) == ("unpaid_wages", "2026-11",
                                                                   "2026-11-13")
    assert data["unpaid_workers"] == 2 and data["expected_workers"] == 3
    assert {w["worker_id"] for w in data["unpaid"]} == set(project.worker_ids[1:])
    assert not any(p.id_number in str(data) for p in project.workers)
    assert len(warnings(contractor.tenant_id)) == 1  # the contractor is told to pay
    _arrears(app)
    assert len(warnings(regulator.tenant_id)) == 1  # once per cycle

    # Next cycle: 3 days before payday the balance (1,000.00) cannot cover last month (4,000.00).
    advance_days(app, contractor.tenant_id, 23)  # 12-06
    _arrears(app)
    assert len(warnings(regulator.tenant_id)) == 1
    advance_days(app, contractor.tenant_id, 1)  # 12-07
    _arrears(app)
    fired = warnings(regulator.tenant_id)
    assert len(fired) == 2 and fired[1].data["kind"] == "insufficient_balance"
    assert fired[1].data["balance"]["amount"] == "1000.00"
    assert fired[1].data["last_month_payroll"]["amount"] == "4000.00"
    listed = regulator.get(f"/v1/payroll/supervision/projects/{project.id}/warnings").json()
    assert [w["kind"] for w in listed["data"]] == ["insufficient_balance", "unpaid_wages"]
    # An unrelated regulator hears nothing.
    assert events(app, new_partner_client(app, http).tenant_id) == []


# --- who is owed for a month: the arrears check and the regulator's view agree ---------------

def _regulator(app, http, operations) -> PartnerClient:
    regulator = new_partner_client(app, http, scopes=["payroll:supervise"])
    r = operations.post("/v1/operations/payroll/regulators",
                        {"partner_id": regulator.partner_id, "region_code": "310100"})
    assert r.status_code == 201, r.text
    return regulator


def _pay(app, project: Project, persons: list[Person], fen: int) -> None:
    client = project.client
    batch = client.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(persons, [fen] * len(persons)),
        value_date=tenant_today(app, client.tenant_id))).json()
    assert client.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    run_payroll(app)


def _warnings(app, tenant_id: str, kind: str) -> list[dict]:
    return [e.data for e in events(app, tenant_id, "wage_project.arrears_warning")
            if e.data["kind"] == kind]


def _month(regulator: PartnerClient, project: Project, month: str) -> dict[str, str]:
    r = regulator.get(f"/v1/payroll/supervision/projects/{project.id}/workers?month={month}")
    assert r.status_code == 200, r.text
    return {w["worker_id"]: w["payment_status"] for w in r.json()["data"]}


def test_a_worker_who_leaves_after_payday_unpaid_is_still_in_arrears(app, http, contractor,
                                                                     operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=2)  # payday 10, grace 3 days
    a_id, b_id = project.worker_ids
    _pay(app, project, project.workers[:1], 3000_00)  # 11-02: A paid for 2026-11
    advance_days(app, contractor.tenant_id, 9)  # 11-11: after payday, B never paid, leaves
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{b_id}",
                           json={"status": "left"})
    assert r.status_code == 200 and r.json()["status"] == "left"
    advance_days(app, contractor.tenant_id, 2)  # 11-13: payday + 3 days
    _arrears(app)
    fired = _warnings(app, regulator.tenant_id, "unpaid_wages")
    assert len(fired) == 1 and fired[0]["cycle"] == "2026-11"
    assert (fired[0]["expected_workers"], fired[0]["unpaid_workers"]) == (2, 1)
    assert [w["worker_id"] for w in fired[0]["unpaid"]] == [b_id]
    assert _month(regulator, project, "2026-11") == {a_id: "paid", b_id: "unpaid"}

    # December: B left in November and is owed nothing; A is owed and unpaid.
    advance_days(app, contractor.tenant_id, 30)  # 12-13
    _arrears(app)
    fired = _warnings(app, regulator.tenant_id, "unpaid_wages")
    assert len(fired) == 2 and fired[1]["cycle"] == "2026-12"
    assert (fired[1]["expected_workers"], fired[1]["unpaid_workers"]) == (1, 1)
    assert [w["worker_id"] for w in fired[1]["unpaid"]] == [a_id]
    assert _month(regulator, project, "2026-12") == {a_id: "unpaid", b_id: "not_owed"}


def test_the_monthly_view_owes_nothing_outside_the_workers_time_on_the_project(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=1)  # created 11-02, first cycle 2026-11
    [old_id] = project.worker_ids
    late, starting = people(3, seed=77)[1:]
    advance_days(app, contractor.tenant_id, 10)  # 11-12: after the November payday
    late_id = contractor.post(f"/v1/payroll/wage-projects/{project.id}/workers",
                              {"name": late.name, "id_number": late.id_number,
                               "card_number": late.card, "team": "木工班",
                               "contract_start": "2026-11-01"}).json()["id"]
    starting_id = contractor.post(f"/v1/payroll/wage-projects/{project.id}/workers",
                                  {"name": starting.name, "id_number": starting.id_number,
                                   "card_number": starting.card, "team": "木工班",
                                   "contract_start": "2026-12-15"}).json()["id"]
    # October: before the project's first pay cycle, though the contracts began 10-01.
    assert _month(regulator, project, "2026-10") == {
        old_id: "not_owed", late_id: "not_owed", starting_id: "not_owed"}
    # November: registered after payday, or under contract only from December.
    assert _month(regulator, project, "2026-11") == {
        old_id: "unpaid", late_id: "not_owed", starting_id: "not_owed"}
    # December: the late worker is owed (payday ahead); the contract starting 12-15 is not
    # under way by the December payday.
    assert _month(regulator, project, "2026-12") == {
        old_id: "not_due", late_id: "not_due", starting_id: "not_owed"}
    assert _month(regulator, project, "2027-01")[starting_id] == "not_due"


def test_the_balance_check_before_an_early_payday_runs_in_the_previous_month(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    # Payday the 3rd, balance checked 5 days before: on the 28th or 29th of the month before.
    project = make_project(app, contractor, workers=1, fund_fen=5000_00, payday=3,
                           balance_check_days=5)
    _pay(app, project, project.workers, 4000_00)  # 11-02: 2026-11 paid, 1,000.00 left

    def short() -> list[dict]:
        return _warnings(app, regulator.tenant_id, "insufficient_balance")

    advance_days(app, contractor.tenant_id, 25)  # 11-27
    _arrears(app)
    assert short() == []
    advance_days(app, contractor.tenant_id, 1)  # 11-28: 12-03 less 5 days
    _arrears(app)
    assert [(w["cycle"], w["business_date"], w["due_date"]) for w in short()] == [
        ("2026-12", "2026-11-28", "2026-12-03")]
    assert short()[0]["last_month_payroll"]["amount"] == "4000.00"

    # Across the year end: 2027-01-03 less 5 days is 2026-12-29.
    advance_days(app, contractor.tenant_id, 4)  # 12-02: funded, December paid, 500.00 left
    r = contractor.post(f"/v1/payroll/wage-projects/{project.id}/fundings",
                        {"amount": {"amount": "4000.00", "currency": "CNY"}})
    assert r.status_code == 201, r.text
    _pay(app, project, project.workers, 4500_00)
    advance_days(app, contractor.tenant_id, 26)  # 12-28
    _arrears(app)
    assert len(short()) == 1
    advance_days(app, contractor.tenant_id, 1)  # 12-29
    _arrears(app)
    assert [(w["cycle"], w["business_date"]) for w in short()][1:] == [("2027-01", "2026-12-29")]
    assert short()[1]["last_month_payroll"]["amount"] == "4500.00"


def test_items_refused_by_the_wage_rules_say_why_in_words(app, contractor):
    project = make_project(app, contractor)
    # December's wages (paid on 12-01): the worker who leaves in November is owed nothing for
    # December.
    batch = contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(project.workers), value_date=date(2026, 12, 1),
        wage_month="2026-12")).json()
    contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    contractor.request("PATCH", f"{workers}/{project.worker_ids[0]}", json={"status": "left"})
    new_card = people(5, seed=99)[4].card
    r = contractor.request("PATCH", f"{workers}/{project.worker_ids[1]}",
                           json={"card_number": new_card})
    assert r.status_code == 200, r.text
    advance_days(app, contractor.tenant_id, 29)  # 12-01: the value date
    run_payroll(app)
    items = contractor.get(f"/v1/payroll/batches/{batch['id']}/items?status=failed").json()
    assert [(i["reason_code"], i["reason"]) for i in items["data"]] == [
        ("worker_not_active", "工人已离场: the registered worker has left the project"),
        ("card_not_registered", "非登记工资卡: wages go only to the worker's registered card")]


# --- paying a worker who has left the wages still owed ---------------------------------------

def _batch(project: Project, persons: list[Person], fen: int, **header) -> dict:
    r = project.client.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(persons, [fen] * len(persons)), **header))
    assert r.status_code == 201, r.text
    return r.json()


def _refusals(batch: dict) -> set[tuple[int, str]]:
    assert batch["status"] == "rejected", batch
    return {(e["line"], e["code"]) for e in batch["validation"]["errors"]}


def test_a_worker_who_left_unpaid_is_paid_the_wages_owed_and_the_arrears_clear(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=2)  # payday 10, grace 3 days
    a_id, b_id = project.worker_ids
    b = project.workers[1]
    _pay(app, project, project.workers[:1], 3000_00)  # 11-02: A paid for 2026-11
    advance_days(app, contractor.tenant_id, 9)  # 11-11: after payday, B never paid, leaves
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    assert contractor.request("PATCH", f"{workers}/{b_id}",
                              json={"status": "left"}).json()["status"] == "left"
    # C registers after the November payday and leaves at once: never owed anything.
    c = people(3, seed=77)[2]
    c_id = contractor.post(workers, _worker_body(c)).json()["id"]
    contractor.request("PATCH", f"{workers}/{c_id}", json={"status": "left"})
    today = tenant_today(app, contractor.tenant_id)

    # Still refused with the existing codes: B to another card, a stranger, C, nobody else.
    other_card = Person(b.name, b.id_number, people(1, seed=501)[0].card)
    assert _refusals(_batch(project, [other_card, people(1, seed=500)[0], c], 100_00,
                            value_date=today)) == {
        (1, "card_not_registered"), (2, "worker_not_registered"), (3, "worker_not_active")}

    # B's November wages, from the wage account, to the registered card, B still `left`.
    batch = _batch(project, [b], 3000_00, value_date=today)
    assert batch["status"] == "validated" and batch["wage_month"] == "2026-11", batch
    assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    run_payroll(app)
    assert contractor.get(f"/v1/payroll/batches/{batch['id']}").json()["status"] == "completed"
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 6000_00, 0)
    assert contractor.get(f"{workers}/{b_id}").json()["status"] == "left"
    assert _month(regulator, project, "2026-11") == {a_id: "paid", b_id: "paid",
                                                     c_id: "not_owed"}
    advance_days(app, contractor.tenant_id, 2)  # 11-13: payday + 3 days, everyone owed paid
    _arrears(app)
    assert _warnings(app, regulator.tenant_id, "unpaid_wages") == []
    assert _warnings(app, contractor.tenant_id, "unpaid_wages") == []

    # November is paid now, and B is owed nothing for December: both refused.
    today = tenant_today(app, contractor.tenant_id)
    assert _refusals(_batch(project, [b], 500_00, value_date=today)) == {
        (1, "worker_not_active")}
    assert _refusals(_batch(project, [b], 500_00, value_date=date(2026, 12, 1),
                            wage_month="2026-12")) == {(1, "worker_not_active")}
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 6000_00, 0)


def test_the_debit_guard_pays_a_leaver_the_month_owed_once(app, contractor):
    project = make_project(app, contractor)  # 11-02
    leaver = project.worker_ids[1]
    # Two November batches, both confirmed while the worker is active; then the worker leaves.
    batches = [_batch(project, project.workers, 2000_00, reference=f"NOV-{n}") for n in (1, 2)]
    for batch in batches:
        assert batch["status"] == "validated", batch
        assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{leaver}",
                           json={"status": "left"})
    assert r.status_code == 200 and r.json()["status"] == "left"
    run_payroll(app)
    # Owed for November (on the project on 11-01 and 11-02): paid by the first batch paid;
    # November is then paid, so the other batch's capture is refused by the guard.
    outcomes = sorted((i["status"], i["reason_code"])
                      for batch in batches
                      for i in contractor.get(f"/v1/payroll/batches/{batch['id']}/items")
                      .json()["data"] if i["item_reference"] == "E00002")
    assert outcomes == [("failed", "worker_not_active"), ("succeeded", None)]
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 5 * 2000_00,
                                                                        0)


def test_a_leavers_arrears_are_paid_in_a_later_month_by_naming_the_wage_month(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=1)  # payday 10, grace 3 days
    [a_id] = project.worker_ids
    advance_days(app, contractor.tenant_id, 9)  # 11-11: after payday, unpaid, leaves
    contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{a_id}",
                       json={"status": "left"})
    advance_days(app, contractor.tenant_id, 2)  # 11-13: the warning fires
    _arrears(app)
    assert [w["unpaid_workers"] for w in _warnings(app, regulator.tenant_id, "unpaid_wages")] == [1]
    advance_days(app, contractor.tenant_id, 18)  # 12-01
    today = tenant_today(app, contractor.tenant_id)
    # By default a batch pays the value date's month, December, when A is owed nothing.
    assert _refusals(_batch(project, project.workers, 3000_00, value_date=today)) == {
        (1, "worker_not_active")}
    batch = _batch(project, project.workers, 3000_00, value_date=today, wage_month="2026-11")
    assert batch["status"] == "validated", batch
    assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    run_payroll(app)
    assert contractor.get(f"/v1/payroll/batches/{batch['id']}").json()["status"] == "completed"
    assert _month(regulator, project, "2026-11") == {a_id: "paid"}
    assert _month(regulator, project, "2026-12") == {a_id: "not_owed"}
    advance_days(app, contractor.tenant_id, 12)  # 12-13: December's check owes nobody
    _arrears(app)
    assert len(_warnings(app, regulator.tenant_id, "unpaid_wages")) == 1


# --- a leaver's month is paid once, however the batches paying it run -------------------------

def _leaver_owed_november(app, contractor) -> tuple[Project, str]:
    """A project whose one worker leaves on 11-02: owed November's wages, not yet paid."""
    project = make_project(app, contractor, workers=1)  # 11-02
    [leaver] = project.worker_ids
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{leaver}",
                           json={"status": "left"})
    assert r.status_code == 200 and r.json()["status"] == "left"
    return project, leaver


def _confirmed_november_batches(project: Project, n: int) -> list[dict]:
    """`n` batches each paying the leaver 2000.00 for November, confirmed and processing."""
    batches = [_batch(project, project.workers, 2000_00, reference=f"NOV-{i}") for i in range(n)]
    for batch in batches:
        assert batch["status"] == "validated", batch
        r = project.client.post(f"/v1/payroll/batches/{batch['id']}/confirm")
        # Value date today: confirmed straight into processing, its items pending.
        assert r.status_code == 200 and r.json()["status"] == "processing", r.text
    return batches


def _item_outcomes(project: Project, batches: list[dict]) -> list[tuple[str, str | None]]:
    return sorted((i["status"], i["reason_code"]) for batch in batches
                  for i in project.client.get(f"/v1/payroll/batches/{batch['id']}/items")
                  .json()["data"])


def _skip_on_sqlite(app) -> None:
    if app.state.database.is_sqlite:
        # SQLite serializes writers (BEGIN IMMEDIATE): two paying transactions cannot overlap.
        pytest.skip("concurrent transactions need PostgreSQL")


def test_two_items_of_one_batch_pay_a_leavers_month_once(app, contractor):
    project, _ = _leaver_owed_november(app, contractor)
    # Both items pass validation: the month is unpaid when the batch is checked.
    batch = _batch(project, project.workers * 2, 2000_00)
    assert batch["status"] == "validated" and batch["item_count"] == 2, batch
    assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    # Paid in one chunk (one transaction), only the first pays the month: the second fails
    # with the reason, its money released back to the wage account.
    run_payroll(app)
    assert _item_outcomes(project, [batch]) == [("failed", "worker_not_active"),
                                                ("succeeded", None)]
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 2000_00, 0)


def _in_threads(*bodies: Callable[[], None]) -> None:
    """Run each body in its own thread; re-raise the first error in the test's thread."""
    errors: list[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        try:
            body()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a paying transaction hung (deadlock?)"
    assert errors == [], errors


@pytest.mark.timeout(120)
def test_two_batches_paying_a_leavers_month_at_once_pay_it_once(app, contractor, monkeypatch):
    _skip_on_sqlite(app)
    project, _ = _leaver_owed_november(app, contractor)
    batches = _confirmed_november_batches(project, 2)
    # Both chunks have read their pending item, each in its own transaction, before either
    # pays: the barrier lets them into the capture together.
    barrier = threading.Barrier(2)
    pay_items = processing.ledger.pay_items

    def pay_together(*args, **kwargs):
        barrier.wait(timeout=30)
        return pay_items(*args, **kwargs)

    monkeypatch.setattr(processing.ledger, "pay_items", pay_together)
    database = app.state.database

    def pay(batch_id: str) -> Callable[[], None]:
        def body() -> None:
            with database.transaction() as session:
                assert processing.process_chunk(session, batch_id) == 1
        return body

    _in_threads(*(pay(b["id"]) for b in batches))
    assert _item_outcomes(project, batches) == [("failed", "worker_not_active"),
                                                ("succeeded", None)]
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 2000_00, 0)


def _capture_context(app, tenant_id: str, batch_id: str) -> tuple[str, DebitContext]:
    """The wage account and what the ledger shows the guard to capture the batch's one item."""
    with app.state.database.transaction() as session:
        batch = session.get(PayrollBatch, batch_id)
        [item] = session.scalars(select(PayrollItem).where(PayrollItem.batch_id == batch_id))
        return batch.payer_account_id, DebitContext(
            tenant_id=tenant_id, operation="capture", purpose="payroll",
            amount_fen=item.amount_fen, authorization=PayrollDebit(batch_id, item.id),
            reference_type="payroll_item", reference_id=item.id, hold_id=batch.hold_id)


def _waiting_on_advisory_lock(app) -> bool:
    with app.state.database.transaction() as session:
        return bool(session.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).scalar())


@pytest.mark.timeout(120)
def test_the_guard_lets_one_of_two_open_transactions_pay_a_leavers_month(app, contractor):
    """The rule on its own, without the ledger's lock of the wage account (which today also
    orders two captures from it): B asks while A, having been let pay, has not committed."""
    _skip_on_sqlite(app)
    project, _ = _leaver_owed_november(app, contractor)
    batches = _confirmed_november_batches(project, 2)
    account_id, context_a = _capture_context(app, contractor.tenant_id, batches[0]["id"])
    _, context_b = _capture_context(app, contractor.tenant_id, batches[1]["id"])
    database = app.state.database
    a_let_pay, b_answered = threading.Event(), threading.Event()
    answers: dict[str, str] = {}

    def ask(session, context: DebitContext) -> str:
        account = accounts.get_account(session, contractor.tenant_id, account_id)
        try:
            wage_account_guard(session, account, context)
        except PaymentRefused as exc:
            return exc.code
        return "accepted"

    def a() -> None:
        with database.transaction() as session:
            answers["a"] = ask(session, context_a)
            a_let_pay.set()
            # Pay only once B has asked, or is waiting to: the window is open for sure.
            deadline = time.monotonic() + 30
            while not (b_answered.is_set() or _waiting_on_advisory_lock(app)):
                assert time.monotonic() < deadline, "B never asked"
                time.sleep(0.01)
            session.execute(update(PayrollItem).where(
                PayrollItem.id == context_a.authorization.item_id).values(status="succeeded"))

    def b() -> None:
        assert a_let_pay.wait(timeout=30)
        with database.transaction() as session:
            answers["b"] = ask(session, context_b)
        b_answered.set()

    _in_threads(a, b)
    assert answers == {"a": "accepted", "b": "worker_not_active"}


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_its_arrears_checks_does_not_stop_the_others(app, http, clock, caplog):
    """The arrears job serves each tenant on its own: a tenant whose run fails (its clock
    cannot be read) is logged with its id and left to the next run; the others are checked."""
    stuck, served = sorted((new_partner_client(app, http) for _ in range(2)),
                           key=lambda client: client.tenant_id)
    for client in (stuck, served):
        make_project(app, client)  # nobody paid for November
        advance_days(app, client.tenant_id, 11)  # 11-13: payday (10th) + 3 days' grace
    break_clock(app.state.database, stuck.tenant_id)

    with caplog.at_level(logging.ERROR):
        assert wage.check_arrears(app.state.database) >= 1
    warned = {client.tenant_id: [e.data["kind"] for e in events(
        app, client.tenant_id, "wage_project.arrears_warning")] for client in (stuck, served)}
    assert warned == {stuck.tenant_id: [], served.tenant_id: ["unpaid_wages"]}
    assert_failure_logged(caplog, stuck.tenant_id)


# --- a name registered is a name a batch can pay ----------------------------------------------

def test_a_name_a_batch_would_refuse_is_refused_at_registration_too(app, contractor):
    """A zero-width space pasted from a spreadsheet, or a control character: registered, such a
    worker could never be paid (items refuse the name, and the registered name cannot be
    changed), so registration, by API and by CSV, applies the items' own name rule."""
    project = make_project(app, contractor, workers=0)
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    p, q = people(2, seed=120)
    for name in ("周\u200b强", "周强\u0007", "\u200b"):
        body = problem(contractor.post(workers, {**_worker_body(p), "name": name}), 422,
                       "worker_validation_failed")
        assert [(e["field"], e["code"]) for e in body["errors"]] == [("body.name", "invalid_name")]
        assert "invisible" in body["errors"][0]["message"]
    lines = [f"{p.name},{p.id_number},{p.card},木工班,2026-10-01,",
             f"孙\u200b丽,{q.id_number},{q.card},木工班,2026-10-01,"]
    body = problem(contractor.request("POST", f"{workers}/csv",
                                      content="\n".join(lines).encode(),
                                      headers={"Content-Type": "text/csv"}), 422,
                   "invalid_worker_file")
    assert [(e["line"], e["field"], e["code"]) for e in body["errors"]] == [
        (2, "line 2.name", "invalid_name")]
    assert contractor.get(workers).json()["data"] == []  # all or nothing

    # The same rule as a batch item's, in the same words.
    worker = contractor.post(workers, _worker_body(p)).json()
    assert worker["status"] == "active"
    batch = _batch(project, [Person("周\u200b强", p.id_number, p.card)], 100_00)
    [finding] = [e for e in batch["validation"]["errors"] if e["code"] == "invalid_name"]
    assert (finding["field"], finding["message"]) == ("employee_name",
                                                      body["errors"][0]["message"])


def test_a_bad_id_number_is_not_quoted_when_registering_a_worker(app, contractor):
    project = make_project(app, contractor, workers=0)
    p = people(1, seed=121)[0]
    bad = p.id_number[:6] + "19900230" + p.id_number[14:]
    body = problem(contractor.post(f"/v1/payroll/wage-projects/{project.id}/workers",
                                   {**_worker_body(p), "id_number": bad}), 422,
                   "worker_validation_failed")
    assert body["errors"] == [{"field": "body.id_number", "code": "invalid_id_number",
                               "message": "the birth date (positions 7-14) is not a calendar date"}]
    body = problem(contractor.request(
        "POST", f"/v1/payroll/wage-projects/{project.id}/workers/csv",
        content=f"{p.name},{bad},{p.card},木工班,2026-10-01,".encode(),
        headers={"Content-Type": "text/csv"}), 422, "invalid_worker_file")
    assert "19900230" not in str(body) and body["errors"][0]["code"] == "invalid_id_number"


# --- a contract that has ended -----------------------------------------------------------------

def test_a_worker_whose_contract_ended_is_paid_only_wages_still_owed(app, http, contractor,
                                                                    operations):
    """Still `active`, but the contract ended before the batch's value date: paid, like a
    worker who left, only a month of the contract still unpaid (named as wage_month), once."""
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=2)  # 11-02, payday 10
    a_id, b_id = project.worker_ids
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    r = contractor.request("PATCH", f"{workers}/{a_id}", json={"contract_end": "2026-11-30"})
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    advance_days(app, contractor.tenant_id, 29)  # 12-01: the contract has ended, unpaid

    today = tenant_today(app, contractor.tenant_id)
    december = _batch(project, project.workers, 3000_00, value_date=today)
    assert _refusals(december) == {(1, "contract_ended")}
    [error] = december["validation"]["errors"]
    assert "contract ended" in error["message"] and "wage_month" in error["message"]

    november = _batch(project, project.workers[:1], 3000_00, value_date=today,
                      wage_month="2026-11")
    assert november["status"] == "validated", november
    assert contractor.post(f"/v1/payroll/batches/{november['id']}/confirm").status_code == 200
    run_payroll(app)
    assert contractor.get(f"/v1/payroll/batches/{november['id']}").json()["status"] == "completed"
    assert _month(regulator, project, "2026-11") == {a_id: "paid", b_id: "unpaid"}
    assert _month(regulator, project, "2026-12")[a_id] == "not_owed"
    # November is paid now: not twice.
    assert _refusals(_batch(project, project.workers[:1], 3000_00, value_date=today,
                            wage_month="2026-11")) == {(1, "contract_ended")}
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 3000_00, 0)


def test_a_contract_ended_after_confirmation_is_refused_when_the_item_is_paid(app, contractor):
    project = make_project(app, contractor, workers=1)  # 11-02
    [a_id] = project.worker_ids
    batch = _batch(project, project.workers, 3000_00, value_date=date(2026, 12, 1),
                   wage_month="2026-12")
    assert batch["status"] == "validated", batch
    assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").json()["status"] == (
        "scheduled")
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{a_id}",
                           json={"contract_end": "2026-11-15"})
    assert r.status_code == 200, r.text
    advance_days(app, contractor.tenant_id, 29)  # 12-01: the value date, after the contract
    run_payroll(app)
    [item] = contractor.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
    assert (item["status"], item["reason_code"]) == ("failed", "contract_ended")
    assert item["reason"].startswith("劳动合同已到期")
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00, 0)


# --- arrears checks catch up after the clock jumps -----------------------------------------------

def test_every_month_the_clock_jumps_over_is_warned_once(app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=2)  # 11-02: first cycle 2026-11, payday 10
    advance_days(app, contractor.tenant_id, 104)  # 2027-02-14, in one step: nobody ever paid
    _arrears(app)
    months = ["2026-11", "2026-12", "2027-01", "2027-02"]
    for tenant_id in (regulator.tenant_id, contractor.tenant_id):
        fired = _warnings(app, tenant_id, "unpaid_wages")
        assert [(w["cycle"], w["unpaid_workers"], w["business_date"]) for w in fired] == [
            (m, 2, "2027-02-14") for m in months]
    listed = regulator.get(f"/v1/payroll/supervision/projects/{project.id}/warnings").json()
    assert sorted(w["cycle"] for w in listed["data"]) == months
    assert set(_month(regulator, project, "2027-01").values()) == {"unpaid"}
    _arrears(app)
    assert len(_warnings(app, regulator.tenant_id, "unpaid_wages")) == 4  # never twice

    advance_days(app, contractor.tenant_id, 30)  # 03-16: March's payday + 3 has passed
    _arrears(app)
    _arrears(app)
    assert [w["cycle"] for w in _warnings(app, regulator.tenant_id, "unpaid_wages")] == [
        *months, "2027-03"]
    assert _warnings(app, regulator.tenant_id, "insufficient_balance") == []


def test_a_registered_name_is_corrected_so_the_worker_can_be_paid(app, contractor):
    """A typo at registration leaves the worker unpayable (items must carry the registered
    name): the contractor corrects it, under the items' name rule, and the batch validates."""
    project = make_project(app, contractor, workers=0)
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    p = people(1, seed=122)[0]
    typo = p.name[0] + "某" if p.name[1:] != "某" else p.name[0] + "甲"
    worker = contractor.post(workers, {**_worker_body(p), "name": typo}).json()
    refused = _batch(project, [p], 100_00)
    assert "worker_name_mismatch" in {e["code"] for e in refused["validation"]["errors"]}
    bad = problem(contractor.request("PATCH", f"{workers}/{worker['id']}",
                                     json={"name": p.name + "\u200b"}), 422,
                  "worker_validation_failed")
    assert [(e["field"], e["code"]) for e in bad["errors"]] == [("body.name", "invalid_name")]
    fixed = contractor.request("PATCH", f"{workers}/{worker['id']}", json={"name": p.name})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["name"] != p.name and fixed.json()["name"].startswith(p.name[0])  # masked
    accepted = _batch(project, [p], 100_00)
    assert accepted["validation"]["errors"] == [], accepted["validation"]


# --- the agreed monthly wage: a month is paid once its payments reach it ----------------------

def _money(text: str) -> dict[str, str]:
    return {"amount": text, "currency": "CNY"}


def _statuses(regulator: PartnerClient, project: Project, month: str) -> dict[str, dict]:
    r = regulator.get(f"/v1/payroll/supervision/projects/{project.id}/workers?month={month}")
    assert r.status_code == 200, r.text
    return {w["worker_id"]: w for w in r.json()["data"]}


def _project_with_agreed_wages(app, contractor) -> Project:
    """Three workers agreed 5000.00 a month: A and B at registration (by API, by CSV), C by
    PATCH afterwards."""
    project = make_project(app, contractor, workers=0)  # 11-02, payday 10, grace 3 days
    a, b, c = people(3, seed=61)
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    r = contractor.post(workers, {**_worker_body(a), "monthly_wage": _money("5000.00")})
    assert r.status_code == 201 and r.json()["monthly_wage"] == _money("5000.00"), r.text
    a_id = r.json()["id"]
    r = contractor.request("POST", f"{workers}/csv", headers={"Content-Type": "text/csv"},
                           content=f"{b.name},{b.id_number},{b.card},钢筋班,2026-10-01,,5000.00"
                           .encode())
    assert r.status_code == 201 and r.json()["data"][0]["monthly_wage"] == _money("5000.00"), (
        r.text)
    b_id = r.json()["data"][0]["id"]
    r = contractor.post(workers, _worker_body(c))
    assert r.status_code == 201 and r.json()["monthly_wage"] is None, r.text
    c_id = r.json()["id"]
    r = contractor.request("PATCH", f"{workers}/{c_id}",
                           json={"monthly_wage": _money("5000.00")})
    assert r.status_code == 200 and r.json()["monthly_wage"] == _money("5000.00"), r.text
    # A wage of nothing is no agreement.
    problem(contractor.request("PATCH", f"{workers}/{c_id}",
                               json={"monthly_wage": _money("0.00")}), 422, "validation_failed")
    project.workers, project.worker_ids = [a, b, c], [a_id, b_id, c_id]
    return project


def test_a_token_payment_leaves_an_agreed_wage_partially_paid_and_in_arrears(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = _project_with_agreed_wages(app, contractor)
    a, b, c = project.workers
    a_id, b_id, c_id = project.worker_ids
    batch = _batch(project, [a], 5000_00)
    assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    _pay(app, project, [b], 1)  # 0.01 of the 5000.00 agreed
    november = _statuses(regulator, project, "2026-11")
    assert {w: m["payment_status"] for w, m in november.items()} == {
        a_id: "paid", b_id: "partially_paid", c_id: "not_due"}
    assert (november[b_id]["paid_amount"], november[b_id]["agreed_wage"],
            november[b_id]["outstanding_amount"], november[b_id]["wage_agreed"]) == (
        _money("0.01"), _money("5000.00"), _money("4999.99"), True)
    assert november[a_id]["outstanding_amount"] == _money("0.00")

    advance_days(app, contractor.tenant_id, 11)  # 11-13: payday + 3 days
    _arrears(app)
    [fired] = _warnings(app, regulator.tenant_id, "unpaid_wages")
    assert (fired["expected_workers"], fired["unpaid_workers"], fired["underpaid_workers"],
            fired["owed_workers"]) == (3, 1, 1, 2)
    assert [w["worker_id"] for w in fired["unpaid"]] == [c_id]
    [under] = fired["underpaid"]
    assert (under["worker_id"], under["paid_amount"], under["agreed_wage"],
            under["outstanding_amount"]) == (b_id, _money("0.01"), _money("5000.00"),
                                             _money("4999.99"))
    assert fired["outstanding_amount"] == _money("9999.99")
    assert fired["workers_without_agreed_wage"] == 0
    assert _statuses(regulator, project, "2026-11")[c_id]["payment_status"] == "unpaid"

    # B leaves, paid in part: the rest of November is still owed and paid from the account,
    # but no more than the rest.
    workers = f"/v1/payroll/wage-projects/{project.id}/workers"
    assert contractor.request("PATCH", f"{workers}/{b_id}",
                              json={"status": "left"}).json()["status"] == "left"
    today = tenant_today(app, contractor.tenant_id)
    too_much = _batch(project, [b], 5000_00, value_date=today, wage_month="2026-11")
    assert _refusals(too_much) == {(1, "exceeds_wage_owed")}
    [error] = too_much["validation"]["errors"]
    assert error["field"] == "amount" and "4999.99" in error["message"]
    # Two items together beyond the rest are refused too.
    assert _refusals(_batch(project, [b, b], 3000_00, value_date=today,
                            wage_month="2026-11")) == {(2, "exceeds_wage_owed")}
    rest = _batch(project, [b], 4999_99, value_date=today, wage_month="2026-11")
    assert rest["status"] == "validated", rest
    assert contractor.post(f"/v1/payroll/batches/{rest['id']}/confirm").status_code == 200
    run_payroll(app)
    assert contractor.get(f"/v1/payroll/batches/{rest['id']}").json()["status"] == "completed"
    seen = _statuses(regulator, project, "2026-11")[b_id]
    assert (seen["payment_status"], seen["paid_amount"], seen["outstanding_amount"],
            seen["payments"]) == ("paid", _money("5000.00"), _money("0.00"), 2)
    # Paid in full now: nothing more for November.
    assert _refusals(_batch(project, [b], 1, value_date=today, wage_month="2026-11")) == {
        (1, "worker_not_active")}
    assert balance(app, contractor.tenant_id, project.wage_account) == (
        100_000_00 - 10_000_00, 0)


def test_the_debit_guard_pays_a_leaver_no_more_than_the_rest_of_the_agreed_wage(app, contractor):
    project = _project_with_agreed_wages(app, contractor)  # 11-02
    b_id = project.worker_ids[1]
    # Two November batches of 3000.00 each, confirmed while B is on the project; B leaves.
    batches = [_batch(project, project.workers[1:2], 3000_00, reference=f"NOV-{n}")
               for n in (1, 2)]
    for batch in batches:
        assert contractor.post(f"/v1/payroll/batches/{batch['id']}/confirm").status_code == 200
    r = contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{b_id}",
                           json={"status": "left"})
    assert r.status_code == 200, r.text
    run_payroll(app)
    # The first pays 3000.00 of the 5000.00; the second would pay beyond it and is refused.
    items = _item_outcomes(project, batches)
    assert items == [("failed", "exceeds_wage_owed"), ("succeeded", None)]
    failed = [i for batch in batches for i in contractor.get(
        f"/v1/payroll/batches/{batch['id']}/items?status=failed").json()["data"]]
    assert failed[0]["reason"].startswith("超出欠付工资")
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00 - 3000_00, 0)


def test_without_an_agreed_wage_any_payment_pays_the_month_and_the_regulator_is_told(
        app, http, contractor, operations):
    regulator = _regulator(app, http, operations)
    project = make_project(app, contractor, workers=2)  # no agreed wages
    a_id, b_id = project.worker_ids
    _pay(app, project, project.workers[:1], 1)  # 0.01
    seen = _statuses(regulator, project, "2026-11")[a_id]
    assert (seen["payment_status"], seen["paid_amount"], seen["wage_agreed"],
            seen["agreed_wage"], seen["outstanding_amount"]) == (
        "paid", _money("0.01"), False, None, None)
    advance_days(app, contractor.tenant_id, 11)  # 11-13
    _arrears(app)
    [fired] = _warnings(app, regulator.tenant_id, "unpaid_wages")
    assert (fired["unpaid_workers"], fired["underpaid_workers"], fired["owed_workers"],
            fired["workers_without_agreed_wage"]) == (1, 0, 1, 2)
    assert [(w["worker_id"], w["agreed_wage"]) for w in fired["unpaid"]] == [(b_id, None)]
    assert fired["outstanding_amount"] == _money("0.00")  # no agreed wage: amount not known
    # A leaver without an agreed wage is paid a month once, as before.
    contractor.request("PATCH", f"/v1/payroll/wage-projects/{project.id}/workers/{a_id}",
                       json={"status": "left"})
    assert _refusals(_batch(project, project.workers[:1], 4000_00,
                            value_date=tenant_today(app, contractor.tenant_id),
                            wage_month="2026-11")) == {(1, "worker_not_active")}


def test_a_wage_month_after_the_value_dates_month_is_refused_and_nothing_is_held(
        app, contractor):
    project = make_project(app, contractor, workers=1)  # 11-02
    refused = problem(contractor.post("/v1/payroll/batches", batch_body(
        project.wage_account, items_for(project.workers, [1]), wage_month="2027-03")), 422,
        "wage_month_in_future")
    assert [e["field"] for e in refused["errors"]] == ["body.header.wage_month"]
    # The CSV header's 7th field likewise.
    lines = csv_text(project.wage_account, items_for(project.workers, [1])).split("\r\n")
    lines[0] += ",2026-12"
    refused = problem(upload(contractor, "\r\n".join(lines).encode()), 422,
                      "wage_month_in_future")
    assert [e["field"] for e in refused["errors"]] == ["header.wage_month"]
    assert contractor.get("/v1/payroll/batches").json()["data"] == []
    assert balance(app, contractor.tenant_id, project.wage_account) == (100_000_00, 0)
    # The value date's month, or one before it, is accepted.
    for value_date, month in ((date(2026, 12, 1), "2026-12"), (TODAY, "2026-10")):
        batch = _batch(project, project.workers, 1, value_date=value_date, wage_month=month)
        assert batch["status"] == "validated" and batch["wage_month"] == month, batch
