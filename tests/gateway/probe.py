"""Probe routes used by the edge tests: JSON parsing and validation, and a database-side
rollback."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from gateway.auth import authenticate
from gateway.db import get_session
from gateway.ids import new_id
from gateway.money import PositiveAmount
from gateway.tenancy import Principal
from products.accounts import service as accounts

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
