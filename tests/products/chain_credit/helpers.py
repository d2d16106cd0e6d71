"""Factories for chain credit tests: a tenant's chain built the way a partner builds it.

Settlement accounts are opened through the accounts service (partners do not open accounts);
members are registered and certificates issued over HTTP with real tokens; the facility is
granted over HTTP by a bank operations client.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from gateway.identifiers import generate_uscc
from gateway.tenancy import advance_clock, clock_for
from products.accounts import service as accounts
from products.chain_credit.models import PayablesCertificate
from tests.tools.api import PartnerClient, new_partner_client

BASE = "/v1/chain-credit"
OPS = "/v1/operations/chain-credit"
OPS_SCOPES = ["operations:read", "operations:write"]
_rng = random.Random(20261102)


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def open_account(app: FastAPI, tenant_id: str, name: str, uscc: str, balance_fen: int = 0) -> str:
    with app.state.database.transaction() as session:
        account = accounts.create_account(session, tenant_id, kind="settlement", owner_type="enterprise",
                                          owner_name=name, owner_uscc=uscc)
        if balance_fen:
            accounts.deposit(session, tenant_id, account.id, balance_fen,
                             journal_ref=f"test-funding:{account.id}")
        return account.id


def balance(app: FastAPI, tenant_id: str, account_id: str) -> int:
    with app.state.database.transaction() as session:
        return accounts.balance(session, tenant_id, account_id).ledger_fen


def deposit(app: FastAPI, tenant_id: str, account_id: str, fen: int) -> None:
    with app.state.database.transaction() as session:
        accounts.deposit(session, tenant_id, account_id, fen, journal_ref=f"test-topup:{uuid.uuid4().hex}")


def today(app: FastAPI, tenant_id: str) -> date:
    with app.state.database.transaction() as session:
        return clock_for(session, tenant_id).today()


def advance(app: FastAPI, tenant_id: str, days: float) -> None:
    with app.state.database.transaction() as session:
        advance_clock(session, tenant_id, days * 86400)


def ledger_audit(app: FastAPI, tenant_id: str) -> list[str]:
    with app.state.database.transaction() as session:
        return accounts.audit(session, tenant_id)


def node_count(app: FastAPI, tenant_id: str) -> int:
    with app.state.database.transaction() as session:
        return int(session.scalar(select(func.count(PayablesCertificate.id)).where(
            PayablesCertificate.tenant_id == tenant_id)) or 0)


def ops_client(app: FastAPI, http: Any) -> PartnerClient:
    return new_partner_client(app, http, operations=True, scopes=OPS_SCOPES)


@dataclass
class Member:
    id: str
    name: str
    uscc: str
    account_id: str
    tier: int


@dataclass
class Chain:
    app: FastAPI
    pc: PartnerClient
    ops: PartnerClient
    core: Member
    tiers: list[list[Member]]
    facility_id: str
    members: dict[str, Member] = field(default_factory=dict)

    @property
    def tenant_id(self) -> str:
        return self.pc.tenant_id

    @property
    def t1(self) -> Member:
        return self.tiers[0][0]

    @property
    def t2(self) -> Member:
        return self.tiers[1][0]

    @property
    def t3(self) -> Member:
        return self.tiers[2][0]

    def today(self) -> date:
        return today(self.app, self.tenant_id)

    def issue(self, face: str = "1000.00", *, to: Member | None = None, days: int = 90,
              acting: str | None = None, key: str | None = None, **overrides: Any) -> Any:
        body = {"acting_member_id": acting or self.core.id, "to_member_id": (to or self.t1).id,
                "amount": money(face),
                "maturity_date": (self.today() + timedelta(days=days)).isoformat(),
                "invoice_numbers": [f"INV-{uuid.uuid4().hex[:12]}", f"INV-{uuid.uuid4().hex[:12]}"],
                "contract_number": "PC-2026-77"}
        body.update(overrides)
        return self.pc.post(f"{BASE}/payables-certificates", body, idempotency_key=key)

    def issue_accepted(self, face: str = "1000.00", **kwargs: Any) -> dict[str, Any]:
        response = self.issue(face, **kwargs)
        assert response.status_code == 201, response.text
        cert = response.json()
        holder = cert["holder_member_id"]
        accepted = self.act(cert["id"], "accept", holder)
        assert accepted.status_code == 200, accepted.text
        return accepted.json()

    def act(self, cert_id: str, action: str, acting: str, **body: Any) -> Any:
        return self.pc.post(f"{BASE}/payables-certificates/{cert_id}/{action}",
                            {"acting_member_id": acting, **body})

    def split(self, cert_id: str, acting: str, *amounts: str) -> Any:
        return self.act(cert_id, "split", acting, parts=[money(a) for a in amounts])

    def transfer(self, cert_id: str, acting: str, to: str) -> Any:
        return self.act(cert_id, "transfer", acting, to_member_id=to)

    def get(self, cert_id: str) -> dict[str, Any]:
        response = self.pc.get(f"{BASE}/payables-certificates/{cert_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def facility(self) -> dict[str, Any]:
        response = self.pc.get(f"{BASE}/facilities/{self.facility_id}")
        assert response.status_code == 200, response.text
        return response.json()


def new_uscc() -> str:
    return generate_uscc(_rng)


def register(app: FastAPI, pc: PartnerClient, *, name: str, role: str, upstream: str | None,
             balance_fen: int = 0) -> Member:
    uscc = new_uscc()
    account_id = open_account(app, pc.tenant_id, name, uscc, balance_fen)
    body: dict[str, Any] = {"name": name, "uscc": uscc, "settlement_account_id": account_id, "role": role}
    if upstream:
        body["upstream_member_id"] = upstream
    response = pc.post(f"{BASE}/members", body)
    assert response.status_code == 201, response.text
    out = response.json()
    return Member(id=out["id"], name=name, uscc=uscc, account_id=account_id, tier=out["tier"])


def grant(ops: PartnerClient, tenant_id: str, core_id: str, *, limit: str = "1000000.00",
          expires_in_days: int = 400, circle: str = "GC-TEST-01", rate: str = "0.036",
          start: date | None = None, key: str | None = None) -> Any:
    start = start or date.today()
    return ops.post(f"{OPS}/facilities", {
        "tenant_id": tenant_id, "core_enterprise_id": core_id, "limit": money(limit),
        "expires_on": (start + timedelta(days=expires_in_days)).isoformat(),
        "guarantee_circle": circle, "discount_rate": rate}, idempotency_key=key)


def build_chain(app: FastAPI, http: Any, *, pc: PartnerClient | None = None, ops: PartnerClient | None = None,
                limit: str = "1000000.00", core_balance_fen: int = 10_000_000_00,
                tiers: tuple[int, ...] = (2, 2, 1), circle: str = "GC-TEST-01",
                expires_in_days: int = 400) -> Chain:
    """A core enterprise with a facility, and suppliers in three tiers (the first of each tier is
    the upstream of the next tier)."""
    pc = pc or new_partner_client(app, http)
    ops = ops or ops_client(app, http)
    core = register(app, pc, name="华南核心制造集团有限公司", role="core_enterprise", upstream=None,
                    balance_fen=core_balance_fen)
    response = grant(ops, pc.tenant_id, core.id, limit=limit, circle=circle,
                     start=today(app, pc.tenant_id), expires_in_days=expires_in_days)
    assert response.status_code == 201, response.text
    levels: list[list[Member]] = []
    upstream = core.id
    for depth, count in enumerate(tiers, start=1):
        level = [register(app, pc, name=f"T{depth}-供应商{i}有限公司", role="supplier", upstream=upstream)
                 for i in range(count)]
        levels.append(level)
        upstream = level[0].id
    chain = Chain(app=app, pc=pc, ops=ops, core=core, tiers=levels, facility_id=response.json()["id"])
    for m in [core] + [m for level in levels for m in level]:
        chain.members[m.id] = m
    return chain
