"""Probe routes used by the edge tests: JSON parsing and validation, a database-side
rollback, and a row deleted under the request."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.auth import authenticate
from gateway.db import get_session, referenced
from gateway.ids import new_id
from gateway.money import PositiveAmount
from gateway.tenancy import Principal
from products.accounts import service as accounts
from products.accounts.models import Account

router = APIRouter()


class ProbeIn(BaseModel):
    name: str
    amount: PositiveAmount
    count: int


@router.post("/v1/partner-probe-json", include_in_schema=False, dependencies=[Depends(authenticate)])
def probe(body: ProbeIn) -> dict[str, str]:
    return {"name": body.name}


@router.post("/v1/partner-probe-rollback/{account_id}", include_in_schema=False)
def probe_rollback(account_id: str, principal: Principal = Depends(authenticate),
                   session: Session = Depends(get_session)) -> dict[str, str]:
    """Moves money, then meets a deadlock PostgreSQL reports (a real server error, raised by
    the server): the request must get the 409 and the money must not have moved."""
    accounts.deposit(session, principal.tenant_id, account_id, 100, journal_ref=new_id("probe"))
    session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$"))
    return {"status": "unreachable"}


@router.post("/v1/partner-probe-row-gone/{account_id}", include_in_schema=False)
def probe_row_gone(account_id: str, at: str = "flush",
                   principal: Principal = Depends(authenticate),
                   session: Session = Depends(get_session)) -> dict[str, str]:
    """Reads an account, then its row is deleted (as a concurrent sandbox reset would) before
    the change is written: the UPDATE finds no row, in the route (`at=flush`) or at the
    middleware's commit (`at=commit`); or (`at=reference`) the request, having written a
    deposit, looks up the account as a row its rows refer to and finds it gone. The request
    must get the 409 and the row come back."""
    if at == "reference":
        accounts.deposit(session, principal.tenant_id, account_id, 100,
                         journal_ref=new_id("probe"))
        session.expunge_all()
        session.execute(text("DELETE FROM postings WHERE account_id = :id"), {"id": account_id})
        session.execute(text("DELETE FROM accounts WHERE id = :id"), {"id": account_id})
        referenced(session, Account, account_id)
        return {"status": "unreachable"}
    account = accounts.get_account(session, principal.tenant_id, account_id)
    session.execute(text("DELETE FROM accounts WHERE id = :id"), {"id": account_id})
    account.label = "changed"
    if at == "flush":
        session.flush()
    return {"status": "written at commit"}
