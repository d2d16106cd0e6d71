"""Payroll test helpers: funded employer accounts, generated employees, batch files, the worker.

Accounts are opened and funded through `products.accounts.service` (the ledger's own API, as
the sandbox seeder does); everything payroll does is called over HTTP with real tokens.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from gateway import clock as clock_module
from gateway.identifiers import generate_bank_card, generate_resident_id, generate_uscc
from gateway.jobs import run_all_once
from gateway.money import format_fen
from products.accounts import service as accounts
from products.accounts.magic import account_number_status
from tests.tools.api import PartnerClient, new_partner_client
from tests.tools.clock import manual_clock

NOW = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
TODAY = date(2026, 11, 2)
PAYROLL_JOBS = ["payroll.pay"]


@pytest.fixture
def clock() -> Iterator[clock_module.ManualClock]:
    """A manual base clock (tokens keep using real time): business dates are deterministic."""
    with manual_clock(NOW) as manual:
        yield manual


@dataclass
class Person:
    name: str
    id_number: str
    card: str


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "军", "洋", "勇", "杰", "秀英", "建国", "志强", "文博"]


def people(n: int, seed: int = 7) -> list[Person]:
    """`n` distinct employees with valid ID and card numbers (no magic card suffixes)."""
    rng = random.Random(seed)
    out: list[Person] = []
    seen: set[str] = set()
    while len(out) < n:
        card = generate_bank_card(rng)
        ident = generate_resident_id(rng)
        if account_number_status(card) is not None or card in seen or ident in seen:
            continue
        seen.update((card, ident))
        out.append(Person(rng.choice(_SURNAMES) + rng.choice(_GIVEN), ident, card))
    return out


def magic_card(suffix: str) -> str:
    """A Luhn-valid card number ending in a sandbox magic suffix (0002 closed, 0003 frozen)."""
    return accounts.generate_account_number("person", suffix=suffix)


@dataclass
class Employer:
    client: PartnerClient
    account_id: str
    uscc: str
    name: str


def open_account(app: Any, tenant_id: str, *, fen: int = 0, kind: str = "settlement",
                 name: str | None = None, uscc: str | None = None) -> str:
    """An enterprise account of the tenant, funded with `fen` from outside (a deposit)."""
    rng = random.Random(uuid.uuid4().int)
    with app.state.database.transaction() as session:
        account = accounts.create_account(
            session, tenant_id, kind=kind, owner_type="enterprise",
            owner_name=name or "上海恒达建设工程有限公司", owner_uscc=uscc or generate_uscc(rng))
        if fen:
            accounts.deposit(session, tenant_id, account.id, fen,
                             journal_ref=f"test-deposit:{uuid.uuid4().hex}")
        return account.id


def open_person_account(app: Any, tenant_id: str, person: Person, *, status: str = "active") -> str:
    """An account of this bank for an employee (their card is then paid in-house)."""
    with app.state.database.transaction() as session:
        account = accounts.create_account(session, tenant_id, kind="settlement",
                                          owner_type="person", owner_name=person.name,
                                          owner_id_number=person.id_number,
                                          account_number=person.card)
        if status == "frozen":
            accounts.freeze_account(session, tenant_id, account.id, actor="test")
        return account.id


def balance(app: Any, tenant_id: str, account_id: str) -> tuple[int, int]:
    """(ledger, held) of an account."""
    with app.state.database.transaction() as session:
        b = accounts.get_core_banking().balance(session, tenant_id, account_id)
        return b.ledger_fen, b.held_fen


@pytest.fixture
def employer(app, http, clock) -> Employer:  # type: ignore[no-untyped-def]
    client = new_partner_client(app, http)
    uscc = generate_uscc(random.Random(11))
    account = open_account(app, client.tenant_id, fen=10_000_000_00, uscc=uscc)
    return Employer(client, account, uscc, "上海恒达建设工程有限公司")


def items_for(persons: list[Person], amounts: list[int] | None = None) -> list[dict[str, Any]]:
    amounts = amounts or [1000_00 + i for i in range(len(persons))]
    return [{"employee_name": p.name, "id_number": p.id_number, "account_number": p.card,
             "amount": {"amount": format_fen(a), "currency": "CNY"}, "memo": "十一月工资",
             "item_reference": f"E{i + 1:05d}"} for i, (p, a) in enumerate(zip(persons, amounts,
                                                                                strict=True))]


def batch_body(account_id: str, items: list[dict[str, Any]], *, value_date: date = TODAY,
               reference: str | None = None, purpose: str = "wages", count: int | None = None,
               total_fen: int | None = None, wage_month: str | None = None) -> dict[str, Any]:
    from gateway.money import parse_fen

    total = sum(parse_fen(i["amount"]["amount"]) for i in items) if total_fen is None else total_fen
    header: dict[str, Any] = {
        "payer_account_id": account_id, "purpose": purpose, "value_date": value_date.isoformat(),
        "declared_count": len(items) if count is None else count,
        "declared_total": {"amount": format_fen(total), "currency": "CNY"},
        "external_reference": reference or f"HR-{uuid.uuid4().hex[:10]}"}
    if wage_month:
        header["wage_month"] = wage_month
    return {"header": header, "items": items}


def csv_text(account_id: str, items: list[dict[str, Any]], *, value_date: date = TODAY,
             reference: str | None = None, count: int | None = None,
             total_fen: int | None = None) -> str:
    body = batch_body(account_id, items, value_date=value_date, reference=reference, count=count,
                      total_fen=total_fen)
    h = body["header"]
    lines = [",".join([h["payer_account_id"], h["purpose"], h["value_date"],
                       str(h["declared_count"]), h["declared_total"]["amount"],
                       h["external_reference"]])]
    for i in items:
        lines.append(",".join([i["employee_name"], i["id_number"], i["account_number"],
                               i["amount"]["amount"], i["memo"], i["item_reference"]]))
    return "\r\n".join(lines) + "\r\n"


def upload(client: PartnerClient, data: bytes, charset: str | None = None, **kwargs: Any) -> Any:
    ctype = "text/csv" + (f"; charset={charset}" if charset else "")
    return client.request("POST", "/v1/payroll/batches/csv", content=data,
                          headers={"Content-Type": ctype}, **kwargs)


def run_payroll(app: Any, rounds: int = 1000) -> int:
    """Run the payroll jobs until they have nothing left to do."""
    total = 0
    for _ in range(rounds):
        done = sum(run_all_once(app.state.database, only=PAYROLL_JOBS).values())
        total += done
        if not done:
            return total
    raise AssertionError("payroll jobs never went idle")


def advance_days(app: Any, tenant_id: str, days: float) -> None:
    from gateway.tenancy import advance_clock

    with app.state.database.transaction() as session:
        advance_clock(session, tenant_id, days * 86400)


def tenant_today(app: Any, tenant_id: str) -> date:
    from gateway.tenancy import clock_for

    with app.state.database.transaction() as session:
        return clock_for(session, tenant_id).today()


def events(app: Any, tenant_id: str, type_: str | None = None) -> list[Any]:
    from sqlalchemy import select

    from gateway.events import Event

    with app.state.database.transaction() as session:
        query = select(Event).where(Event.tenant_id == tenant_id).order_by(Event.created_at, Event.id)
        if type_:
            query = query.where(Event.type == type_)
        return list(session.scalars(query))



