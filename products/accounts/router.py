"""Accounts HTTP routes: thin (auth and scope, one service call, shape the response).

`accounts:read`: accounts, balances, transactions, statements, transfers.
`accounts:write`: transfers between the tenant's own accounts (Idempotency-Key required).

A transfer the bank refuses for a business reason (insufficient funds, a frozen or closed
account, a restricted account, a payee name that does not match) is still created: 201 with
`status: "failed"` and a `failure_code`, and a `transfer.failed` event. Invalid requests (an
unknown account, the same account twice, a malformed amount) are 4xx problems and create
nothing. See `products.accounts.service.create_transfer`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BeforeValidator, TypeAdapter, ValidationError
from sqlalchemy.orm import Session

from gateway.auth import require_scope
from gateway.clock import IsoDate, start_of_business_day, to_rfc3339
from gateway.csvtext import spreadsheet_safe
from gateway.db import get_session
from gateway.errors import ValidationFailed, error_responses
from gateway.idempotency import idempotency
from gateway.money import format_fen
from gateway.negotiation import VARY, accept_of, negotiate
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal
from products.accounts import jobs as _jobs  # noqa: F401  (registers the ledger's jobs)
from products.accounts import service
from products.accounts.errors import InvalidPeriod
from products.accounts.models import Account
from products.accounts.port import Statement
from products.accounts.schemas import (
    AccountList,
    AccountOut,
    AccountStatementOut,
    BalanceOut,
    TransactionList,
    TransactionOut,
    TransferIn,
    TransferList,
    TransferOut,
)

Reader = Annotated[Principal, Depends(require_scope("accounts:read"))]
Writer = Annotated[Principal, Depends(require_scope("accounts:write"))]
SessionDep = Annotated[Session, Depends(get_session)]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1-100)")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page")]
MAX_STATEMENT_DAYS = 366

router = Router(prefix="/v1", responses=error_responses(400, 401, 403, 422, 429))
accounts = Router(prefix="/accounts", tags=["accounts"])
transfers = Router(prefix="/transfers", tags=["transfers"])


def _visible(session: Session, principal: Principal, account_id: str) -> Account:
    """The partner's account (the bank's internal accounts are not the partner's to see)."""
    return service.get_account(session, principal.tenant_id, account_id, include_internal=False)


@accounts.get("", response_model=AccountList, summary="List the accounts of this environment")
def list_accounts(principal: Reader, session: SessionDep, limit: Limit = 20, cursor: Cursor = None,
                  kind: Literal["settlement", "escrow", "wage", "virtual", "internal"] | None = None,
                  status: Literal["active", "frozen", "closed"] | None = None,
                  parent_account_id: Annotated[str | None, Query(max_length=60)] = None) -> AccountList:
    page = service.list_accounts(session, principal.tenant_id, cursor=cursor, limit=limit,
                                 kind=kind, status=status, parent_account_id=parent_account_id)
    return AccountList(data=[AccountOut.from_model(a) for a in page.data],
                       next_cursor=page.next_cursor)


@accounts.get("/{account_id}", response_model=AccountOut, summary="Get an account",
              responses=error_responses(404))
def get_account(account_id: str, principal: Reader, session: SessionDep) -> AccountOut:
    return AccountOut.from_model(_visible(session, principal, account_id))


@accounts.get("/{account_id}/balances", response_model=BalanceOut,
              summary="Get an account's ledger, held and available balances",
              responses=error_responses(404))
def get_account_balances(account_id: str, principal: Reader, session: SessionDep) -> BalanceOut:
    _visible(session, principal, account_id)
    return BalanceOut.from_record(
        service.get_core_banking().balance(session, principal.tenant_id, account_id))


_BUSINESS_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = TypeAdapter(datetime)


def _period_bound(value: object) -> object:
    """A query bound as given: `YYYY-MM-DD` is a business date, anything else an instant
    (parsed as FastAPI parses a datetime, so instants behave as they always have)."""
    if not isinstance(value, str):
        return value
    try:
        if _BUSINESS_DATE.fullmatch(value):
            return date.fromisoformat(value)
        return _INSTANT.validate_python(value)
    except (ValueError, ValidationError):
        raise ValueError("expected an RFC 3339 instant (2026-12-01T00:00:00+08:00) or a "
                         "business date (2026-12-01)") from None


