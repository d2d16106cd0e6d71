"""Collection and settlement API (`/v1/collection`): thin routes over the services.

Scopes: `collection:read` for GETs, `collection:write` for everything else. Money-moving POSTs
require an `Idempotency-Key`; every other POST accepts one.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import patterns
from gateway.auth import require_scope
from gateway.clock import IsoDate
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.idempotency import idempotency
from gateway.negotiation import VARY, accept_of, negotiate
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal
from products.accounts.reconciliation import records_request_doc, statement_csv, statement_json
from products.collection import (
    canteen,
    jobs,
    ledger,
    park,
    repository,
    schemas,
    service,
    statements,
    views,
    virtual,
)
from products.collection.errors import (
    BillNotFound,
    DinerNotFound,
    EmployerNotFound,
    GrantNotFound,
    MandateNotFound,
    OrderNotFound,
    ParkNotFound,
    ParkTenantNotFound,
    RefundNotFound,
    SandboxOnly,
    SettlementNotFound,
    SubMerchantNotFound,
    VirtualAccountNotFound,
)
from products.collection.models import (
    Bill,
    Diner,
    Employer,
    IncomingTransfer,
    Mandate,
    Order,
    Park,
    ParkTenant,
    Refund,
    Settlement,
    SubMerchant,
    SubsidyGrant,
    VirtualAccount,
)

router = Router(prefix="/v1/collection", tags=["collection"],
                   responses=error_responses(400, 401, 403, 422, 429))

Read = Annotated[Principal, Depends(require_scope("collection:read"))]
Write = Annotated[Principal, Depends(require_scope("collection:write"))]
Db = Annotated[Session, Depends(get_session)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="From `next_cursor`")]
Id = Annotated[str, Path(min_length=1, max_length=60)]
MONEY = [Depends(idempotency(required=True))]
OPTIONAL_KEY = [Depends(idempotency())]


def setup(app: FastAPI) -> None:
    """Register the debit guard of collection's accounts and the worker's jobs."""
    ledger.install_guard()
    jobs.register()


# --- settings -----------------------------------------------------------------------------

@router.get("/settings", summary="Collection settings (set up on first use)",
            response_model=schemas.SettingsOut)
def get_collection_settings(principal: Read, session: Db) -> schemas.SettingsOut:
    return views.settings_out(service.ensure_settings(session, principal.tenant_id))


@router.patch("/settings", summary="Change the cut-off, platform account or order TTL",
              response_model=schemas.SettingsOut, dependencies=OPTIONAL_KEY,
              responses=error_responses(409))
def update_collection_settings(body: schemas.SettingsUpdate, principal: Write,
                               session: Db) -> schemas.SettingsOut:
    return views.settings_out(service.update_settings(session, principal.tenant_id,
                                                      principal.client_id, body))


# --- sub-merchants ----------------------------------------------------------------------------

@router.post("/sub-merchants", summary="Register a sub-merchant", status_code=201,
             response_model=schemas.SubMerchantOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(409))
def create_sub_merchant(body: schemas.SubMerchantCreate, principal: Write,
                        session: Db) -> schemas.SubMerchantOut:
    row = service.create_sub_merchant(session, principal.tenant_id, principal.client_id, body)
    return views.sub_merchant_out(row)


@router.get("/sub-merchants", summary="List sub-merchants", response_model=schemas.SubMerchantPage)
def list_sub_merchants(principal: Read, session: Db, limit: Limit = 20,
                       cursor: Cursor = None) -> schemas.SubMerchantPage:
    rows, nxt = repository.page(session, select(SubMerchant).where(
        SubMerchant.tenant_id == principal.tenant_id), SubMerchant.id, limit=limit, cursor=cursor)
    return schemas.SubMerchantPage(data=[views.sub_merchant_out(r) for r in rows], next_cursor=nxt)


@router.get("/sub-merchants/{sub_merchant_id}", summary="A sub-merchant",
            response_model=schemas.SubMerchantOut, responses=error_responses(404))
def get_sub_merchant(sub_merchant_id: Id, principal: Read, session: Db) -> schemas.SubMerchantOut:
    return views.sub_merchant_out(repository.get(session, SubMerchant, principal.tenant_id,
                                                 sub_merchant_id, SubMerchantNotFound))


@router.patch("/sub-merchants/{sub_merchant_id}",
              summary="Change a sub-merchant's account, fee rule or status",
              response_model=schemas.SubMerchantOut, dependencies=OPTIONAL_KEY,
              responses=error_responses(404))
def update_sub_merchant(sub_merchant_id: Id, body: schemas.SubMerchantUpdate, principal: Write,
                        session: Db) -> schemas.SubMerchantOut:
    return views.sub_merchant_out(service.update_sub_merchant(
        session, principal.tenant_id, principal.client_id, sub_merchant_id, body))


# --- mandates -------------------------------------------------------------------------------------

def _mandate_view(session: Session, mandate: Mandate) -> schemas.MandateOut:
    month = service.month_of(service.now_for(session, mandate.tenant_id))
    return views.mandate_out(mandate, service.mandate_used(session, mandate, month))


@router.post("/mandates", summary="Record a payer's debit mandate (代扣协议)", status_code=201,
             response_model=schemas.MandateOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(409))
def create_mandate(body: schemas.MandateCreate, principal: Write,
                   session: Db) -> schemas.MandateOut:
    mandate = service.create_mandate(session, principal.tenant_id, principal.client_id, body)
    return _mandate_view(session, mandate)


@router.get("/mandates", summary="List debit mandates", response_model=schemas.MandatePage)
def list_mandates(principal: Read, session: Db, limit: Limit = 20, cursor: Cursor = None,
                  status: Literal["active", "revoked", "expired"] | None = None
                  ) -> schemas.MandatePage:
    query = select(Mandate).where(Mandate.tenant_id == principal.tenant_id)
    if status:
        query = query.where(Mandate.status == status)
    rows, nxt = repository.page(session, query, Mandate.id, limit=limit, cursor=cursor)
    return schemas.MandatePage(data=[_mandate_view(session, r) for r in rows], next_cursor=nxt)


@router.get("/mandates/{mandate_id}", summary="A debit mandate, with this month's use",
            response_model=schemas.MandateOut, responses=error_responses(404))
def get_mandate(mandate_id: Id, principal: Read, session: Db) -> schemas.MandateOut:
    return _mandate_view(session, repository.get(session, Mandate, principal.tenant_id,
                                                 mandate_id, MandateNotFound))


@router.post("/mandates/{mandate_id}/revoke", summary="Revoke a debit mandate",
             response_model=schemas.MandateOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(404, 409))
def revoke_mandate(mandate_id: Id, body: schemas.MandateRevoke, principal: Write,
                   session: Db) -> schemas.MandateOut:
    mandate = service.revoke_mandate(session, principal.tenant_id, principal.client_id,
                                     mandate_id, body)
    return _mandate_view(session, mandate)


# --- virtual accounts ----------------------------------------------------------------------------

@router.post("/virtual-accounts", summary="Open a payer's virtual account", status_code=201,
             response_model=schemas.VirtualAccountOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(409))
def create_virtual_account(body: schemas.VirtualAccountCreate, principal: Write,
                           session: Db) -> schemas.VirtualAccountOut:
    return views.virtual_account_out(virtual.create_virtual_account(
        session, principal.tenant_id, principal.client_id, body))


@router.get("/virtual-accounts", summary="List virtual accounts",
            response_model=schemas.VirtualAccountPage)
def list_virtual_accounts(principal: Read, session: Db, limit: Limit = 20,
                          cursor: Cursor = None) -> schemas.VirtualAccountPage:
    rows, nxt = repository.page(session, select(VirtualAccount).where(
        VirtualAccount.tenant_id == principal.tenant_id), VirtualAccount.id, limit=limit,
        cursor=cursor)
    return schemas.VirtualAccountPage(data=[views.virtual_account_out(r) for r in rows],
                                      next_cursor=nxt)


@router.get("/virtual-accounts/{virtual_account_id}", summary="A virtual account",
            response_model=schemas.VirtualAccountOut, responses=error_responses(404))
def get_virtual_account(virtual_account_id: Id, principal: Read,
                        session: Db) -> schemas.VirtualAccountOut:
    return views.virtual_account_out(repository.get(
        session, VirtualAccount, principal.tenant_id, virtual_account_id, VirtualAccountNotFound))


@router.get("/virtual-accounts/{virtual_account_id}/incoming-transfers",
            summary="Money received by a virtual account", response_model=schemas.IncomingTransferPage,
            responses=error_responses(404))
def list_incoming_transfers(virtual_account_id: Id, principal: Read, session: Db,
                            limit: Limit = 20, cursor: Cursor = None
                            ) -> schemas.IncomingTransferPage:
    account = repository.get(session, VirtualAccount, principal.tenant_id, virtual_account_id,
                             VirtualAccountNotFound)
    rows, nxt = repository.page(session, select(IncomingTransfer).where(
        IncomingTransfer.tenant_id == principal.tenant_id,
        IncomingTransfer.virtual_account_id == account.id), IncomingTransfer.id, limit=limit,
        cursor=cursor)
    return schemas.IncomingTransferPage(data=virtual.incoming_views(session, rows),
                                        next_cursor=nxt)


@router.get("/virtual-accounts/{virtual_account_id}/incoming-transfers/{incoming_transfer_id}",
            summary="One transfer received by a virtual account, and what it paid",
            response_model=schemas.IncomingTransferOut, responses=error_responses(404))
def get_incoming_transfer(virtual_account_id: Id, incoming_transfer_id: Id, principal: Read,
                          session: Db) -> schemas.IncomingTransferOut:
    row = virtual.get_incoming_transfer(session, principal.tenant_id, virtual_account_id,
                                        incoming_transfer_id)
    return virtual.incoming_views(session, [row])[0]


@router.post("/virtual-accounts/{virtual_account_id}/simulate-incoming",
             summary="Sandbox: simulate a transfer arriving at a virtual account",
             status_code=201, response_model=schemas.IncomingTransferOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def simulate_incoming_transfer(virtual_account_id: Id, body: schemas.IncomingTransferSimulate,
                               principal: Write, session: Db) -> schemas.IncomingTransferOut:
    """Books the money on the virtual account and runs the matcher at once: pending orders
    (the one named in `memo` first), then a park tenant's open bills. Sandbox credentials only."""
    if not principal.is_sandbox:
        raise SandboxOnly("Incoming transfers are simulated in the sandbox only.")
    incoming, applications = virtual.simulate_incoming(session, principal.tenant_id,
                                                       principal.client_id, virtual_account_id,
                                                       body)
    return views.incoming_out(incoming, applications)


