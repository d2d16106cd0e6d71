"""Supervised migrant-worker wage accounts (农民工工资专户).

A wage project is a construction project with a special wage account opened for it. The
developer (建设单位) funds the account with labour costs (人工费用拨付); the general contractor's
labour platform registers the workers by real name (实名制) and pays them from the account in
payroll batches, each worker only to the registered card, a worker who has left or whose contract
has ended only wages still owed (`may_be_paid`). No other debit leaves the account:
the ledger's debit guard (`wage_account_guard`) refuses anything that is not the payment of a
validated item of a batch of that project.

A labour regulator (a partner holding `payroll:supervise` and region grants) sees the projects
of its regions, their balances and every registered worker's monthly payment status, and is
warned (`wage_project.arrears_warning`, 欠薪预警) when registered workers are still unpaid
`arrears_grace_days` after payday, or when, `balance_check_days` before payday, the balance
cannot cover last month's payroll. Pay cycles are calendar months (`YYYY-MM`): a batch belongs
to the cycle in its `wage_month` (by default its value date's month), due on that month's payday.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from gateway.clock import business_date, to_rfc3339
from gateway.db import advisory_lock, insert_unique
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.identifiers import IdentifierError, validate_bank_card, validate_resident_id, validate_uscc
from gateway.ids import new_id
from gateway.jobs import for_each_tenant_item
from gateway.money import MoneyError, format_fen, parse_fen
from gateway.pagination import decode_cursor, encode_cursor, page, scope_of
from gateway.pii import mask_account_number, mask_id_number, mask_name, pii_digest
from gateway.tenancy import Partner, Principal, Tenant, clock_for
from products.accounts.models import Account
from products.accounts.port import DebitContext
from products.payroll import ledger
from products.payroll.errors import (
    DuplicateWageProject,
    DuplicateWorker,
    InvalidWorkerFile,
    RegionNotGranted,
    WageAccountRestricted,
    WageProjectNotFound,
    WageWorkerNotFound,
    WorkerValidationFailed,
)
from products.payroll.models import (
    PayrollBatch,
    PayrollItem,
    RegulatorRegion,
    WageCheck,
    WageFunding,
    WageProject,
    WageWorker,
)
from products.payroll.schemas import FundingIn, RegulatorGrantIn, WageProjectIn, WorkerIn, WorkerPatch
from products.payroll.service import _money, _ts
from products.payroll.validation import name_problem

log = logging.getLogger("quanlian.payroll")

MAX_WORKER_FILE_LINES = 20_000
FUNDED_STATES = ("scheduled", "processing", "completed", "partially_completed")


def _now(session: Session, tenant_id: str) -> datetime:
    return clock_for(session, tenant_id).now()


def _cycle(day: date) -> str:
    return day.strftime("%Y-%m")


def _cycle_due(cycle: str, payday: int) -> date:
    year, month = (int(p) for p in cycle.split("-"))
    return date(year, month, payday)


def _previous_cycle(cycle: str) -> str:
    year, month = (int(p) for p in cycle.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def _next_cycle(cycle: str) -> str:
    year, month = (int(p) for p in cycle.split("-"))
    return f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"


def _last_day(worker: WageWorker) -> date | None:
    """The worker's last day on the project: the contract's end or the day they left."""
    ends = [d for d in (worker.contract_end, worker.left_on) if d is not None]
    return min(ends) if ends else None


def owed_for(project: WageProject, worker: WageWorker, cycle: str) -> bool:
    """Whether `worker` is owed wages for pay month `cycle`: the one rule behind both the
    arrears check and the regulator's monthly view.

    Owed when the project's pay cycles had begun (`first_cycle`), the worker was registered and
    under contract by that month's payday, and was still on the project on some day of that
    month (neither the contract's end nor the day they left falls before its first day). It
    depends only on dates, never on today's status: a worker who leaves after payday stays owed
    for that month until paid.
    """
    if cycle < project.first_cycle:
        return False
    due = _cycle_due(cycle, project.payday)
    last = _last_day(worker)
    return (business_date(worker.created_at) <= due and worker.contract_start <= due
            and (last is None or last >= due.replace(day=1)))


def on_project(worker: WageWorker, value_date: date) -> bool:
    """Whether the worker is still on the project on a batch's value date: `active`, and the
    contract (if it has an end) not ended before that day."""
    return worker.status == "active" and (worker.contract_end is None
                                          or worker.contract_end >= value_date)


def may_be_paid(session: Session, project: WageProject, worker: WageWorker, cycle: str,
                value_date: date) -> bool:
    """Whether the project's wage account may pay `worker` wages for pay month `cycle` (a
    batch's `wage_month`) on `value_date`: the one rule for batch validation and the debit guard.

    A worker still on the project (`on_project`) may be paid. A worker who is not (`left`, or
    whose contract ended before the value date though still `active`) may be paid only wages
    still owed: owed for `cycle` (`owed_for`, which ends with the contract or the leaving) and
    `cycle` not yet paid for them (`is_paid`, as the regulator's view counts it: with an agreed
    wage, a month paid in part is still owed its rest, and `leaver_allowance` says how much).
    So arrears are paid after the work has ended, while a month after it, or a month already
    paid, gets nothing from the account: the same months the arrears check and the regulator's
    view owe.
    """
    if on_project(worker, value_date):
        return True
    if not owed_for(project, worker, cycle):
        return False
    return not is_paid(_paid_in_cycle(session, project.id, cycle, worker.id), worker)


def leaver_allowance(session: Session, project: WageProject, worker: WageWorker, cycle: str,
                     value_date: date) -> int | None:
    """The most (in fen) the wage account may still pay a worker who is no longer on the
    project for pay month `cycle`: the rest of the agreed wage. None when no such limit
    applies: the worker is on the project, or has no agreed wage (then the month is paid once,
    by its first successful payment, whatever the amount). Ask `may_be_paid` first."""
    if on_project(worker, value_date) or worker.monthly_wage_fen is None:
        return None
    return outstanding_fen(_paid_in_cycle(session, project.id, cycle, worker.id), worker)


def exceeds_refusal(worker: WageWorker, cycle: str, allowance: int) -> tuple[str, str]:
    """(code, message) for a payment to a leaver beyond the rest of the month's agreed wage."""
    return "exceeds_wage_owed", (f"The registered worker is no longer on the project and is "
                                 f"owed {format_fen(allowance)} of the agreed monthly wage "
                                 f"({format_fen(worker.monthly_wage_fen or 0)}) for {cycle}; "
                                 "the account pays no more than that.")


def refusal(worker: WageWorker, cycle: str) -> tuple[str, str]:
    """(code, message) for a worker `may_be_paid` refuses: one who left, or whose contract
    ended before the batch's value date, and is owed no unpaid wages for `cycle`."""
    if worker.status != "active":
        return "worker_not_active", ("The registered worker has left the project and is owed "
                                     f"no unpaid wages for {cycle}.")
    return "contract_ended", ("The registered worker's contract ended before the value date "
                              f"and they are owed no unpaid wages for {cycle}; to pay wages "
                              "owed for a month of the contract, name it as wage_month.")


def batch_cycle(batch: PayrollBatch) -> str:
    """The pay month a batch pays: its `wage_month` (set from the value date when not given)."""
    return batch.wage_month or _cycle(batch.value_date)


# --- views ---------------------------------------------------------------------------------

def project_view(p: WageProject) -> dict[str, Any]:
    return {"id": p.id, "project_code": p.project_code, "name": p.name,
            "region_code": p.region_code, "contractor_name": p.contractor_name,
            "contractor_uscc": p.contractor_uscc, "developer_name": p.developer_name,
            "developer_uscc": p.developer_uscc, "developer_account_id": p.developer_account_id,
            "wage_account_id": p.wage_account_id, "payday": p.payday,
            "arrears_grace_days": p.arrears_grace_days,
            "balance_check_days": p.balance_check_days, "status": p.status,
            "created_at": to_rfc3339(p.created_at)}


def worker_view(w: WageWorker) -> dict[str, Any]:
    return {"id": w.id, "project_id": w.project_id, "name": w.name_masked,
            "id_number": w.id_masked, "card_number": w.card_masked, "team": w.team,
            "contract_start": w.contract_start.isoformat(),
            "contract_end": w.contract_end.isoformat() if w.contract_end else None,
            "status": w.status,
            "monthly_wage": (_money(w.monthly_wage_fen) if w.monthly_wage_fen is not None
                             else None),
            "created_at": to_rfc3339(w.created_at)}


def funding_view(f: WageFunding) -> dict[str, Any]:
    return {"id": f.id, "project_id": f.project_id, "from_account_id": f.from_account_id,
            "amount": _money(f.amount_fen), "journal_ref": f.journal_ref, "memo": f.memo,
            "created_at": to_rfc3339(f.created_at)}


def check_view(c: WageCheck) -> dict[str, Any]:
    return {"id": c.id, "project_id": c.project_id, "cycle": c.cycle, "kind": c.kind,
            "business_date": c.business_date.isoformat(), "details": c.details,
            "checked_at": to_rfc3339(c.checked_at)}


# Region grants page by (partner_id, region_code); every other list by its id (gateway.pagination).
_GRANTS = scope_of(RegulatorRegion.partner_id, RegulatorRegion.region_code, newest_first=False)


# --- projects --------------------------------------------------------------------------------

def _uscc(value: str, field: str) -> str:
    try:
        return validate_uscc(value)
    except IdentifierError as exc:
        raise ValidationFailed(f"The {field.replace('_', ' ')} is not valid: {exc}.",
                               code="invalid_uscc",
                               errors=[{"field": f"body.{field}", "message": str(exc)}]) from None


def create_project(session: Session, principal: Principal, body: WageProjectIn) -> WageProject:
    """Register a wage project and open its special wage account in the ledger."""
    tenant_id = principal.tenant_id
    contractor_uscc = _uscc(body.contractor_uscc, "contractor_uscc")
    developer_uscc = _uscc(body.developer_uscc, "developer_uscc")
    if body.region_code[:2] == "00":
        raise ValidationFailed("The region code is not an administrative division code.",
                               code="invalid_region_code")
    exists = DuplicateWageProject(f"A wage project with code {body.project_code!r} exists.")
    if session.scalars(select(WageProject.id).where(
            WageProject.tenant_id == tenant_id,
            WageProject.project_code == body.project_code)).first():
        raise exists
    if body.developer_account_id:
        ledger.payer_account(session, tenant_id, body.developer_account_id,
                             field="body.developer_account_id")
    now = _now(session, tenant_id)
    today = business_date(now)
    first_cycle = _cycle(today) if today.day <= body.payday else _next_cycle(_cycle(today))
    project_id = new_id("wproj")
    account_id = ledger.open_wage_account(session, tenant_id, project_code=body.project_code,
                                          owner_name=body.contractor_name,
                                          owner_uscc=contractor_uscc)
    project = WageProject(
        id=project_id, tenant_id=tenant_id, project_code=body.project_code, name=body.name,
        region_code=body.region_code, contractor_name=body.contractor_name,
        contractor_uscc=contractor_uscc, developer_name=body.developer_name,
        developer_uscc=developer_uscc, developer_account_id=body.developer_account_id,
        wage_account_id=account_id, payday=body.payday,
        arrears_grace_days=body.arrears_grace_days, balance_check_days=body.balance_check_days,
        status="active", first_cycle=first_cycle, created_by=principal.client_id, created_at=now)
    # The wage account opened above goes with the request's transaction if this is refused.
    insert_unique(session, [project], exists)
    publish(session, tenant_id=tenant_id, type="wage_project.created", resource_type="wage_project",
            resource_id=project.id, data=project_view(project), actor=principal.client_id, at=now)
    return project


def get_project(session: Session, tenant_id: str, project_id: str) -> WageProject:
    project = session.scalars(select(WageProject).where(
        WageProject.id == project_id, WageProject.tenant_id == tenant_id)).first()
    if project is None:
        raise WageProjectNotFound(f"No wage project {project_id}.")
    return project


def list_projects(session: Session, tenant_id: str, *, limit: int, cursor: str | None
                  ) -> tuple[list[WageProject], str | None]:
    query = select(WageProject).where(WageProject.tenant_id == tenant_id)
    return page(session, query, WageProject.id, limit=limit, cursor=cursor)


def project_for_account(session: Session, account_id: str) -> WageProject | None:
    return session.scalars(select(WageProject).where(
        WageProject.wage_account_id == account_id)).first()


# --- workers ---------------------------------------------------------------------------------

def _check_worker(*, name: str, id_number: str, card_number: str, team: str,
                  contract_start: date, contract_end: date | None, today: date,
                  prefix: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    errors: list[dict[str, str]] = []
    values = {"name": name.strip(), "team": team.strip()}
    # The batch items' rule: a name they could not repeat would leave the worker unpayable.
    problem = name_problem(values["name"])
    if problem:
        errors.append({"field": f"{prefix}name", "code": problem[0], "message": problem[1]})
    if not values["team"] or len(values["team"]) > 60:
        errors.append({"field": f"{prefix}team", "message": "1 to 60 characters",
                       "code": "invalid_team"})
    try:
        values["id_number"] = validate_resident_id(id_number, today=today)
    except IdentifierError as exc:
        errors.append({"field": f"{prefix}id_number", "message": str(exc),
                       "code": "invalid_id_number"})
    try:
        values["card_number"] = validate_bank_card(card_number)
    except IdentifierError as exc:
        errors.append({"field": f"{prefix}card_number", "message": str(exc),
                       "code": "invalid_account_number"})
    if contract_end is not None and contract_end < contract_start:
        errors.append({"field": f"{prefix}contract_end", "message": "before the contract start",
                       "code": "invalid_contract_dates"})
    return values, errors


def _new_worker(session: Session, project: WageProject, values: dict[str, str], *,
                contract_start: date, contract_end: date | None, now: datetime,
                monthly_wage_fen: int | None = None) -> WageWorker:
    return WageWorker(
        id=new_id("wworker"), tenant_id=project.tenant_id, project_id=project.id,
        name=values["name"], name_masked=mask_name(values["name"]),
        name_digest=pii_digest(values["name"]), id_number=values["id_number"],
        id_digest=pii_digest(values["id_number"]), id_masked=mask_id_number(values["id_number"]),
        card_number=values["card_number"], card_digest=pii_digest(values["card_number"]),
        card_masked=mask_account_number(values["card_number"]), team=values["team"],
        contract_start=contract_start, contract_end=contract_end, status="active",
        monthly_wage_fen=monthly_wage_fen, created_at=now, updated_at=now)


def register_worker(session: Session, principal: Principal, project_id: str,
                    body: WorkerIn) -> WageWorker:
    """Register one worker by real name on a project (its contractor's platform only)."""
    project = get_project(session, principal.tenant_id, project_id)
    now = _now(session, principal.tenant_id)
    values, errors = _check_worker(name=body.name, id_number=body.id_number,
                                   card_number=body.card_number, team=body.team,
                                   contract_start=body.contract_start,
                                   contract_end=body.contract_end, today=business_date(now),
                                   prefix="body.")
    if errors:
        raise WorkerValidationFailed(f"{len(errors)} field(s) are not valid.", errors=errors)
    exists = DuplicateWorker("This person is already registered on the project.")
    if session.scalars(select(WageWorker.id).where(
            WageWorker.project_id == project.id,
            WageWorker.id_digest == pii_digest(values["id_number"]))).first():
        raise exists
    worker = _new_worker(session, project, values, contract_start=body.contract_start,
                         contract_end=body.contract_end, now=now,
                         monthly_wage_fen=body.monthly_wage.fen if body.monthly_wage else None)
    insert_unique(session, [worker], exists)
    publish(session, tenant_id=project.tenant_id, type="wage_worker.registered",
            resource_type="wage_worker", resource_id=worker.id, data=worker_view(worker),
            actor=principal.client_id, at=now)
    return worker


WORKER_COLUMNS = ("name", "id_number", "card_number", "team", "contract_start", "contract_end",
                  "monthly_wage")
_TITLES = {"name", "姓名"}


def _registered(session: Session, project: WageProject) -> set[str]:
    """The id digests of the project's registered workers."""
    return set(session.scalars(select(WageWorker.id_digest).where(
        WageWorker.project_id == project.id)))


def _already_registered(line_no: int) -> dict[str, Any]:
    return {"field": f"line {line_no}.id_number", "line": line_no,
            "code": "worker_already_registered",
            "message": "this person is already registered on the project"}


def _invalid_worker_file(errors: list[dict[str, Any]]) -> InvalidWorkerFile:
    return InvalidWorkerFile(f"{len(errors)} problem(s) in the worker file; nothing was "
                             "registered.", errors=errors[:1000])


def import_workers(session: Session, principal: Principal, project_id: str,
                   lines: Iterator[tuple[int, list[str]]]) -> list[WageWorker]:
    """Register workers from CSV records (name,id_number,card_number,team,contract_start,
    contract_end[,monthly_wage]); all or nothing: any bad line refuses the file with every
    problem listed."""
    project = get_project(session, principal.tenant_id, project_id)
    now = _now(session, principal.tenant_id)
    today = business_date(now)
    known = _registered(session, project)
    errors: list[dict[str, Any]] = []
    workers: list[WageWorker] = []
    seen: dict[str, int] = {}  # id digest: the line registering it
    for line_no, fields in lines:
        if not any(fields):
            continue
        if line_no == 1 and fields[0].lstrip("\ufeff").strip().lower() in _TITLES:
            continue
        if line_no > MAX_WORKER_FILE_LINES:
            raise InvalidWorkerFile(f"A worker file holds at most {MAX_WORKER_FILE_LINES} lines.")
        where = f"line {line_no}."
        if len(fields) not in (5, 6, 7):
            errors.append({"field": f"line {line_no}", "line": line_no, "code": "malformed_csv",
                           "message": "expected " + ",".join(WORKER_COLUMNS[:6])
                           + "[,monthly_wage]"})
            continue
        start_text, end_text = fields[4], fields[5] if len(fields) >= 6 else ""
        wage_text = fields[6].strip() if len(fields) == 7 else ""
        try:
            monthly_wage = parse_fen(wage_text, allow_zero=False) if wage_text else None
        except MoneyError as exc:
            errors.append({"field": where + "monthly_wage", "line": line_no,
                           "code": "invalid_amount", "message": str(exc)})
            continue
        try:
            start = date.fromisoformat(start_text)
            end = date.fromisoformat(end_text) if end_text else None
        except ValueError:
            errors.append({"field": where + "contract_start", "line": line_no,
                           "code": "invalid_date", "message": "dates are YYYY-MM-DD"})
            continue
        values, problems = _check_worker(name=fields[0], id_number=fields[1],
                                         card_number=fields[2], team=fields[3],
                                         contract_start=start, contract_end=end, today=today,
                                         prefix=where)
        for p in problems:
            p["line"] = line_no  # type: ignore[assignment]
        errors.extend(problems)
        if problems:
            continue
        digest = pii_digest(values["id_number"])
        if digest in known or digest in seen:
            errors.append(_already_registered(line_no))
            continue
        seen[digest] = line_no
        workers.append(_new_worker(session, project, values, contract_start=start,
                                   contract_end=end, now=now, monthly_wage_fen=monthly_wage))
    if errors:
        raise _invalid_worker_file(errors)
    if not workers:
        raise InvalidWorkerFile("The worker file has no workers.")

    def registered_meanwhile() -> InvalidWorkerFile:
        """A concurrent request registered some of the file's workers: their lines."""
        now_known = _registered(session, project)
        return _invalid_worker_file([_already_registered(line) for digest, line in seen.items()
                                     if digest in now_known])

    insert_unique(session, workers, registered_meanwhile)
    for worker in workers:
        publish(session, tenant_id=project.tenant_id, type="wage_worker.registered",
                resource_type="wage_worker", resource_id=worker.id, data=worker_view(worker),
                actor=principal.client_id, at=now)
    return workers


def get_worker(session: Session, tenant_id: str, project_id: str, worker_id: str) -> WageWorker:
    get_project(session, tenant_id, project_id)
    worker = session.scalars(select(WageWorker).where(
        WageWorker.id == worker_id, WageWorker.project_id == project_id)).first()
    if worker is None:
        raise WageWorkerNotFound(f"No registered worker {worker_id} on project {project_id}.")
    return worker


def update_worker(session: Session, principal: Principal, project_id: str, worker_id: str,
                  patch: WorkerPatch) -> WageWorker:
    """A worker leaves (or returns), a contract end date, a new registered card, or the
    registered name corrected (a typo at registration would leave the worker unpayable: batch
    items must carry the registered name)."""
    worker = get_worker(session, principal.tenant_id, project_id, worker_id)
    now = _now(session, principal.tenant_id)
    if patch.name is not None:
        name = patch.name.strip()
        problem = name_problem(name)
        if problem:
            raise WorkerValidationFailed("The name is not valid.", errors=[
                {"field": "body.name", "message": problem[1], "code": problem[0]}])
        worker.name = name
        worker.name_masked = mask_name(name)
        worker.name_digest = pii_digest(name)
    if patch.card_number is not None:
        try:
            card = validate_bank_card(patch.card_number)
        except IdentifierError as exc:
            raise WorkerValidationFailed("The card number is not valid.", errors=[
                {"field": "body.card_number", "message": str(exc),
                 "code": "invalid_account_number"}]) from None
        worker.card_number = card
        worker.card_digest = pii_digest(card)
        worker.card_masked = mask_account_number(card)
    if patch.contract_end is not None:
        if patch.contract_end < worker.contract_start:
            raise WorkerValidationFailed("The contract end is before its start.", errors=[
                {"field": "body.contract_end", "message": "before the contract start",
                 "code": "invalid_contract_dates"}])
        worker.contract_end = patch.contract_end
    if patch.monthly_wage is not None:
        worker.monthly_wage_fen = patch.monthly_wage.fen
    if patch.status is not None:
        _set_status(worker, patch.status, business_date(now))
    worker.updated_at = now
    session.flush()
    publish(session, tenant_id=worker.tenant_id, type="wage_worker.updated",
            resource_type="wage_worker", resource_id=worker.id, data=worker_view(worker),
            actor=principal.client_id, at=now)
    return worker


def _set_status(worker: WageWorker, status: str, today: date) -> None:
    # The first day of leaving is kept (a repeated `left` does not move it): the months owed
    # before it stay owed (`owed_for`). A worker who comes back is on the project again.
    if status == "left" and worker.status != "left":
        worker.left_on = today
    elif status == "active":
        worker.left_on = None
    worker.status = status


def list_workers(session: Session, tenant_id: str, project_id: str, *, limit: int,
                 cursor: str | None, status: str | None = None) -> tuple[list[WageWorker], str | None]:
    get_project(session, tenant_id, project_id)
    query = select(WageWorker).where(WageWorker.project_id == project_id)
    if status:
        query = query.where(WageWorker.status == status)
    return page(session, query, WageWorker.id, limit=limit, cursor=cursor, newest_first=False)


# --- funding ---------------------------------------------------------------------------------

def fund_project(session: Session, principal: Principal, project_id: str,
                 body: FundingIn) -> WageFunding:
    """The developer transfers labour costs into the wage account (人工费用拨付)."""
    project = get_project(session, principal.tenant_id, project_id)
    source = body.from_account_id or project.developer_account_id
    if not source:
        raise ValidationFailed("Name the account to fund from: the project has no developer "
                               "account.", code="funding_account_required",
                               errors=[{"field": "body.from_account_id", "message": "required"}])
    if source == project.wage_account_id:
        raise ValidationFailed("A wage account cannot fund itself.", code="invalid_funding_account")
    now = _now(session, principal.tenant_id)
    funding_id = new_id("wfund")
    ref = f"wage-funding:{funding_id}"
    entry_id = ledger.fund(session, principal.tenant_id, from_account_id=source,
                           to_account_id=project.wage_account_id, amount_fen=body.amount.fen,
                           journal_ref=ref, funding_id=funding_id,
                           memo=body.memo or "人工费用拨付")
    funding = WageFunding(id=funding_id, tenant_id=principal.tenant_id, project_id=project.id,
                          from_account_id=source, amount_fen=body.amount.fen, journal_ref=ref,
                          entry_id=entry_id, memo=body.memo, created_by=principal.client_id,
                          created_at=now)
    session.add(funding)
    session.flush()
    publish(session, tenant_id=principal.tenant_id, type="wage_project.funded",
            resource_type="wage_project", resource_id=project.id, data=funding_view(funding),
            actor=principal.client_id, at=now)
    return funding


def list_fundings(session: Session, tenant_id: str, project_id: str, *, limit: int,
                  cursor: str | None) -> tuple[list[WageFunding], str | None]:
    get_project(session, tenant_id, project_id)
    query = select(WageFunding).where(WageFunding.project_id == project_id)
    return page(session, query, WageFunding.id, limit=limit, cursor=cursor)


# --- the debit guard ------------------------------------------------------------------------

def wage_account_guard(session: Session, account: Account, context: DebitContext) -> None:
    """The ledger's debit guard of wage accounts (restriction `wage_account`).

    Accepts only what payroll presents for a batch of the account's own project: the hold of
    the batch's total when it is confirmed, and the capture of each of its items, for the
    item's amount, while the item's worker is registered, may still be paid for the batch's
    month (`may_be_paid`: on the project, or no longer and still owed that month's unpaid
    wages) and is
    paid to the registered card. Everything else (a transfer, another product's debit, a batch of
    another project) is refused with `wage_account_restricted`. Reads only, but for a leaver
    it locks the worker's month until the transaction ends (`_may_be_paid_now`).
    """
    project = project_for_account(session, account.id)
    if project is None or project.tenant_id != context.tenant_id:
        raise WageAccountRestricted(f"Account {account.id} is a wage account of no registered "
                                    "wage project: it cannot be debited.")
    auth = context.authorization
    refused = (f"Account {account.id} is the supervised wage account (农民工工资专户) of project "
               f"{project.project_code}: only wages paid by payroll to its registered workers "
               "may leave it.")
    if not isinstance(auth, ledger.PayrollDebit) or context.operation == "transfer":
        raise WageAccountRestricted(refused)
    batch = session.get(PayrollBatch, auth.batch_id)
    if batch is None or batch.tenant_id != context.tenant_id or batch.wage_project_id != project.id:
        raise WageAccountRestricted(refused)
    if context.operation == "hold":
        if batch.status != "validated" or context.amount_fen != batch.total_fen:
            raise WageAccountRestricted(refused)
        return
    item = session.get(PayrollItem, auth.item_id) if auth.item_id else None
    if (item is None or item.batch_id != batch.id or item.status != "pending"
            or batch.status != "processing" or context.hold_id != batch.hold_id
            or context.amount_fen != item.amount_fen or item.worker_id is None):
        raise WageAccountRestricted(refused)
    worker = session.get(WageWorker, item.worker_id)
    if worker is None or worker.project_id != project.id:
        raise WageAccountRestricted("The worker is not a registered worker of the project.",
                                    code="worker_not_active")
    # Checked again here, not only at validation: the worker may have left, had the contract
    # ended, or been paid for the month by another batch, since.
    cycle = batch_cycle(batch)
    refused_why = _leaver_refusal_now(session, project, worker, cycle, batch.value_date, item)
    if refused_why is not None:
        code, message = refused_why
        raise WageAccountRestricted(message, code=code)
    if worker.card_digest != item.account_digest:
        raise WageAccountRestricted("Wages go only to the worker's registered card.",
                                    code="card_not_registered")
    if not on_project(worker, batch.value_date):
        _leaver_months_paid_here(session).setdefault((worker.id, cycle), {})[item.id] = (
            item.amount_fen)


def _leaver_refusal_now(session: Session, project: WageProject, worker: WageWorker, cycle: str,
                        value_date: date, item: PayrollItem) -> tuple[str, str] | None:
    """`may_be_paid` (and `leaver_allowance`), asked by the debit guard for one item, so that a
    leaver's month is paid once (no agreed wage), or never beyond the agreed wage, whatever
    pays it concurrently. None: the item may be paid; else the refusal's (code, message).

    For a leaver, "is the month paid?" is a check-then-pay: two batches paying that month in
    two transactions could both read "unpaid" and both pay. The lock on (worker, month), taken
    before the read and held until the paying transaction ends, makes the second wait for the
    first and then read its payment. Within one transaction (two items of a chunk) the first
    item's payment is not written yet when the second is checked, so the guard remembers
    which items it let pay the month, and how much.
    """
    if on_project(worker, value_date):
        return None  # no once-per-month rule: nothing to serialise
    advisory_lock(session, f"payroll-wage-month:{worker.id}:{cycle}")
    # The same item asks again on a retry: only the others count.
    here = {other: fen for other, fen in
            _leaver_months_paid_here(session).get((worker.id, cycle), {}).items()
            if other != item.id}
    if not may_be_paid(session, project, worker, cycle, value_date):
        return refusal(worker, cycle)
    if worker.monthly_wage_fen is None:
        return refusal(worker, cycle) if here else None
    allowance = (leaver_allowance(session, project, worker, cycle, value_date) or 0) - sum(
        here.values())
    if allowance <= 0:
        return refusal(worker, cycle)
    if item.amount_fen > allowance:
        return exceeds_refusal(worker, cycle, allowance)
    return None


_PAID_HERE = "payroll.wage_leaver_months"


def _leaver_months_paid_here(session: Session) -> dict[tuple[str, str], dict[str, int]]:
    """(worker id, pay month) -> {item: fen} the guard let pay a leaver's month in the
    session's current transaction. Kept with that transaction: a session used for another transaction
    must not carry payments that were rolled back or that the database now shows anyway."""
    transaction = session.get_transaction()
    kept = session.info.get(_PAID_HERE)
    if kept is None or kept[0] is not transaction:
        kept = session.info[_PAID_HERE] = (transaction, {})
    return kept[1]


# --- regulators ------------------------------------------------------------------------------

def _prefix(region_code: str) -> str:
    code = region_code
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def grant_region(session: Session, actor: str, body: RegulatorGrantIn) -> RegulatorRegion:
    """Bank operations: let a regulator's partner supervise the projects of a region."""
    partner = session.get(Partner, body.partner_id)
    if partner is None:
        raise ValidationFailed(f"No partner {body.partner_id}.", code="partner_not_found",
                               errors=[{"field": "body.partner_id", "message": "unknown"}])
    grant = session.get(RegulatorRegion, (body.partner_id, body.region_code))
    now = _now_base()
    if grant is None:
        grant = RegulatorRegion(partner_id=body.partner_id, region_code=body.region_code,
                                name=body.name, granted_by=actor, created_at=now)
        session.add(grant)
    else:
        grant.name = body.name or grant.name
    session.flush()
    tenants = list(session.scalars(select(Tenant.id).where(Tenant.partner_id == partner.id)))
    for tenant_id in tenants:
        publish(session, tenant_id=tenant_id, type="payroll_regulator.region_granted",
                resource_type="payroll_regulator", resource_id=partner.id,
                data=grant_view(grant), actor=actor, at=now)
    return grant


def revoke_region(session: Session, actor: str, partner_id: str, region_code: str) -> None:
    grant = session.get(RegulatorRegion, (partner_id, region_code))
    if grant is None:
        raise RegionNotGranted(f"Partner {partner_id} has no grant for region {region_code}.",
                               status=404, code="grant_not_found", title="Not found")
    data = grant_view(grant)
    session.delete(grant)
    session.flush()
    now = _now_base()
    for tenant_id in session.scalars(select(Tenant.id).where(Tenant.partner_id == partner_id)):
        publish(session, tenant_id=tenant_id, type="payroll_regulator.region_revoked",
                resource_type="payroll_regulator", resource_id=partner_id, data=data,
                actor=actor, at=now)


def list_grants(session: Session, *, partner_id: str | None, limit: int, cursor: str | None
                ) -> tuple[list[RegulatorRegion], str | None]:
    query = select(RegulatorRegion)
    if partner_id:
        query = query.where(RegulatorRegion.partner_id == partner_id)
    if cursor:
        pid, _, code = decode_cursor(_GRANTS, cursor).partition("/")
        query = query.where(or_(RegulatorRegion.partner_id > pid,
                                (RegulatorRegion.partner_id == pid)
                                & (RegulatorRegion.region_code > code)))
    rows = list(session.scalars(query.order_by(RegulatorRegion.partner_id,
                                               RegulatorRegion.region_code).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return rows, (encode_cursor(_GRANTS, f"{last.partner_id}/{last.region_code}") if last else None)


def grant_view(g: RegulatorRegion) -> dict[str, Any]:
    return {"partner_id": g.partner_id, "region_code": g.region_code, "name": g.name,
            "granted_by": g.granted_by, "created_at": to_rfc3339(g.created_at)}


def _now_base() -> datetime:
    from gateway.clock import utcnow

    return utcnow()


def _regions(session: Session, partner_id: str) -> list[str]:
    return [_prefix(code) for code in session.scalars(select(RegulatorRegion.region_code).where(
        RegulatorRegion.partner_id == partner_id))]


def _supervised(session: Session, principal: Principal) -> Any:
    """The projects a regulator may see: its regions, its environment."""
    prefixes = _regions(session, principal.partner_id)
    if not prefixes:
        raise RegionNotGranted("This regulator has no supervision region granted; ask the bank.")
    query = (select(WageProject).join(Tenant, Tenant.id == WageProject.tenant_id)
             .where(Tenant.environment == principal.environment,
                    or_(*[WageProject.region_code.startswith(p) for p in prefixes])))
    return query


def supervised_projects(session: Session, principal: Principal, *, limit: int,
                        cursor: str | None, region_code: str | None = None
                        ) -> tuple[list[WageProject], str | None]:
    query = _supervised(session, principal)
    if region_code:
        query = query.where(WageProject.region_code.startswith(_prefix(region_code)))
    return page(session, query, WageProject.id, limit=limit, cursor=cursor)


def supervised_project(session: Session, principal: Principal, project_id: str) -> WageProject:
    """A project in the regulator's regions; any other is not found (404)."""
    project = session.scalars(_supervised(session, principal).where(
        WageProject.id == project_id)).first()
    if project is None:
        raise WageProjectNotFound(f"No wage project {project_id} in your supervision regions.")
    return project


def supervised_view(session: Session, project: WageProject) -> dict[str, Any]:
    view = project_view(project)
    view.pop("developer_account_id", None)
    view.pop("arrears_grace_days", None)
    view.pop("balance_check_days", None)
    view.pop("status", None)
    view.pop("created_at", None)
    counts = dict(session.execute(select(WageWorker.status, func.count()).where(
        WageWorker.project_id == project.id).group_by(WageWorker.status)).all())
    last = session.scalar(select(func.max(WageCheck.checked_at)).where(
        WageCheck.project_id == project.id, WageCheck.warned.is_(True)))
    view.update({
        "balance": _money(ledger.balance(session, project.tenant_id,
                                         project.wage_account_id).ledger_fen),
        "registered_workers": int(sum(counts.values())),
        "active_workers": int(counts.get("active", 0)),
        "last_warning_at": _ts(last),
    })
    return view


def _paid_in_cycle(session: Session, project_id: str, cycle: str,
                   worker_id: str | None = None) -> dict[str, dict[str, Any]]:
    """worker id -> {paid fen, payments, returned, last value date} for a pay cycle (of one
    worker only when `worker_id` is given)."""
    query = (select(PayrollItem.worker_id, PayrollItem.status, PayrollItem.amount_fen,
                    PayrollBatch.value_date)
             .join(PayrollBatch, PayrollBatch.id == PayrollItem.batch_id)
             .where(PayrollBatch.wage_project_id == project_id, PayrollBatch.wage_month == cycle,
                    PayrollItem.status.in_(("succeeded", "returned"))))
    if worker_id is not None:
        query = query.where(PayrollItem.worker_id == worker_id)
    rows = session.execute(query).all()
    out: dict[str, dict[str, Any]] = {}
    for worker_id, status, fen, value_date in rows:
        entry = out.setdefault(worker_id, {"fen": 0, "payments": 0, "returned": 0, "last": None})
        if status == "succeeded":
            entry["fen"] += fen
            entry["payments"] += 1
            entry["last"] = max(entry["last"] or value_date, value_date)
        else:
            entry["returned"] += 1
    return out


def pay_state(paid: dict[str, dict[str, Any]], worker: WageWorker) -> str | None:
    """How far a worker's pay month is paid (`paid` from `_paid_in_cycle`): `paid`,
    `partially_paid`, or None when no payment of it succeeded (a returned one did not pay).

    With an agreed monthly wage the month is `paid` once its successful payments add up to it,
    `partially_paid` below it. Without one the amount owed is not known: any successful payment
    pays the month (the regulator's view says `wage_agreed` false). The one notion behind the
    regulator's view, the arrears check and paying a worker who has left (`may_be_paid`)."""
    entry = paid.get(worker.id)
    if not entry or not entry["payments"]:
        return None
    if worker.monthly_wage_fen is None or entry["fen"] >= worker.monthly_wage_fen:
        return "paid"
    return "partially_paid"


def is_paid(paid: dict[str, dict[str, Any]], worker: WageWorker) -> bool:
    """Whether a worker's pay month counts as paid (`pay_state`)."""
    return pay_state(paid, worker) == "paid"


def outstanding_fen(paid: dict[str, dict[str, Any]], worker: WageWorker) -> int | None:
    """What remains of the agreed monthly wage after the month's successful payments (never
    below 0); None without an agreed wage."""
    if worker.monthly_wage_fen is None:
        return None
    return max(worker.monthly_wage_fen - paid.get(worker.id, {}).get("fen", 0), 0)


def monthly_status(session: Session, principal: Principal, project_id: str, month: str, *,
                   limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Every registered worker's payment status for one pay cycle (the regulator's view)."""
    project = supervised_project(session, principal, project_id)
    today = business_date(_now(session, project.tenant_id))
    try:
        due = _cycle_due(month, project.payday)
    except ValueError:  # YYYY-MM admits year 0000, which the calendar does not hold
        raise ValidationFailed(f"{month} is not a calendar month (0001-01 to 9999-12).",
                               code="invalid_month",
                               errors=[{"field": "query.month", "message": "not a calendar month",
                                        "code": "invalid_month"}]) from None
    paid = _paid_in_cycle(session, project.id, month)
    query = select(WageWorker).where(WageWorker.project_id == project.id)
    workers, next_cursor = page(session, query, WageWorker.id, limit=limit, cursor=cursor,
                                newest_first=False)
    data = []
    for w in workers:
        entry = paid.get(w.id)
        owed = owed_for(project, w, month)
        state = pay_state(paid, w)
        if state is not None:
            status = state
        elif entry and entry["returned"]:
            status = "returned"
        elif not owed:
            status = "not_owed"
        elif today < due:
            status = "not_due"
        else:
            status = "unpaid"
        rest = outstanding_fen(paid, w)
        data.append({"worker_id": w.id, "name": w.name_masked, "id_number": w.id_masked,
                     "team": w.team, "status": w.status, "month": month,
                     "payment_status": status, "paid_amount": _money(entry["fen"] if entry else 0),
                     "payments": entry["payments"] if entry else 0,
                     "last_paid_on": entry["last"].isoformat() if entry and entry["last"] else None,
                     "wage_agreed": w.monthly_wage_fen is not None,
                     "agreed_wage": (_money(w.monthly_wage_fen) if w.monthly_wage_fen is not None
                                     else None),
                     "outstanding_amount": (None if rest is None
                                            else _money(rest if owed else 0))})
    return data, next_cursor


def supervised_warnings(session: Session, principal: Principal, project_id: str, *, limit: int,
                        cursor: str | None) -> tuple[list[WageCheck], str | None]:
    project = supervised_project(session, principal, project_id)
    query = select(WageCheck).where(WageCheck.project_id == project.id,
                                    WageCheck.warned.is_(True))
    return page(session, query, WageCheck.id, limit=limit, cursor=cursor)


# --- arrears checks (欠薪预警) ---------------------------------------------------------------

def _regulator_tenants(session: Session, project: WageProject, environment: str) -> list[str]:
    """The tenants (in the project's environment) of regulators whose regions cover it."""
    grants = session.execute(select(RegulatorRegion.partner_id, RegulatorRegion.region_code)).all()
    partners = {pid for pid, code in grants if project.region_code.startswith(_prefix(code))}
    if not partners:
        return []
    return list(session.scalars(select(Tenant.id).where(Tenant.partner_id.in_(partners),
                                                        Tenant.environment == environment)))


def _warn(session: Session, project: WageProject, check: WageCheck, environment: str,
          now: datetime) -> None:
    data = {"project_id": project.id, "project_code": project.project_code,
            "project_name": project.name, "region_code": project.region_code,
            "contractor_name": project.contractor_name,
            "contractor_uscc": project.contractor_uscc, "wage_account_id": project.wage_account_id,
            "check_id": check.id, "cycle": check.cycle, "kind": check.kind,
            "business_date": check.business_date.isoformat(), **check.details}
    # The regulators of the region are warned; so is the project's own platform, whose
    # contractor must pay (it sees the warning, never the regulator's view).
    for tenant_id in [*_regulator_tenants(session, project, environment), project.tenant_id]:
        publish(session, tenant_id=tenant_id, type="wage_project.arrears_warning",
                resource_type="wage_project", resource_id=project.id, data=data,
                actor="payroll-arrears-check", at=now)


def _cycles(first: str, last: str) -> Iterator[str]:
    cycle = first
    while cycle <= last:
        yield cycle
        cycle = _next_cycle(cycle)


def check_project(session: Session, project: WageProject, now: datetime, environment: str) -> int:
    """Run the due checks of one project on its tenant's business date; each check runs once.

    Every pay cycle from the project's first is looked at, not just the months around today:
    after the clock jumps several months (the sandbox's test clock, or a worker stopped for
    that long) each month passed over still gets its unpaid-wages check, late, exactly once.
    The checks already made are read in one query, so a cycle done costs nothing more.
    """
    today = business_date(now)
    done = 0
    checked = set(session.execute(select(WageCheck.cycle, WageCheck.kind).where(
        WageCheck.project_id == project.id)).all())
    # Up to next month's cycle: its balance check falls in this month when payday is early
    # (payday 3, 5 days before: on the 29th).
    for cycle in _cycles(project.first_cycle, _next_cycle(_cycle(today))):
        due = _cycle_due(cycle, project.payday)
        due_unpaid = today >= due + timedelta(days=project.arrears_grace_days)
        if (cycle, "unpaid_wages") not in checked and due_unpaid:
            paid = _paid_in_cycle(session, project.id, cycle)
            # Everyone owed for the cycle, whatever their status today (`owed_for`).
            expected = [w for w in session.scalars(select(WageWorker).where(
                WageWorker.project_id == project.id, WageWorker.contract_start <= due))
                if owed_for(project, w, cycle)]
            # Owed and not paid: nothing paid (`unpaid`), or less than the agreed wage
            # (`underpaid`): a token payment does not silence the warning.
            unpaid = [w for w in expected if pay_state(paid, w) is None]
            underpaid = [w for w in expected if pay_state(paid, w) == "partially_paid"]
            details = _arrears_details(paid, expected, unpaid, underpaid)
            details = {"due_date": due.isoformat(), "grace_days": project.arrears_grace_days,
                       **details}
            done += _record(session, project, cycle, "unpaid_wages", bool(unpaid or underpaid),
                            details, today, now, environment)
        balance_day = due - timedelta(days=project.balance_check_days)
        # Only until payday: once it has passed, today's balance says nothing about it (the
        # unpaid-wages check takes over), and a cycle jumped over is not warned about late.
        if (cycle, "insufficient_balance") not in checked and balance_day <= today <= due:
            funded = session.scalar(select(func.count()).select_from(PayrollBatch).where(
                PayrollBatch.wage_project_id == project.id, PayrollBatch.wage_month == cycle,
                PayrollBatch.status.in_(FUNDED_STATES)))
            last = sum(e["fen"] for e in _paid_in_cycle(session, project.id,
                                                         _previous_cycle(cycle)).values())
            balance = ledger.balance(session, project.tenant_id,
                                     project.wage_account_id).available_fen
            short = not funded and last > 0 and balance < last
            details = {"due_date": due.isoformat(), "balance": _money(balance),
                       "last_month_payroll": _money(last),
                       "shortfall": _money(max(last - balance, 0)),
                       "cycle_already_funded": bool(funded)}
            done += _record(session, project, cycle, "insufficient_balance", short, details, today,
                            now, environment)
    return done


def _arrears_details(paid: dict[str, dict[str, Any]], expected: list[WageWorker],
                     unpaid: list[WageWorker], underpaid: list[WageWorker]) -> dict[str, Any]:
    """The unpaid-wages check's findings: who is owed and, where a wage was agreed, how much.

    `unpaid_workers` were paid nothing; `underpaid_workers` less than their agreed wage (listed
    with the agreed, paid and outstanding amounts); `owed_workers` is both. `outstanding_amount`
    adds up what the agreed wages still owe (the unpaid workers without an agreed wage owe an
    amount not known: `workers_without_agreed_wage` counts all of those expected)."""
    def person(w: WageWorker) -> dict[str, Any]:
        return {"worker_id": w.id, "name": w.name_masked, "id_number": w.id_masked,
                "team": w.team}

    def money(fen: int | None) -> dict[str, str] | None:
        return None if fen is None else _money(fen)

    outstanding = sum(outstanding_fen(paid, w) or 0 for w in [*unpaid, *underpaid])
    return {
        "expected_workers": len(expected), "unpaid_workers": len(unpaid),
        "underpaid_workers": len(underpaid), "owed_workers": len(unpaid) + len(underpaid),
        "workers_without_agreed_wage": sum(1 for w in expected if w.monthly_wage_fen is None),
        "outstanding_amount": _money(outstanding),
        "unpaid": [{**person(w), "agreed_wage": money(w.monthly_wage_fen)}
                   for w in unpaid[:200]],
        "underpaid": [{**person(w), "agreed_wage": money(w.monthly_wage_fen),
                       "paid_amount": _money(paid.get(w.id, {}).get("fen", 0)),
                       "outstanding_amount": money(outstanding_fen(paid, w))}
                      for w in underpaid[:200]],
    }


def _record(session: Session, project: WageProject, cycle: str, kind: str, warned: bool,
            details: dict[str, Any], today: date, now: datetime, environment: str) -> int:
    check = WageCheck(id=new_id("wcheck"), tenant_id=project.tenant_id, project_id=project.id,
                      cycle=cycle, kind=kind, warned=warned, details=details,
                      business_date=today, checked_at=now)
    session.add(check)
    session.flush()
    if warned:
        _warn(session, project, check, environment, now)
    return 1


def check_arrears(database: Any) -> int:
    """The registered job: every active project's due checks, each in its own transaction; a
    tenant whose run fails is logged and left to the next run, the other tenants go on."""
    with database.transaction() as session:
        projects = session.execute(select(WageProject.tenant_id, WageProject.id,
                                          Tenant.environment)
                                   .join(Tenant, Tenant.id == WageProject.tenant_id)
                                   .where(WageProject.status == "active")).all()

    def check(tenant_id: str, row: tuple[str, str]) -> int:
        project_id, environment = row
        with database.transaction() as session:
            project = session.scalars(select(WageProject).where(WageProject.id == project_id)
                                      .with_for_update(skip_locked=True)).first()
            if project is None:
                return 0
            return check_project(session, project, clock_for(session, tenant_id).now(),
                                 environment)

    return for_each_tenant_item(((t, (p, e)) for t, p, e in projects), check,
                                "wage arrears check", logger=log)