# A period bound: an RFC 3339 instant, or a business date (Asia/Shanghai).
PeriodBound = Annotated[datetime | date | None, BeforeValidator(_period_bound)]


def _bound_instant(name: str, bound: datetime | date | None, *, end: bool) -> datetime | None:
    """The instant a bound stands for: an instant as given; a business date's start for
    `from`, and the next day's start for `to` (so that `to` includes the whole day)."""
    if bound is None:
        return None
    if isinstance(bound, datetime):
        if bound.tzinfo is None:
            raise InvalidPeriod(f"`{name}` needs a time zone offset (Z or +08:00), or is a "
                                "business date YYYY-MM-DD.")
        return bound
    try:
        return start_of_business_day(bound + timedelta(days=1) if end else bound)
    except OverflowError:
        raise ValidationFailed(f"`{name}` is beyond the calendar the platform keeps.",
                               code="value_out_of_range",
                               errors=[{"field": f"query.{name}", "message": "out of range"}]
                               ) from None


@accounts.get("/{account_id}/transactions", response_model=TransactionList,
              summary="List an account's transactions, newest first",
              description="The account's postings, newest first, each with its running balance, "
                          "in cursor pages. `from` and `to` bound them by time, and each is "
                          "either an RFC 3339 instant with an offset (`2026-12-01T00:00:00Z`, "
                          "`2026-12-01T08:00:00+08:00`) or a business date `YYYY-MM-DD` in "
                          "Asia/Shanghai, as the statement takes. An instant `from` is "
                          "inclusive and an instant `to` exclusive. A date `from` starts at "
                          "that business day's beginning (00:00 Asia/Shanghai) and a date `to` "
                          "includes that whole business day (up to the next day's beginning, "
                          "exclusive): `from=2026-12-01&to=2026-12-31` is the whole of "
                          "December in Shanghai. The two forms may be mixed. An instant without "
                          "an offset, or `from` not before `to`, is a 422 `invalid_period`.",
              responses=error_responses(404))
def list_account_transactions(
        account_id: str, principal: Reader, session: SessionDep, limit: Limit = 20,
        cursor: Cursor = None,
        start: Annotated[PeriodBound, Query(
            alias="from", description="RFC 3339 instant (inclusive), or business date "
                                      "YYYY-MM-DD (from the day's start, Asia/Shanghai)")] = None,
        end: Annotated[PeriodBound, Query(
            alias="to", description="RFC 3339 instant (exclusive), or business date "
                                    "YYYY-MM-DD (the whole day included, Asia/Shanghai)")] = None,
) -> TransactionList:
    start_at = _bound_instant("from", start, end=False)
    end_at = _bound_instant("to", end, end=True)
    _visible(session, principal, account_id)
    page = service.transactions(session, principal.tenant_id, account_id, start=start_at,
                                end=end_at, cursor=cursor, limit=limit)
    return TransactionList(data=[TransactionOut.from_line(line) for line in page.data],
                           next_cursor=page.next_cursor)


def _statement_csv(statement: Statement) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def flush() -> str:
        out = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return out

    writer.writerow(["type", "id", "created_at", "direction", "amount", "balance_after",
                     "currency", "counterparty_account_id", "purpose", "reference_type",
                     "reference_id", "memo"])
    writer.writerow(["opening_balance", "", to_rfc3339(statement.start), "", "",
                     format_fen(statement.opening_fen), "CNY", "", "", "", "", ""])
    yield "\ufeff" + flush()  # a BOM, so that spreadsheet software reads the UTF-8 as such
    for line in statement.lines:
        writer.writerow(["transaction", line.posting_id, to_rfc3339(line.created_at),
                         "credit" if line.amount_fen > 0 else "debit",
                         format_fen(abs(line.amount_fen)), format_fen(line.balance_after_fen),
                         "CNY", line.counterparty_account_id or "", spreadsheet_safe(line.purpose),
                         spreadsheet_safe(line.reference_type), spreadsheet_safe(line.reference_id),
                         spreadsheet_safe(line.memo)])
        yield flush()
    writer.writerow(["closing_balance", "", to_rfc3339(statement.end), "", "",
                     format_fen(statement.closing_fen), "CNY", "", "", "", "", ""])
    yield flush()


