"""Two requests creating the same wage project, registering the same worker, or submitting
batches with the same external reference, at once: the loser gets the problem a later request
gets (naming the winner where that one does), not a bare `concurrent_update`, and nothing of it
stays: no second project, wage account, worker, batch or item (`tests.tools.concurrency.race_second`)."""

from __future__ import annotations

import random
from itertools import count

from sqlalchemy import func, select

from gateway.identifiers import generate_uscc
from gateway.tenancy import Principal
from products.accounts.models import Account
from products.payroll import service, wage
from products.payroll.models import PayrollBatch, PayrollItem, WageProject, WageWorker
from products.payroll.schemas import BatchIn, WageProjectIn, WorkerIn
from tests.products.payroll.support import batch_body, items_for, people
from tests.tools.api import PartnerClient
from tests.tools.concurrency import race_second

RNG = random.Random(17)


def _principal(client: PartnerClient) -> Principal:
    return Principal(client_id=client.client_id, partner_id=client.partner_id,
                     tenant_id=client.tenant_id, environment="sandbox",
                     scopes=frozenset(client.scopes))


def _count(app, model, *where) -> int:
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _project(code: str) -> WageProjectIn:
    return WageProjectIn(project_code=code, name="浦江镇保障房二期", region_code="310115",
                         contractor_name="上海恒达建设工程有限公司",
                         contractor_uscc=generate_uscc(RNG),
                         developer_name="上海浦江房地产开发有限公司",
                         developer_uscc=generate_uscc(RNG), payday=10)


def test_the_same_wage_project_created_twice_at_once_is_a_duplicate(app, employer):
    principal, tenant_id = _principal(employer.client), employer.client.tenant_id
    body = _project("P-RACE-1")
    raced = race_second(app.state.database, lambda s: wage.create_project(s, principal, body))
    assert raced.code == "duplicate_project_code"
    assert _count(app, WageProject, WageProject.tenant_id == tenant_id) == 1
    # The loser's wage account, opened before its project was refused, went with it.
    assert _count(app, Account, Account.tenant_id == tenant_id, Account.kind == "wage") == 1


def _worker(person) -> WorkerIn:
    return WorkerIn.model_validate({"name": person.name, "id_number": person.id_number,
                                    "card_number": person.card, "team": "钢筋班",
                                    "contract_start": "2026-10-01"})


def test_the_same_worker_registered_twice_at_once_is_a_duplicate(app, employer):
    principal = _principal(employer.client)
    with app.state.database.transaction() as s:
        project = wage.create_project(s, principal, _project("P-RACE-2")).id
    person = people(1, seed=81)[0]
    raced = race_second(app.state.database, lambda s: wage.register_worker(
        s, principal, project, _worker(person)))
    assert raced.code == "worker_already_registered"
    assert _count(app, WageWorker, WageWorker.project_id == project) == 1


def test_a_worker_file_naming_a_worker_registered_at_the_same_time_is_refused(app, employer):
    principal = _principal(employer.client)
    with app.state.database.transaction() as s:
        project = wage.create_project(s, principal, _project("P-RACE-3")).id
    person, other = people(2, seed=82)
    calls = count()

    def register_then_import(s):
        if next(calls) == 0:
            return wage.register_worker(s, principal, project, _worker(person))
        lines = [(1, [other.name, other.id_number, other.card, "木工班", "2026-10-01", ""]),
                 (2, [person.name, person.id_number, person.card, "木工班", "2026-10-01", ""])]
        return wage.import_workers(s, principal, project, iter(lines))

    raced = race_second(app.state.database, register_then_import)
    assert raced.code == "invalid_worker_file"
    assert raced.problem is not None
    assert [(e["line"], e["code"]) for e in raced.problem.errors or []] == [
        (2, "worker_already_registered")]
    # All or nothing: the file's other worker is not registered either.
    assert _count(app, WageWorker, WageWorker.project_id == project) == 1


def test_two_batches_with_one_external_reference_at_once(app, employer):
    principal, tenant_id = _principal(employer.client), employer.client.tenant_id
    body = BatchIn.model_validate(batch_body(employer.account_id, items_for(people(3, seed=83)),
                                             reference="HR-RACE-1"))
    raced = race_second(app.state.database, lambda s: service.create_batch(s, principal, body))
    assert raced.code == "duplicate_external_reference"
    assert raced.problem is not None and raced.problem.extra == {"batch_id": raced.first.id}
    assert _count(app, PayrollBatch, PayrollBatch.tenant_id == tenant_id) == 1
    assert _count(app, PayrollItem, PayrollItem.tenant_id == tenant_id) == 3