# --- orders and refunds --------------------------------------------------------------------------

@router.post("/orders", summary="Create a collection order", status_code=201,
             response_model=schemas.OrderOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def create_order(body: schemas.OrderCreate, principal: Write, session: Db) -> schemas.OrderOut:
    """By mandate the debit happens at once (`succeeded`, or `failed` with `failure_code` when
    the payer's bank refuses). By virtual account the order stays `pending` until the payer's
    transfer (or existing credit) pays it, or `expired`."""
    order, splits = service.create_order(session, principal.tenant_id, principal.client_id, body)
    return service.order_view(session, order, splits)


@router.get("/orders", summary="List collection orders", response_model=schemas.OrderPage)
def list_orders(principal: Read, session: Db, limit: Limit = 20, cursor: Cursor = None,
                status: Literal["pending", "succeeded", "failed", "expired"] | None = None,
                scene: Literal["general", "canteen", "park"] | None = None,
                merchant_order_no: Annotated[str | None, Query(max_length=64)] = None
                ) -> schemas.OrderPage:
    query = select(Order).where(Order.tenant_id == principal.tenant_id)
    if status:
        query = query.where(Order.status == status)
    if scene:
        query = query.where(Order.scene == scene)
    if merchant_order_no:
        query = query.where(Order.merchant_order_no == merchant_order_no)
    rows, nxt = repository.page(session, query, Order.id, limit=limit, cursor=cursor)
    return schemas.OrderPage(data=service.order_views(session, rows), next_cursor=nxt)


@router.get("/orders/{order_id}", summary="A collection order", response_model=schemas.OrderOut,
            responses=error_responses(404))
def get_order(order_id: Id, principal: Read, session: Db) -> schemas.OrderOut:
    return service.order_view(session, repository.get(session, Order, principal.tenant_id,
                                                      order_id, OrderNotFound))


@router.post("/orders/{order_id}/refunds", summary="Refund part or all of an order",
             status_code=201, response_model=schemas.RefundOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def create_refund(order_id: Id, body: schemas.RefundCreate, principal: Write,
                  session: Db) -> schemas.RefundOut:
    refund = service.create_refund(session, principal.tenant_id, principal.client_id, order_id,
                                   body)
    return service.refund_view(session, refund)


@router.get("/orders/{order_id}/refunds", summary="An order's refunds",
            response_model=schemas.RefundPage, responses=error_responses(404))
def list_order_refunds(order_id: Id, principal: Read, session: Db, limit: Limit = 20,
                       cursor: Cursor = None) -> schemas.RefundPage:
    order = repository.get(session, Order, principal.tenant_id, order_id, OrderNotFound)
    rows, nxt = repository.page(session, select(Refund).where(
        Refund.tenant_id == principal.tenant_id, Refund.order_id == order.id), Refund.id,
        limit=limit, cursor=cursor)
    return schemas.RefundPage(data=[service.refund_view(session, r) for r in rows],
                              next_cursor=nxt)


@router.get("/refunds/{refund_id}", summary="A refund", response_model=schemas.RefundOut,
            responses=error_responses(404))
def get_refund(refund_id: Id, principal: Read, session: Db) -> schemas.RefundOut:
    return service.refund_view(session, repository.get(session, Refund, principal.tenant_id,
                                                       refund_id, RefundNotFound))


# --- settlements and reconciliation ----------------------------------------------------------------

@router.get("/settlements", summary="List settlements", response_model=schemas.SettlementPage)
def list_settlements(principal: Read, session: Db, limit: Limit = 20, cursor: Cursor = None,
                     settlement_date: IsoDate | None = None,
                     sub_merchant_id: Annotated[str | None, Query(max_length=40)] = None
                     ) -> schemas.SettlementPage:
    query = select(Settlement).where(Settlement.tenant_id == principal.tenant_id)
    if settlement_date:
        query = query.where(Settlement.settlement_date == settlement_date)
    if sub_merchant_id:
        query = query.where(Settlement.sub_merchant_id == sub_merchant_id)
    rows, nxt = repository.page(session, query, Settlement.id, limit=limit, cursor=cursor)
    return schemas.SettlementPage(data=[views.settlement_out(r) for r in rows], next_cursor=nxt)


@router.get("/settlements/{settlement_id}", summary="A settlement",
            response_model=schemas.SettlementOut, responses=error_responses(404))
def get_settlement(settlement_id: Id, principal: Read, session: Db) -> schemas.SettlementOut:
    return views.settlement_out(repository.get(session, Settlement, principal.tenant_id,
                                               settlement_id, SettlementNotFound))


# JSON by default (the route's first), CSV when asked for (`gateway.negotiation`).
STATEMENT_TYPES = ("application/json", "text/csv")
_CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "The statement as JSON, or as CSV with `?format=csv` or "
                         "`Accept: text/csv`"}}