# The statement's own form (对账单) is CSV, the default; JSON when asked for.
STATEMENT_TYPES = ("text/csv", "application/json")


@accounts.get("/{account_id}/statement", response_model=AccountStatementOut,
              summary="Get an account statement (对账单) for business dates, as CSV or JSON",
              description="The business days `from` to `to` (Asia/Shanghai), inclusive, with the "
                          "opening and closing balance and every transaction between. CSV by "
                          "default; JSON with `format=json` or `Accept: application/json` (RFC 9110 "
                          "negotiation: q-values count, `q=0` refuses a type; 406 when neither "
                          "is acceptable).",
              responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                               "description": "The statement"}, **error_responses(404, 406)})
def get_account_statement(
        account_id: str, principal: Reader, session: SessionDep, request: Request,
        response: Response,
        start: Annotated[IsoDate | None, Query(
            alias="from", description="First business day (Asia/Shanghai); required")] = None,
        end: Annotated[IsoDate | None, Query(
            alias="to", description="Last business day, inclusive; required")] = None,
        start_date: Annotated[IsoDate | None, Query(
            deprecated=True, description="The former name of `from`")] = None,
        end_date: Annotated[IsoDate | None, Query(
            deprecated=True, description="The former name of `to`")] = None,
        format: Literal["csv", "json"] | None = None,
) -> Response | AccountStatementOut:
    start, end = start or start_date, end or end_date
    missing = [{"field": f"query.{name}", "message": "a business day (YYYY-MM-DD) is required"}
               for name, value in (("from", start), ("to", end)) if value is None]
    if missing or start is None or end is None:
        raise ValidationFailed("A statement needs `from` and `to`, two business days.",
                               errors=missing)
    if end < start or (end - start).days >= MAX_STATEMENT_DAYS:
        raise InvalidPeriod(f"A statement covers 1 to {MAX_STATEMENT_DAYS} business days, "
                            "`from` to `to` inclusive.")
    as_csv = (format == "csv" if format is not None else
              negotiate(accept_of(request.headers), STATEMENT_TYPES) == "text/csv")
    _visible(session, principal, account_id)
    statement = service.get_core_banking().statement(
        session, principal.tenant_id, account_id, start_of_business_day(start),
        start_of_business_day(end + timedelta(days=1)))
    if as_csv:
        filename = f"statement-{account_id}-{start.isoformat()}-{end.isoformat()}.csv"
        return StreamingResponse(_statement_csv(statement), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                          **VARY})
    response.headers.update(VARY)
    return AccountStatementOut.from_record(statement)


@transfers.post("", response_model=TransferOut, status_code=201,
                summary="Transfer money between two accounts of this environment",
                dependencies=[Depends(idempotency(required=True))],
                responses=error_responses(404))
def create_transfer(body: TransferIn, principal: Writer, session: SessionDep) -> TransferOut:
    record = service.create_transfer(
        session, principal.tenant_id, from_account_id=body.from_account_id,
        to_account_id=body.to_account_id, amount_fen=body.amount.fen, memo=body.memo,
        to_account_name=body.to_account_name, actor=principal.client_id)
    return TransferOut.from_model(record)


@transfers.get("", response_model=TransferList, summary="List transfers, newest first")
def list_transfers(principal: Reader, session: SessionDep, limit: Limit = 20, cursor: Cursor = None,
                   account_id: Annotated[str | None, Query(max_length=60)] = None) -> TransferList:
    page = service.list_transfers(session, principal.tenant_id, cursor=cursor, limit=limit,
                                  account_id=account_id)
    return TransferList(data=[TransferOut.from_model(t) for t in page.data],
                        next_cursor=page.next_cursor)


@transfers.get("/{transfer_id}", response_model=TransferOut, summary="Get a transfer",
               responses=error_responses(404))
def get_transfer(transfer_id: str, principal: Reader, session: SessionDep) -> TransferOut:
    return TransferOut.from_model(service.get_transfer(session, principal.tenant_id, transfer_id))


router.include_router(accounts)
router.include_router(transfers)
