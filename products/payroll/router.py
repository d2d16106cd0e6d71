"""Payroll routes: batches, supervised wage projects, the regulator's view, operations grants.

Thin: authenticate with a scope, call one service function, shape the response.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from gateway import patterns
from gateway.auth import require_operations, require_scope
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.idempotency import idempotency
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal
from products.payroll import service, wage
from products.payroll.csvfile import (
    CsvFileError,
    charset_from_content_type,
    encode_lines,
    result_charset,
)
from products.payroll.errors import InvalidBatchFile, UnsupportedBatchMedia
from products.payroll.schemas import (
    BatchIn,
    BatchList,
    BatchOut,
    BatchStatus,
    FindingList,
    FundingIn,
    FundingList,
    FundingOut,
    ItemList,
    ItemOut,
    ItemStatus,
    RegulatorGrantIn,
    RegulatorGrantList,
    RegulatorGrantOut,
    SimulateReturnIn,
    SupervisedProjectList,
    SupervisedProjectOut,
    WageProjectIn,
    WageProjectList,
    WageProjectOut,
    WarningList,
    WorkerImportOut,
    WorkerIn,
    WorkerList,
    WorkerMonthList,
    WorkerOut,
    WorkerPatch,
)
from products.payroll.upload import CsvBatchUpload, file_problem, pieces, worker_records

SessionDep = Annotated[Session, Depends(get_session)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)]
Reader = Annotated[Principal, Depends(require_scope("payroll:read"))]
Writer = Annotated[Principal, Depends(require_scope("payroll:write"))]
Supervisor = Annotated[Principal, Depends(require_scope("payroll:supervise"))]
Operator = Annotated[Principal, Depends(require_operations(write=False))]
OperatorWrite = Annotated[Principal, Depends(require_operations(write=True))]

router = Router(prefix="/v1", responses=error_responses(400, 401, 403, 429))
batches = Router(prefix="/payroll/batches", tags=["payroll"])
projects = Router(prefix="/payroll/wage-projects", tags=["payroll-wage-projects"])
supervision = Router(prefix="/payroll/supervision", tags=["payroll-supervision"])
operations = Router(prefix="/operations/payroll", tags=["payroll-operations"])

CSV_BODY = {"requestBody": {"required": True, "content": {"text/csv": {"schema": {
    "type": "string", "description": "UTF-8 (optionally with BOM) or GBK; `charset` parameter "
                                     "honoured"}}}}}


def _csv_charset(request: Request) -> str | None:
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("text/csv"):
        raise UnsupportedBatchMedia("Send the file as `Content-Type: text/csv` (UTF-8 or GBK).")
    try:
        return charset_from_content_type(content_type)
    except CsvFileError as exc:
        raise file_problem(exc) from None


# --- batches ---------------------------------------------------------------------------------

@batches.post("", status_code=201, response_model=BatchOut, summary="Submit a payroll batch (JSON)",
              description="Header and items in JSON (up to the 1 MiB JSON body limit; use the CSV "
                          "upload for large batches). Every item is validated: a batch with any "
                          "error is stored as `rejected` with its findings; otherwise it is "
                          "`validated` and waits for confirmation.",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 413, 422))
def create_payroll_batch(body: BatchIn, principal: Writer, session: SessionDep) -> dict[str, Any]:
    batch = service.create_batch(session, principal, body)
    return service.batch_view(session, batch)


@batches.post("/csv", status_code=201, response_model=BatchOut,
              summary="Upload a payroll batch file (CSV, UTF-8 or GBK)",
              description="Line 1: `payer_account_id,purpose,value_date,declared_count,"
                          "declared_total,external_reference[,wage_month]`; then one line per "
                          "item: `employee_name,id_number,account_number,amount,memo,"
                          "item_reference`. Up to 100,000 items, read as a stream.",
              dependencies=[Depends(idempotency(required=True))], openapi_extra=CSV_BODY,
              responses=error_responses(404, 409, 413, 415, 422))
async def upload_payroll_batch(request: Request, principal: Writer,
                               session: SessionDep) -> dict[str, Any]:
    charset = _csv_charset(request)
    upload = CsvBatchUpload(session, principal, charset)
    async for chunk in request.stream():
        for piece in pieces(chunk):
            await anyio.to_thread.run_sync(upload.feed, piece)
    batch = await anyio.to_thread.run_sync(upload.finish)
    return await anyio.to_thread.run_sync(service.batch_view, session, batch)


@batches.get("", response_model=BatchList, summary="List payroll batches, newest first")
def list_payroll_batches(principal: Reader, session: SessionDep, limit: Limit = 20,
                         cursor: Cursor = None, status: BatchStatus | None = None) -> dict[str, Any]:
    rows, next_cursor = service.list_batches(session, principal.tenant_id, limit=limit,
                                             cursor=cursor, status=status)
    return {"data": [service.batch_view(session, b, with_findings=False) for b in rows],
            "next_cursor": next_cursor}


@batches.get("/{batch_id}", response_model=BatchOut, summary="Get a payroll batch and its progress",
             responses=error_responses(404))
def get_payroll_batch(batch_id: str, principal: Reader, session: SessionDep) -> dict[str, Any]:
    return service.batch_view(session, service.get_batch(session, principal.tenant_id, batch_id))


@batches.post("/{batch_id}/confirm", response_model=BatchOut,
              summary="Confirm a validated batch: hold its total and schedule it",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def confirm_payroll_batch(batch_id: str, principal: Writer, session: SessionDep) -> dict[str, Any]:
    return service.batch_view(session, service.confirm_batch(session, principal, batch_id))


@batches.post("/{batch_id}/cancel", response_model=BatchOut,
              summary="Cancel a batch that is not processing yet (its hold is released)",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409))
def cancel_payroll_batch(batch_id: str, principal: Writer, session: SessionDep) -> dict[str, Any]:
    return service.batch_view(session, service.cancel_batch(session, principal, batch_id))


@batches.get("/{batch_id}/items", response_model=ItemList,
             summary="List a batch's items (filter by status), in file order",
             responses=error_responses(404, 422))
def list_payroll_items(batch_id: str, principal: Reader, session: SessionDep, limit: Limit = 20,
                       cursor: Cursor = None, status: ItemStatus | None = None) -> dict[str, Any]:
    rows, next_cursor = service.list_items(session, principal.tenant_id, batch_id, limit=limit,
                                           cursor=cursor, status=status)
    return {"data": [service.item_view(i) for i in rows], "next_cursor": next_cursor}


@batches.get("/{batch_id}/items/{item_id}", response_model=ItemOut, summary="Get one item",
             responses=error_responses(404))
def get_payroll_item(batch_id: str, item_id: str, principal: Reader,
                     session: SessionDep) -> dict[str, Any]:
    return service.item_view(service.get_item(session, principal.tenant_id, batch_id, item_id))


@batches.get("/{batch_id}/findings", response_model=FindingList,
             summary="List what validation found (errors reject, warnings predict failures)",
             responses=error_responses(404, 422))
def list_payroll_findings(batch_id: str, principal: Reader, session: SessionDep,
                          limit: Limit = 20, cursor: Cursor = None,
                          severity: Literal["error", "warning"] | None = None) -> dict[str, Any]:
    rows, next_cursor = service.list_findings(session, principal.tenant_id, batch_id, limit=limit,
                                              cursor=cursor, severity=severity)
    return {"data": [service.finding_view(f) for f in rows], "next_cursor": next_cursor}


@batches.get("/{batch_id}/result.csv", response_class=StreamingResponse,
             summary="Download the result file (the batch layout plus status and reason)",
             description="`charset` defaults to the upload's. `utf-8` is written with a BOM. "
                         "`gbk` (or `gb18030`) is written as GB18030 and labelled "
                         "`charset=gb18030`: the superset of GBK, in the same bytes for every "
                         "character GBK has, that also holds the rare characters of names "
                         "(生僻字) GBK lacks.",
             responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                              "description": "The result file"}, **error_responses(404, 422)})
def download_payroll_result(batch_id: str, principal: Reader, session: SessionDep,
                            charset: Literal["utf-8", "gbk", "gb18030"] | None = None
                            ) -> StreamingResponse:
    batch = service.get_batch(session, principal.tenant_id, batch_id)
    chosen = result_charset(charset or batch.charset)
    filename = f"{batch.external_reference.replace('/', '_')}-result.csv"
    return StreamingResponse(
        encode_lines(service.result_lines(session, batch), chosen),
        media_type=f"text/csv; charset={chosen}",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@batches.post("/{batch_id}/items/{item_id}/simulate-return", response_model=ItemOut,
              summary="Sandbox: have the receiving bank return a paid item (退票)",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def simulate_payroll_return(batch_id: str, item_id: str, principal: Writer,
                            session: SessionDep,
                            body: SimulateReturnIn | None = None) -> dict[str, Any]:
    """Every field has a default: no body at all returns the item at once, `account_closed`."""
    body = body or SimulateReturnIn()
    item = service.simulate_return(session, principal, batch_id, item_id,
                                   reason_code=body.reason_code, after_seconds=body.after_seconds)
    return service.item_view(item)


# --- wage projects ---------------------------------------------------------------------------

@projects.post("", status_code=201, response_model=WageProjectOut,
               summary="Register a wage project and open its supervised wage account",
               dependencies=[Depends(idempotency())], responses=error_responses(409, 422))
def create_wage_project(body: WageProjectIn, principal: Writer,
                        session: SessionDep) -> dict[str, Any]:
    return wage.project_view(wage.create_project(session, principal, body))


@projects.get("", response_model=WageProjectList, summary="List wage projects")
def list_wage_projects(principal: Reader, session: SessionDep, limit: Limit = 20,
                       cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = wage.list_projects(session, principal.tenant_id, limit=limit, cursor=cursor)
    return {"data": [wage.project_view(p) for p in rows], "next_cursor": next_cursor}


@projects.get("/{project_id}", response_model=WageProjectOut, summary="Get a wage project",
              responses=error_responses(404))
def get_wage_project(project_id: str, principal: Reader, session: SessionDep) -> dict[str, Any]:
    return wage.project_view(wage.get_project(session, principal.tenant_id, project_id))


@projects.post("/{project_id}/workers", status_code=201, response_model=WorkerOut,
               summary="Register a worker by real name (实名制)",
               dependencies=[Depends(idempotency())], responses=error_responses(404, 409, 422))
def register_wage_worker(project_id: str, body: WorkerIn, principal: Writer,
                         session: SessionDep) -> dict[str, Any]:
    return wage.worker_view(wage.register_worker(session, principal, project_id, body))


@projects.post("/{project_id}/workers/csv", status_code=201, response_model=WorkerImportOut,
               summary="Register workers from a CSV file (all or nothing)",
               description="One worker per line: `name,id_number,card_number,team,contract_start,"
                           "contract_end[,monthly_wage]` (dates YYYY-MM-DD, contract_end may be "
                           "empty; monthly_wage, the agreed monthly wage such as 6500.00, may be "
                           "left out or empty); an optional title line; UTF-8 or GBK.",
               dependencies=[Depends(idempotency())], openapi_extra=CSV_BODY,
               responses=error_responses(404, 413, 415, 422))
async def import_wage_workers(project_id: str, request: Request, principal: Writer,
                              session: SessionDep) -> dict[str, Any]:
    charset = _csv_charset(request)
    data = await request.body()

    def run() -> dict[str, Any]:
        workers = wage.import_workers(session, principal, project_id,
                                      worker_records(data, charset))
        return {"registered": len(workers), "data": [wage.worker_view(w) for w in workers[:100]]}

    return await anyio.to_thread.run_sync(run)


@projects.get("/{project_id}/workers", response_model=WorkerList,
              summary="List a project's registered workers", responses=error_responses(404, 422))
def list_wage_workers(project_id: str, principal: Reader, session: SessionDep, limit: Limit = 20,
                      cursor: Cursor = None,
                      status: Literal["active", "left"] | None = None) -> dict[str, Any]:
    rows, next_cursor = wage.list_workers(session, principal.tenant_id, project_id, limit=limit,
                                          cursor=cursor, status=status)
    return {"data": [wage.worker_view(w) for w in rows], "next_cursor": next_cursor}


@projects.get("/{project_id}/workers/{worker_id}", response_model=WorkerOut,
              summary="Get a registered worker", responses=error_responses(404))
def get_wage_worker(project_id: str, worker_id: str, principal: Reader,
                    session: SessionDep) -> dict[str, Any]:
    return wage.worker_view(wage.get_worker(session, principal.tenant_id, project_id, worker_id))


@projects.patch("/{project_id}/workers/{worker_id}", response_model=WorkerOut,
                summary="Update a worker: left the project, contract end, new registered card, "
                        "agreed monthly wage",
                dependencies=[Depends(idempotency())], responses=error_responses(404, 422))
def update_wage_worker(project_id: str, worker_id: str, body: WorkerPatch, principal: Writer,
                       session: SessionDep) -> dict[str, Any]:
    return wage.worker_view(wage.update_worker(session, principal, project_id, worker_id, body))


@projects.post("/{project_id}/fundings", status_code=201, response_model=FundingOut,
               summary="Fund the wage account from the developer (人工费用拨付)",
               dependencies=[Depends(idempotency(required=True))],
               responses=error_responses(404, 409, 422))
def fund_wage_project(project_id: str, body: FundingIn, principal: Writer,
                      session: SessionDep) -> dict[str, Any]:
    return wage.funding_view(wage.fund_project(session, principal, project_id, body))


@projects.get("/{project_id}/fundings", response_model=FundingList, summary="List a project's fundings",
              responses=error_responses(404, 422))
def list_wage_fundings(project_id: str, principal: Reader, session: SessionDep,
                       limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = wage.list_fundings(session, principal.tenant_id, project_id, limit=limit,
                                           cursor=cursor)
    return {"data": [wage.funding_view(f) for f in rows], "next_cursor": next_cursor}


# --- the regulator's view --------------------------------------------------------------------

@supervision.get("/projects", response_model=SupervisedProjectList,
                 summary="Regulator: wage projects in your regions, with balances")
def list_supervised_projects(principal: Supervisor, session: SessionDep, limit: Limit = 20,
                             cursor: Cursor = None,
                             region_code: Annotated[str | None, Query(pattern=patterns.REGION)] = None
                             ) -> dict[str, Any]:
    rows, next_cursor = wage.supervised_projects(session, principal, limit=limit, cursor=cursor,
                                                 region_code=region_code)
    return {"data": [wage.supervised_view(session, p) for p in rows], "next_cursor": next_cursor}


@supervision.get("/projects/{project_id}", response_model=SupervisedProjectOut,
                 summary="Regulator: one wage project and its balance",
                 responses=error_responses(404))
def get_supervised_project(project_id: str, principal: Supervisor,
                           session: SessionDep) -> dict[str, Any]:
    return wage.supervised_view(session, wage.supervised_project(session, principal, project_id))


@supervision.get("/projects/{project_id}/workers", response_model=WorkerMonthList,
                 summary="Regulator: each registered worker's payment status for a month",
                 responses=error_responses(404, 422))
def list_supervised_worker_payments(project_id: str, principal: Supervisor, session: SessionDep,
                                    month: Annotated[str, Query(pattern=patterns.MONTH)],
                                    limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    data, next_cursor = wage.monthly_status(session, principal, project_id, month, limit=limit,
                                            cursor=cursor)
    return {"data": data, "next_cursor": next_cursor}


@supervision.get("/projects/{project_id}/warnings", response_model=WarningList,
                 summary="Regulator: arrears warnings (欠薪预警) of a project",
                 responses=error_responses(404, 422))
def list_supervised_warnings(project_id: str, principal: Supervisor, session: SessionDep,
                             limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = wage.supervised_warnings(session, principal, project_id, limit=limit,
                                                 cursor=cursor)
    return {"data": [wage.check_view(c) for c in rows], "next_cursor": next_cursor}


# --- operations: regulators' regions ---------------------------------------------------------

@operations.get("/regulators", response_model=RegulatorGrantList,
                summary="Operations: list regulators' supervision regions")
def list_payroll_regulator_regions(principal: Operator, session: SessionDep, limit: Limit = 20,
                                   cursor: Cursor = None,
                                   partner_id: str | None = None) -> dict[str, Any]:
    rows, next_cursor = wage.list_grants(session, partner_id=partner_id, limit=limit,
                                         cursor=cursor)
    return {"data": [wage.grant_view(g) for g in rows], "next_cursor": next_cursor}


@operations.post("/regulators", status_code=201, response_model=RegulatorGrantOut,
                 summary="Operations: grant a regulator a supervision region",
                 dependencies=[Depends(idempotency())], responses=error_responses(422))
def grant_payroll_regulator_region(body: RegulatorGrantIn, principal: OperatorWrite,
                                   session: SessionDep) -> dict[str, Any]:
    return wage.grant_view(wage.grant_region(session, principal.client_id, body))


@operations.delete("/regulators/{partner_id}/regions/{region_code}", status_code=204,
                   summary="Operations: revoke a regulator's supervision region",
                   responses=error_responses(404))
def revoke_payroll_regulator_region(partner_id: str, region_code: str, principal: OperatorWrite,
                                    session: SessionDep) -> Response:
    wage.revoke_region(session, principal.client_id, partner_id, region_code)
    return Response(status_code=204)


router.include_router(batches)
router.include_router(projects)
router.include_router(supervision)
router.include_router(operations)


def setup(app: FastAPI) -> None:
    """Register the worker's jobs and the wage accounts' debit guard."""
    from gateway.jobs import register_job
    from products.accounts.guards import register_debit_guard
    from products.payroll import ledger, processing

    register_job("payroll.pay", processing.run, interval=0.5)
    register_job("payroll.arrears", wage.check_arrears, interval=30.0)
    register_debit_guard(ledger.RESTRICTION, wage.wage_account_guard)


__all__ = ["router", "setup", "InvalidBatchFile"]
