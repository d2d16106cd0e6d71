"""E-government routes: the portal profile, payment orders and receipts, reconciliation,
escrow schemes (the operator's side), supervision (the regulator's side) and the bank's
registry of regulators. The hosted checkout (HTML) is `products.egov.checkout`.

Thin: authenticate with a scope, call one service function, shape the response.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gateway.auth import require_operations, require_scope
from gateway.clock import IsoDate
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.evidence import service as evidence_service
from gateway.evidence.router import BundleOut
from gateway.idempotency import idempotency
from gateway.negotiation import VARY, accept_of, negotiate
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal, clock_for
from products.accounts.reconciliation import (
    ComparisonOut,
    ReconciliationStatementOut,
    diff_records,
    parse_records,
    records_request_doc,
    statement_csv,
    statement_json,
)
from products.egov import escrow, receipts, reconciliation, service
from products.egov.evidence import scheme_bundle
from products.egov.receipt_pdf import receipt_pdf
from products.egov.schemas import (
    AwardIn,
    CancelIn,
    DecisionIn,
    DepositIn,
    DepositList,
    DepositOut,
    DifferencesOut,
    InstructionIn,
    InstructionList,
    InstructionOut,
    InstructionStatus,
    OrderStatus,
    PaymentOrderIn,
    PaymentOrderList,
    PaymentOrderOut,
    PortalIn,
    PortalOut,
    ReceiptOut,
    RegulatorIn,
    RegulatorList,
    RegulatorOut,
    SchemeIn,
    SchemeKind,
    SchemeList,
    SchemeOut,
    SubAccountIn,
    SubAccountList,
    SubAccountOut,
    WithdrawIn,
    WithdrawOut,
)

SessionDep = Annotated[Session, Depends(get_session)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH)]
Reader = Annotated[Principal, Depends(require_scope("egov:read"))]
Writer = Annotated[Principal, Depends(require_scope("egov:write"))]
Supervisor = Annotated[Principal, Depends(require_scope("egov:supervise"))]
Operator = Annotated[Principal, Depends(require_operations(write=False))]
OperatorWrite = Annotated[Principal, Depends(require_operations(write=True))]

router = Router(prefix="/v1", responses=error_responses(400, 401, 403, 429))
payments = Router(prefix="/egov", tags=["egov"])
schemes = Router(prefix="/egov/escrow-schemes", tags=["egov-escrow"])
supervision = Router(prefix="/egov/supervision", tags=["egov-supervision"])
operations = Router(prefix="/operations/egov", tags=["egov-operations"])

# What each negotiating route offers, its documented default (JSON) first.
RECEIPT_TYPES = ("application/json", "application/pdf")
STATEMENT_TYPES = ("application/json", "text/csv")
PDF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "application/pdf": {}},
          "description": "The receipt as JSON, or as PDF (`Accept: application/pdf` or `?format=pdf`; "
                         "RFC 9110 negotiation with q-values, 406 when neither is acceptable)"}}
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {}},
          "description": "The statement as JSON, or as CSV (`Accept: text/csv` or `?format=csv`; "
                         "RFC 9110 negotiation with q-values, 406 when neither is acceptable)"}}
RECORDS_BODY = records_request_doc("payment_order", "WB-2026-000123", "paid")


def _issuer(request: Request) -> str:
    return str(request.app.state.settings.issuer).rstrip("/")


def _integrate(request: Request) -> None:
    log = getattr(request.app.state, "evidence_log", None)
    if log is not None:
        evidence_service.integrate(request.app.state.database, log)


async def integrate_now(request: Request) -> None:
    """Integrate waiting evidence before the request's session opens (receipts prove inclusion)."""
    await anyio.to_thread.run_sync(_integrate, request)


# --- portal profile ---------------------------------------------------------------------------

@payments.put("/portal", response_model=PortalOut, summary="Set up the portal: payee and web origins",
              description="The collection account payments go into, the payee name shown at "
                          "checkout, and the web origins that may embed the checkout (CSP "
                          "`frame-ancestors`) and receive its outcome by `postMessage`; every "
                          "`return_url` must be on one of them. Production origins must be https.",
              dependencies=[Depends(idempotency())], responses=error_responses(404, 422))