@router.get("/reconciliation/{business_date}", summary="The daily reconciliation statement",
            response_model=schemas.ReconciliationStatementOut,
            responses={**_CSV_DOC, **error_responses(406, 409)})
def get_reconciliation_statement(business_date: IsoDate, request: Request, principal: Read,
                                 session: Db,
                                 format: Literal["json", "csv"] | None = None) -> Response:
    """Every order, refund and settlement payout of the business date, totals per kind, and the
    clearing account's opening and closing balances read from the ledger (`ledger_agrees`).
    Available once the date's cut-off has passed on the tenant's clock."""
    wants_csv = (format == "csv" if format is not None else
                 negotiate(accept_of(request.headers), STATEMENT_TYPES) == "text/csv")
    statement = statements.statement_for(session, principal.tenant_id, business_date)
    if wants_csv:
        name = f"collection-{business_date.isoformat()}.csv"
        return Response(content="".join(statement_csv(statement)).encode("utf-8"),
                        media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', **VARY})
    return JSONResponse(statement_json(statement), headers=VARY)


@router.post("/reconciliation/{business_date}/comparisons",
             summary="Compare your own records of a day with the statement", status_code=201,
             response_model=schemas.ComparisonOut, dependencies=OPTIONAL_KEY,
             openapi_extra=records_request_doc("order", "ORD-20261102-000123", "succeeded"),
             responses=error_responses(409, 413, 415))
async def compare_reconciliation(business_date: IsoDate, request: Request, principal: Write,
                                 session: Db) -> schemas.ComparisonOut:
    """Upload your records (CSV `kind,reference,id,amount,status`, `id` optional, or JSON
    `{"records": [...]}`) and get back what differs: records missing on either side, amount
    and status mismatches, and per kind the money that moved by the statement and by you."""
    body = await request.body()
    call = functools.partial(statements.compare, session, principal.tenant_id,
                             principal.client_id, business_date, body,
                             request.headers.get("content-type"))
    comparison = await anyio.to_thread.run_sync(call)
    return schemas.ComparisonOut.model_validate(comparison.as_dict())


# --- canteen --------------------------------------------------------------------------------------

@router.post("/canteen/employers", summary="Register an employer funding meal subsidies",
             status_code=201, response_model=schemas.EmployerOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(409))
def create_employer(body: schemas.EmployerCreate, principal: Write,
                    session: Db) -> schemas.EmployerOut:
    return views.employer_out(canteen.create_employer(session, principal.tenant_id,
                                                      principal.client_id, body))


@router.get("/canteen/employers", summary="List employers", response_model=schemas.EmployerPage)
def list_employers(principal: Read, session: Db, limit: Limit = 20,
                   cursor: Cursor = None) -> schemas.EmployerPage:
    rows, nxt = repository.page(session, select(Employer).where(
        Employer.tenant_id == principal.tenant_id), Employer.id, limit=limit, cursor=cursor)
    return schemas.EmployerPage(data=[views.employer_out(r) for r in rows], next_cursor=nxt)


@router.get("/canteen/employers/{employer_id}", summary="An employer",
            response_model=schemas.EmployerOut, responses=error_responses(404))
def get_employer(employer_id: Id, principal: Read, session: Db) -> schemas.EmployerOut:
    return views.employer_out(repository.get(session, Employer, principal.tenant_id, employer_id,
                                             EmployerNotFound))


@router.post("/canteen/employers/{employer_id}/diners", summary="Register a diner",
             status_code=201, response_model=schemas.DinerOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(404, 409))
def create_diner(employer_id: Id, body: schemas.DinerCreate, principal: Write,
                 session: Db) -> schemas.DinerOut:
    diner = canteen.create_diner(session, principal.tenant_id, principal.client_id, employer_id,
                                 body)
    return canteen.diner_view(session, diner)


@router.get("/canteen/employers/{employer_id}/diners", summary="An employer's diners",
            response_model=schemas.DinerPage, responses=error_responses(404))
def list_diners(employer_id: Id, principal: Read, session: Db, limit: Limit = 20,
                cursor: Cursor = None) -> schemas.DinerPage:
    employer = repository.get(session, Employer, principal.tenant_id, employer_id,
                              EmployerNotFound)
    rows, nxt = repository.page(session, select(Diner).where(
        Diner.tenant_id == principal.tenant_id, Diner.employer_id == employer.id), Diner.id,
        limit=limit, cursor=cursor)
    return schemas.DinerPage(data=[canteen.diner_view(session, r) for r in rows], next_cursor=nxt)


@router.get("/canteen/diners/{diner_id}", summary="A diner and their wallets",
            response_model=schemas.DinerOut, responses=error_responses(404))
def get_diner(diner_id: Id, principal: Read, session: Db) -> schemas.DinerOut:
    return canteen.diner_view(session, repository.get(session, Diner, principal.tenant_id,
                                                      diner_id, DinerNotFound))


@router.post("/canteen/employers/{employer_id}/grants",
             summary="Fund a month's meal subsidies", status_code=201,
             response_model=schemas.GrantOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def create_grant(employer_id: Id, body: schemas.GrantCreate, principal: Write,
                 session: Db) -> schemas.GrantOut:
    return views.grant_out(canteen.create_grant(session, principal.tenant_id,
                                                principal.client_id, employer_id, body))


@router.get("/canteen/grants/{grant_id}", summary="A subsidy grant",
            response_model=schemas.GrantOut, responses=error_responses(404))
def get_grant(grant_id: Id, principal: Read, session: Db) -> schemas.GrantOut:
    return views.grant_out(repository.get(session, SubsidyGrant, principal.tenant_id, grant_id,
                                          GrantNotFound))


@router.post("/canteen/diners/{diner_id}/top-ups", summary="Top up a diner's personal wallet",
             status_code=201, response_model=schemas.TopUpOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def top_up_wallet(diner_id: Id, body: schemas.TopUpCreate, principal: Write,
                  session: Db) -> schemas.TopUpOut:
    return views.top_up_out(canteen.top_up(session, principal.tenant_id, principal.client_id,
                                           diner_id, body))


@router.get("/canteen/diners/{diner_id}/top-ups", summary="A diner's top-ups, newest first",
            response_model=schemas.TopUpPage, responses=error_responses(404))
def list_top_ups(diner_id: Id, principal: Read, session: Db, limit: Limit = 20,
                 cursor: Cursor = None) -> schemas.TopUpPage:
    rows, nxt = canteen.list_top_ups(session, principal.tenant_id, diner_id, limit=limit,
                                     cursor=cursor)
    return schemas.TopUpPage(data=[views.top_up_out(r) for r in rows], next_cursor=nxt)


@router.get("/canteen/diners/{diner_id}/top-ups/{top_up_id}", summary="One top-up of a diner",
            description="The top-up a `diner_wallet.topped_up` event names (`data.top_up_id`), "
                        "as its 201 answered.",
            response_model=schemas.TopUpOut, responses=error_responses(404))
def get_top_up(diner_id: Id, top_up_id: Id, principal: Read, session: Db) -> schemas.TopUpOut:
    return views.top_up_out(canteen.get_top_up(session, principal.tenant_id, diner_id,
                                               top_up_id))


@router.post("/canteen/meals", summary="Pay for a meal (subsidy first, then personal money)",
             status_code=201, response_model=schemas.OrderOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def pay_meal(body: schemas.MealCreate, principal: Write, session: Db) -> schemas.OrderOut:
    """A collection order of scene `canteen`; `failed` with `insufficient_wallet_balance` when
    the wallets together hold too little. Refund it with the order's refunds route."""
    order = canteen.pay_meal(session, principal.tenant_id, principal.client_id, body)
    return service.order_view(session, order)


@router.get("/canteen/employers/{employer_id}/subsidy-reports/{month}",
            summary="Each diner's use of a month's subsidies", response_model=schemas.SubsidyReport,
            responses=error_responses(404))
def get_subsidy_report(employer_id: Id,
                       month: Annotated[str, Path(pattern=patterns.MONTH)],
                       principal: Read, session: Db) -> schemas.SubsidyReport:
    return canteen.subsidy_report(session, principal.tenant_id, employer_id, month)


# --- park ---------------------------------------------------------------------------------------------

@router.post("/parks", summary="Create a park with its dunning rules", status_code=201,
             response_model=schemas.ParkOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(409))
def create_park(body: schemas.ParkCreate, principal: Write, session: Db) -> schemas.ParkOut:
    return views.park_out(park.create_park(session, principal.tenant_id, principal.client_id,
                                           body))


@router.get("/parks", summary="List parks", response_model=schemas.ParkPage)
def list_parks(principal: Read, session: Db, limit: Limit = 20,
               cursor: Cursor = None) -> schemas.ParkPage:
    rows, nxt = repository.page(session, select(Park).where(Park.tenant_id == principal.tenant_id),
                                Park.id, limit=limit, cursor=cursor)
    return schemas.ParkPage(data=[views.park_out(r) for r in rows], next_cursor=nxt)


@router.get("/parks/{park_id}", summary="A park", response_model=schemas.ParkOut,
            responses=error_responses(404))
def get_park(park_id: Id, principal: Read, session: Db) -> schemas.ParkOut:
    return views.park_out(repository.get(session, Park, principal.tenant_id, park_id,
                                         ParkNotFound))


@router.patch("/parks/{park_id}", summary="Change a park's dunning rules",
              response_model=schemas.ParkOut, dependencies=OPTIONAL_KEY,
              responses=error_responses(404))
def update_park(park_id: Id, body: schemas.ParkUpdate, principal: Write,
                session: Db) -> schemas.ParkOut:
    return views.park_out(park.update_park(session, principal.tenant_id, principal.client_id,
                                           park_id, body))


@router.post("/parks/{park_id}/tenants", summary="Add a tenant (with a virtual account)",
             status_code=201, response_model=schemas.ParkTenantOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(404, 409))
def create_park_tenant(park_id: Id, body: schemas.ParkTenantCreate, principal: Write,
                       session: Db) -> schemas.ParkTenantOut:
    occupant, account = park.create_park_tenant(session, principal.tenant_id,
                                                principal.client_id, park_id, body)
    return views.park_tenant_out(occupant, account)


@router.get("/parks/{park_id}/tenants", summary="A park's tenants",
            response_model=schemas.ParkTenantPage, responses=error_responses(404))
def list_park_tenants(park_id: Id, principal: Read, session: Db, limit: Limit = 20,
                      cursor: Cursor = None) -> schemas.ParkTenantPage:
    row = repository.get(session, Park, principal.tenant_id, park_id, ParkNotFound)
    rows, nxt = repository.page(session, select(ParkTenant).where(
        ParkTenant.tenant_id == principal.tenant_id, ParkTenant.park_id == row.id),
        ParkTenant.id, limit=limit, cursor=cursor)
    return schemas.ParkTenantPage(data=[park.park_tenant_view(session, r) for r in rows],
                                  next_cursor=nxt)


@router.get("/park-tenants/{park_tenant_id}", summary="A park tenant and its credit",
            response_model=schemas.ParkTenantOut, responses=error_responses(404))
def get_park_tenant(park_tenant_id: Id, principal: Read, session: Db) -> schemas.ParkTenantOut:
    return park.park_tenant_view(session, repository.get(
        session, ParkTenant, principal.tenant_id, park_tenant_id, ParkTenantNotFound))


@router.post("/parks/{park_id}/bills", summary="Bill a park tenant", status_code=201,
             response_model=schemas.BillOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(404, 409))
def create_bill(park_id: Id, body: schemas.BillCreate, principal: Write,
                session: Db) -> schemas.BillOut:
    bill = park.create_bill(session, principal.tenant_id, principal.client_id, park_id, body)
    return park.bill_view(session, bill)


@router.get("/parks/{park_id}/bills", summary="A park's bills", response_model=schemas.BillPage,
            responses=error_responses(404))
def list_bills(park_id: Id, principal: Read, session: Db, limit: Limit = 20,
               cursor: Cursor = None,
               status: Literal["open", "overdue", "paid", "cancelled"] | None = None,
               park_tenant_id: Annotated[str | None, Query(max_length=40)] = None
               ) -> schemas.BillPage:
    row = repository.get(session, Park, principal.tenant_id, park_id, ParkNotFound)
    query = select(Bill).where(Bill.tenant_id == principal.tenant_id, Bill.park_id == row.id)
    if status:
        query = query.where(Bill.status == status)
    if park_tenant_id:
        query = query.where(Bill.park_tenant_id == park_tenant_id)
    rows, nxt = repository.page(session, query, Bill.id, limit=limit, cursor=cursor)
    return schemas.BillPage(data=park.bill_views(session, rows), next_cursor=nxt)


@router.get("/bills/{bill_id}", summary="A bill with its payments and reminders",
            response_model=schemas.BillOut, responses=error_responses(404))
def get_bill(bill_id: Id, principal: Read, session: Db) -> schemas.BillOut:
    return park.bill_view(session, repository.get(session, Bill, principal.tenant_id, bill_id,
                                                  BillNotFound))


@router.post("/bills/{bill_id}/pay", summary="Pay what is outstanding on a bill by mandate",
             status_code=201, response_model=schemas.OrderOut, dependencies=MONEY,
             responses=error_responses(404, 409))
def pay_bill(bill_id: Id, body: schemas.BillPay, principal: Write,
             session: Db) -> schemas.OrderOut:
    order = park.pay_bill_by_mandate(session, principal.tenant_id, principal.client_id, bill_id,
                                     body)
    return service.order_view(session, order)


@router.post("/bills/{bill_id}/cancel", summary="Cancel a bill nothing was paid on",
             response_model=schemas.BillOut, dependencies=OPTIONAL_KEY,
             responses=error_responses(404, 409))
def cancel_bill(bill_id: Id, principal: Write, session: Db) -> schemas.BillOut:
    """Withdraws an open or overdue bill (one whose payments were all refunded is one of these
    again): dunning and late fees stop and nothing more is owed. 409 `bill_partly_paid` while
    money is paid on it, listing the payments to refund first (`payments_to_refund`); 409
    `invalid_state` for a bill already cancelled. A transfer naming a cancelled bill is not
    applied to it: the money stays the tenant's credit."""
    return park.bill_view(session, park.cancel_bill(session, principal.tenant_id,
                                                    principal.client_id, bill_id))

