"""A probe route used by the edge tests to exercise JSON parsing and validation."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from gateway.auth import authenticate
from gateway.money import PositiveAmount

router = APIRouter()


class ProbeIn(BaseModel):
    name: str
    amount: PositiveAmount
    count: int


@router.post("/v1/partner-probe-json", include_in_schema=False, dependencies=[Depends(authenticate)])
def probe(body: ProbeIn) -> dict[str, str]:
    return {"name": body.name}