def put_portal(body: PortalIn, principal: Writer, session: SessionDep) -> dict[str, Any]:
    portal = service.set_portal(session, tenant_id=principal.tenant_id,
                                environment=principal.environment, body=body, actor=principal.client_id)
    return service.portal_view(portal)


@payments.get("/portal", response_model=PortalOut, summary="The portal profile",
              description="404 `portal_not_configured` until `PUT /v1/egov/portal` set it up (the "
                          "calls that need it, such as creating a payment order, answer 409 with "
                          "the same code). A sandbox reset keeps it, as it keeps webhook endpoints.",
              responses=error_responses(404))
def get_portal_profile(principal: Reader, session: SessionDep) -> dict[str, Any]:
    return service.portal_view(service.portal_profile(session, principal.tenant_id))


# --- payment orders ---------------------------------------------------------------------------

@payments.post("/payment-orders", status_code=201, response_model=PaymentOrderOut,
               summary="Create a payment order (fee, fine, non-tax revenue)",
               description="Returns the order with its payment code (缴款码) and the `checkout_url` "
                           "to send the payer to, or to embed in an iframe on a registered origin. "
                           "409 `portal_not_configured` until the portal is set up "
                           "(`PUT /v1/egov/portal`).",
               dependencies=[Depends(idempotency(required=True))],
               responses=error_responses(409, 422))
def create_payment_order(body: PaymentOrderIn, request: Request, principal: Writer,
                              session: SessionDep) -> dict[str, Any]:
    order = service.create_order(session, tenant_id=principal.tenant_id, actor=principal.client_id,
                                 body=body, issuer=_issuer(request))
    return service.order_view(order, _issuer(request))


@payments.get("/payment-orders", response_model=PaymentOrderList,
              summary="List payment orders, newest first", responses=error_responses(422))
def list_payment_orders(request: Request, principal: Reader, session: SessionDep,
                             limit: Limit = 20, cursor: Cursor = None, status: OrderStatus | None = None,
                             portal_reference: Annotated[str | None, Query(max_length=64)] = None
                             ) -> dict[str, Any]:
    rows, next_cursor = service.list_orders(session, principal.tenant_id, limit=limit, cursor=cursor,
                                            status=status, portal_reference=portal_reference)
    issuer = _issuer(request)
    return {"data": [service.order_view(o, issuer) for o in rows], "next_cursor": next_cursor}


@payments.get("/payment-orders/{order_id}", response_model=PaymentOrderOut,
              summary="A payment order", responses=error_responses(404))
def get_payment_order(order_id: str, request: Request, principal: Reader,
                           session: SessionDep) -> dict[str, Any]:
    order = service.get_order(session, principal.tenant_id, order_id)
    now = clock_for(session, principal.tenant_id).now()
    if order.status == "open" and order.expires_at <= now:
        order = service.get_order(session, principal.tenant_id, order_id, lock=True)
        service.expire_if_due(session, order, now, _issuer(request))
    return service.order_view(order, _issuer(request))


@payments.post("/payment-orders/{order_id}/cancel", response_model=PaymentOrderOut,
               summary="Cancel an open payment order", dependencies=[Depends(idempotency())],
               responses=error_responses(404, 409, 422))
def cancel_payment_order(order_id: str, request: Request, principal: Writer,
                         session: SessionDep, body: CancelIn | None = None) -> dict[str, Any]:
    """Cancel an open order; the body, with its `reason`, is optional."""
    order = service.get_order(session, principal.tenant_id, order_id, lock=True)
    service.cancel_order(session, order, actor=principal.client_id, issuer=_issuer(request),
                         reason=body.reason if body else "")
    return service.order_view(order, _issuer(request))


@payments.get("/payment-orders/{order_id}/receipt", response_model=ReceiptOut,
              summary="The electronic receipt (电子缴款凭证), JSON or PDF",
              description="With the evidence entry of the payment, the signed checkpoint and the "
                          "inclusion proof that prove it, and (PDF) a QR code to the public "
                          "verification page.",
              dependencies=[Depends(integrate_now)],
              responses={**error_responses(404, 406, 409), **PDF_RESPONSE})
def get_payment_receipt(order_id: str, request: Request, response: Response, principal: Reader,
                        session: SessionDep,
                        format: Literal["json", "pdf"] | None = None) -> Any:
    wants_pdf = (format == "pdf" if format is not None else
                 negotiate(accept_of(request.headers), RECEIPT_TYPES) == "application/pdf")
    order = service.get_order(session, principal.tenant_id, order_id)
    data = receipts.receipt_data(session, order, issuer=_issuer(request),
                                 log=getattr(request.app.state, "evidence_log", None))
    if wants_pdf:
        return Response(receipt_pdf(data), media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="receipt-{data["receipt_number"]}.pdf"',
            **VARY})
    response.headers.update(VARY)
    return data


# --- reconciliation ---------------------------------------------------------------------------

@payments.get("/reconciliation/{business_date}", response_model=ReconciliationStatementOut,
              summary="The portal's daily reconciliation statement (对账单)",
              description="Every order closed on the business date (Asia/Shanghai), with the "
                          "collection account's opening and closing balances; available once the "
                          "day has ended on your clock.",
              responses={**error_responses(404, 406, 409, 422), **CSV_RESPONSE})
def get_reconciliation_statement(business_date: IsoDate, request: Request, principal: Reader,
                            session: SessionDep,
                            format: Literal["json", "csv"] | None = None) -> Any:
    wants_csv = (format == "csv" if format is not None else
                 negotiate(accept_of(request.headers), STATEMENT_TYPES) == "text/csv")
    statement = reconciliation.portal_statement(session, principal.tenant_id, business_date)
    if wants_csv:
        return StreamingResponse(
            iter(list(statement_csv(statement))), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition":
                     f'attachment; filename="egov-{business_date.isoformat()}.csv"', **VARY})
    return Response(json.dumps(statement_json(statement), ensure_ascii=False),
                    media_type="application/json", headers=VARY)


@payments.post("/reconciliation/{business_date}/comparisons", response_model=ComparisonOut,
               status_code=201, summary="Compare your own records of a day with the statement",
               description="Send your records (CSV `kind,reference,id,amount,status`, `id` "
                           "optional, or JSON `{\"records\": [...]}`, kind `payment_order`); the "
                           "answer lists what is missing on either side, every amount or status "
                           "mismatch, and per kind the money that moved by the statement and by "
                           "your records. The same upload and answer as collection's "
                           "`POST /v1/collection/reconciliation/{business_date}/comparisons`.",
               openapi_extra=RECORDS_BODY, dependencies=[Depends(idempotency())],
               responses=error_responses(404, 409, 413, 415, 422))
async def compare_reconciliation(business_date: IsoDate, request: Request, principal: Writer,
                                 session: SessionDep) -> ComparisonOut:
    body = await request.body()
    call = functools.partial(reconciliation.compare, session, principal.tenant_id,
                             principal.client_id, business_date, body,
                             request.headers.get("content-type"))
    comparison = await anyio.to_thread.run_sync(call)
    return ComparisonOut.model_validate(comparison.as_dict())


@payments.post("/reconciliation/{business_date}/differences", response_model=DifferencesOut,
               summary="Compare your records of a day with the statement (deprecated)",
               description="Deprecated: use `POST /v1/egov/reconciliation/{business_date}/"
                           "comparisons`, which takes the same upload and answers as collection's "
                           "comparison does. This route still answers `{business_date, "
                           "differences}`, the differences as that answer gives them.",
               deprecated=True,
               openapi_extra=RECORDS_BODY, dependencies=[Depends(idempotency())],
               responses=error_responses(404, 409, 413, 415, 422))
async def compare_reconciliation_records(business_date: IsoDate, request: Request,
                                      principal: Reader, session: SessionDep) -> dict[str, Any]:
    body = await request.body()
    content_type = request.headers.get("content-type")

    def run() -> dict[str, Any]:
        records = parse_records(body, content_type)
        statement = reconciliation.portal_statement(session, principal.tenant_id, business_date)
        return {"business_date": business_date,
                "differences": diff_records(statement, records).as_dict()}

    return await anyio.to_thread.run_sync(run)


# --- escrow schemes (the operator) -----------------------------------------------------------

@schemes.post("", status_code=201, response_model=SchemeOut, summary="Open a supervised escrow scheme",
              description="An escrow account (资金监管账户) with a release policy, supervised by a "
                          "recognised regulator: prepaid tuition, pre-sale housing funds, bid "
                          "deposits or court case funds. The regulator must be independent of "
                          "you: naming your own partner is a 422 `regulator_not_independent`.",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def create_scheme(body: SchemeIn, principal: Writer, session: SessionDep) -> dict[str, Any]:
    scheme = escrow.create_scheme(session, tenant_id=principal.tenant_id,
                                  environment=principal.environment, actor=principal.client_id, body=body)
    return escrow.scheme_view(session, scheme)


@schemes.get("", response_model=SchemeList, summary="List escrow schemes, newest first",
             responses=error_responses(422))
def list_schemes(principal: Reader, session: SessionDep, limit: Limit = 20, cursor: Cursor = None,
                        kind: SchemeKind | None = None) -> dict[str, Any]:
    rows, next_cursor = escrow.list_schemes(session, tenant_id=principal.tenant_id, limit=limit,
                                            cursor=cursor, kind=kind)
    return {"data": [escrow.scheme_view(session, s) for s in rows], "next_cursor": next_cursor}


@schemes.get("/{scheme_id}", response_model=SchemeOut, summary="An escrow scheme",
             responses=error_responses(404))
def get_scheme(scheme_id: str, principal: Reader, session: SessionDep) -> dict[str, Any]:
    return escrow.scheme_view(session, escrow.get_scheme(session, principal.tenant_id, scheme_id))


@schemes.post("/{scheme_id}/sub-accounts", status_code=201, response_model=SubAccountOut,
              summary="Open a virtual sub-account (student, building, bidder, case)",
              dependencies=[Depends(idempotency())], responses=error_responses(404, 409, 422))
def open_sub_account(scheme_id: str, body: SubAccountIn, principal: Writer,
                            session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id, lock=True)
    return escrow.sub_account_view(escrow.open_sub_account(session, scheme, body, actor=principal.client_id))


@schemes.get("/{scheme_id}/sub-accounts", response_model=SubAccountList,
             summary="List a scheme's sub-accounts, oldest first", responses=error_responses(404, 422))
def list_sub_accounts(scheme_id: str, principal: Reader, session: SessionDep, limit: Limit = 20,
                             cursor: Cursor = None) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    rows, next_cursor = escrow.list_sub_accounts(session, scheme, limit=limit, cursor=cursor)
    return {"data": [escrow.sub_account_view(s) for s in rows], "next_cursor": next_cursor}


@schemes.get("/{scheme_id}/sub-accounts/{sub_account_id}", response_model=SubAccountOut,
             summary="A sub-account", responses=error_responses(404))
def get_sub_account(scheme_id: str, sub_account_id: str, principal: Reader,
                           session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    return escrow.sub_account_view(escrow.get_sub_account(session, scheme, sub_account_id))


@schemes.post("/{scheme_id}/sub-accounts/{sub_account_id}/deposits", status_code=201,
              response_model=DepositOut, summary="Pay money into a sub-account",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def create_deposit(scheme_id: str, sub_account_id: str, body: DepositIn, principal: Writer,
                          session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    dep = escrow.deposit(session, scheme, body, sub_account_id, actor=principal.client_id)
    return escrow.deposit_view(dep)


@schemes.get("/{scheme_id}/sub-accounts/{sub_account_id}/deposits", response_model=DepositList,
             summary="List the deposits into a sub-account, newest first",
             responses=error_responses(404, 422))
def list_deposits(scheme_id: str, sub_account_id: str, principal: Reader, session: SessionDep,
                  limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    sub = escrow.get_sub_account(session, scheme, sub_account_id)
    rows, next_cursor = escrow.list_deposits(session, sub, limit=limit, cursor=cursor)
    return {"data": [escrow.deposit_view(d) for d in rows], "next_cursor": next_cursor}


@schemes.get("/{scheme_id}/sub-accounts/{sub_account_id}/deposits/{deposit_id}",
             response_model=DepositOut, summary="A deposit into a sub-account",
             description="The deposit the `escrow_deposit.received` event is about "
                         "(`resource.id`), as its 201 answered.",
             responses=error_responses(404))
def get_deposit(scheme_id: str, sub_account_id: str, deposit_id: str, principal: Reader,
                session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    sub = escrow.get_sub_account(session, scheme, sub_account_id)
    return escrow.deposit_view(escrow.get_deposit(session, sub, deposit_id))


@schemes.post("/{scheme_id}/sub-accounts/{sub_account_id}/withdraw", response_model=WithdrawOut,
              summary="Tuition: the student withdraws; unconsumed tuition is refunded",
              description="Instructs the refund of the unconsumed tuition to each account that paid "
                          "it (原路退回), split pro rata to what each account deposited (net of "
                          "earlier refunds): the consumed classes are borne in proportion. Each "
                          "part is rounded down to the fen and the fen left over go one each to "
                          "the largest remainders (ties: the larger deposit, then the account id), "
                          "so the parts add up to exactly the balance. The refunds wait for the "
                          "regulator's approval(s) like any money leaving escrow: the answer is the sub-account (still `open`, its "
                          "balance unchanged, until the last refund executes) with the refund "
                          "instructions in `refund_instructions` (ids `erel_…`, status "
                          "`pending_approval`), to follow at `GET …/release-instructions/{id}`. "
                          "With nothing left to refund the sub-account is `withdrawn` at once and "
                          "the list is empty.",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def withdraw_sub_account(scheme_id: str, sub_account_id: str, principal: Writer,
                         session: SessionDep, body: WithdrawIn | None = None) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    sub, refunds = escrow.withdraw(session, scheme, sub_account_id, actor=principal.client_id,
                                   reason=body.reason if body else "")
    return {**escrow.sub_account_view(sub),
            "refund_instructions": [escrow.instruction_view(session, i) for i in refunds]}


@schemes.post("/{scheme_id}/award", response_model=SchemeOut,
              summary="Bid deposits: award the tender; losing bidders are refunded automatically",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def award_tender(scheme_id: str, body: AwardIn, principal: Writer,
                        session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id, lock=True)
    escrow.award(session, scheme, body.winner_sub_account_id, actor=principal.client_id)
    return escrow.scheme_view(session, scheme)


@schemes.post("/{scheme_id}/release-instructions", status_code=201, response_model=InstructionOut,
              summary="Ask to release or refund money from a sub-account",
              description="Checked against the policy; a release or a refund (only ever to an "
                          "account that deposited the money) waits for the regulator's approval(s) "
                          "and executes with the last one. Court funds move only by a court order.",
              dependencies=[Depends(idempotency(required=True))],
              responses=error_responses(404, 409, 422))
def create_release_instruction(scheme_id: str, body: InstructionIn, principal: Writer,
                               session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    ins = escrow.create_instruction(session, scheme, body, actor=principal.client_id)
    return escrow.instruction_view(session, ins)


@schemes.get("/{scheme_id}/release-instructions", response_model=InstructionList,
             summary="List a scheme's release instructions, newest first",
             responses=error_responses(404, 422))
def list_release_instructions(scheme_id: str, principal: Reader, session: SessionDep, limit: Limit = 20,
                              cursor: Cursor = None,
                              status: InstructionStatus | None = None) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    rows, next_cursor = escrow.list_instructions(session, scheme=scheme, status=status, limit=limit,
                                                 cursor=cursor)
    return {"data": [escrow.instruction_view(session, i) for i in rows], "next_cursor": next_cursor}


@schemes.get("/{scheme_id}/release-instructions/{instruction_id}", response_model=InstructionOut,
             summary="A release instruction", responses=error_responses(404))
def get_release_instruction(scheme_id: str, instruction_id: str, principal: Reader,
                            session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    return escrow.instruction_view(session, escrow.get_instruction(session, scheme, instruction_id))


@schemes.post("/{scheme_id}/release-instructions/{instruction_id}/cancel",
              response_model=InstructionOut, summary="Withdraw an instruction awaiting approval",
              dependencies=[Depends(idempotency())], responses=error_responses(404, 409))
def cancel_release_instruction(scheme_id: str, instruction_id: str, principal: Writer,
                               session: SessionDep) -> dict[str, Any]:
    scheme = escrow.get_scheme(session, principal.tenant_id, scheme_id)
    ins = escrow.cancel_instruction(session, scheme, instruction_id, actor=principal.client_id)
    return escrow.instruction_view(session, ins)


class BundleEventOut(BaseModel):
    type: str
    resource_id: str
    data: dict[str, Any] = Field(description="What the event's entry commits to "
                                             "(its `state_sha256`)")


class EscrowBundleOut(BundleOut):
    """The evidence bundle of a scheme, with the data of its events' entries."""

    events: dict[str, BundleEventOut] = Field(description="By event id")


def _bundle_response(request: Request, session: Session, tenant_id: str, scheme_id: str) -> Response:
    data = scheme_bundle(session, tenant_id, scheme_id, request.app.state.evidence_log)
    return Response(json.dumps(data, ensure_ascii=False), media_type="application/json")


@schemes.get("/{scheme_id}/evidence-bundle", response_model=EscrowBundleOut,
             summary="The scheme's evidence bundle, verifiable offline",
             description="Every deposit, instruction, approval and release as evidence entries with "
                         "inclusion proofs against one signed checkpoint, and the events' data the "
                         "entries commit to.",
             dependencies=[Depends(integrate_now)], responses=error_responses(404, 409))
def get_evidence_bundle(scheme_id: str, request: Request, principal: Reader,
                               session: SessionDep) -> Response:
    escrow.get_scheme(session, principal.tenant_id, scheme_id)
    return _bundle_response(request, session, principal.tenant_id, scheme_id)


# --- supervision (the regulator) -----------------------------------------------------------

@supervision.get("/escrow-schemes", response_model=SchemeList,
                 summary="Schemes under your supervision, newest first", responses=error_responses(422))
def list_supervised_schemes(principal: Supervisor, session: SessionDep, limit: Limit = 20,
                                   cursor: Cursor = None, kind: SchemeKind | None = None) -> dict[str, Any]:
    rows, next_cursor = escrow.list_schemes(session, regulator=principal, limit=limit, cursor=cursor,
                                            kind=kind)
    return {"data": [escrow.scheme_view(session, s) for s in rows], "next_cursor": next_cursor}


@supervision.get("/escrow-schemes/{scheme_id}", response_model=SchemeOut,
                 summary="A scheme under your supervision", responses=error_responses(404))
def get_supervised_scheme(scheme_id: str, principal: Supervisor, session: SessionDep) -> dict[str, Any]:
    return escrow.scheme_view(session, escrow.supervised_scheme(session, principal, scheme_id))


@supervision.get("/escrow-schemes/{scheme_id}/sub-accounts", response_model=SubAccountList,
                 summary="Sub-accounts of a supervised scheme", responses=error_responses(404, 422))
def list_supervised_sub_accounts(scheme_id: str, principal: Supervisor, session: SessionDep,
                                 limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    scheme = escrow.supervised_scheme(session, principal, scheme_id)
    rows, next_cursor = escrow.list_sub_accounts(session, scheme, limit=limit, cursor=cursor)
    return {"data": [escrow.sub_account_view(s) for s in rows], "next_cursor": next_cursor}


@supervision.get("/escrow-schemes/{scheme_id}/sub-accounts/{sub_account_id}/deposits",
                 response_model=DepositList,
                 summary="Deposits into a sub-account of a supervised scheme, newest first",
                 responses=error_responses(404, 422))
def list_supervised_deposits(scheme_id: str, sub_account_id: str, principal: Supervisor,
                             session: SessionDep, limit: Limit = 20,
                             cursor: Cursor = None) -> dict[str, Any]:
    scheme = escrow.supervised_scheme(session, principal, scheme_id)
    sub = escrow.get_sub_account(session, scheme, sub_account_id)
    rows, next_cursor = escrow.list_deposits(session, sub, limit=limit, cursor=cursor)
    return {"data": [escrow.deposit_view(d) for d in rows], "next_cursor": next_cursor}


@supervision.get("/escrow-schemes/{scheme_id}/evidence-bundle", response_model=EscrowBundleOut,
                 summary="Evidence bundle of a supervised scheme, verifiable offline",
                 dependencies=[Depends(integrate_now)], responses=error_responses(404, 409))
def get_supervised_evidence_bundle(scheme_id: str, request: Request, principal: Supervisor,
                                   session: SessionDep) -> Response:
    scheme = escrow.supervised_scheme(session, principal, scheme_id)
    return _bundle_response(request, session, scheme.tenant_id, scheme.id)


@supervision.get("/release-instructions", response_model=InstructionList,
                 summary="Release instructions of your schemes, newest first",
                 responses=error_responses(422))
def list_supervised_release_instructions(principal: Supervisor, session: SessionDep, limit: Limit = 20,
                                         cursor: Cursor = None,
                                         status: InstructionStatus | None = None) -> dict[str, Any]:
    rows, next_cursor = escrow.list_instructions(session, regulator=principal, status=status,
                                                 limit=limit, cursor=cursor)
    return {"data": [escrow.instruction_view(session, i) for i in rows], "next_cursor": next_cursor}


@supervision.get("/release-instructions/{instruction_id}", response_model=InstructionOut,
                 summary="A release instruction of your schemes", responses=error_responses(404))
def get_supervised_release_instruction(instruction_id: str, principal: Supervisor,
                                       session: SessionDep) -> dict[str, Any]:
    _, ins = escrow.supervised_instruction(session, principal, instruction_id)
    return escrow.instruction_view(session, ins)


@supervision.post("/release-instructions/{instruction_id}/decisions", response_model=InstructionOut,
                  summary="Approve or reject a release instruction",
                  description="One decision per regulator user: the OAuth client making the call "
                              "(`approver_id` is your label for it). When the policy needs two "
                              "approvals they must come from two different clients of the "
                              "regulator; the approval that completes the count executes the "
                              "release. Refused (403) once the bank no longer recognises you as a "
                              "regulator of the scheme's kind, and (403 "
                              "`regulator_not_independent`) on a scheme of your own partner's.",
                  dependencies=[Depends(idempotency(required=True))],
                  responses=error_responses(403, 404, 409, 422))
def decide_release_instruction(instruction_id: str, body: DecisionIn, principal: Supervisor,
                               session: SessionDep) -> dict[str, Any]:
    ins = escrow.decide(session, principal, instruction_id, body)
    return escrow.instruction_view(session, ins)


# --- operations (the bank) -------------------------------------------------------------------

@operations.post("/regulators", status_code=201, response_model=RegulatorOut,
                 summary="Operations: recognise a partner as a fund regulator",
                 description="201 for a new registration; 200 when it replaces an existing one "
                             "(its kinds then apply at once, to existing schemes' decisions too).",
                 dependencies=[Depends(idempotency())],
                 responses={200: {"description": "Registration updated", "model": RegulatorOut},
                            **error_responses(409, 422)})
def register_regulator(body: RegulatorIn, principal: OperatorWrite, session: SessionDep,
                       response: Response) -> dict[str, Any]:
    now = clock_for(session, principal.tenant_id).now()
    row, created = escrow.register_regulator(session, body=body, actor=principal.client_id, now=now,
                                             tenant_id=principal.tenant_id)
    if not created:
        response.status_code = 200
    return escrow.regulator_view(row)


@operations.get("/regulators", response_model=RegulatorList, summary="Operations: fund regulators",
                responses=error_responses(422))
def list_regulators(principal: Operator, session: SessionDep, limit: Limit = 20,
                         cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = escrow.list_regulators(session, limit=limit, cursor=cursor)
    return {"data": [escrow.regulator_view(r) for r in rows], "next_cursor": next_cursor}


router.include_router(payments)
router.include_router(schemes)
router.include_router(supervision)
router.include_router(operations)


def setup(app: FastAPI) -> None:
    """The checkout pages, the escrow debit guard and bundle resolver, and the jobs."""
    from gateway.jobs import register_job
    from products.egov import checkout

    app.include_router(checkout.router)
    escrow.install()
    issuer = str(app.state.settings.issuer).rstrip("/")
    register_job("egov.expire_orders", lambda db: service.expire_due_orders(db, issuer), interval=5.0)
    register_job("egov.escrow_refunds", escrow.run_due_refunds, interval=5.0)


__all__ = ["router", "setup"]
