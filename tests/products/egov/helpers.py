"""Factories for the e-government tests (plain functions over the real app and HTTP API)."""

from __future__ import annotations

import random
import uuid
from typing import Any

from gateway.identifiers import generate_resident_id, generate_uscc
from products.accounts import service as accounts

RNG = random.Random(20261102)
ORIGIN = "https://portal.example.gov.cn"


def open_account(app: Any, tenant_id: str, *, fund: int = 0, kind: str = "settlement",
                 person: bool = False, name: str | None = None, number: str | None = None) -> str:
    """An account in the tenant's ledger (what the bank opens for its customers), optionally funded."""
    with app.state.database.transaction() as session:
        if person:
            account = accounts.create_account(
                session, tenant_id, kind=kind, owner_type="person", owner_name=name or "李四",
                owner_id_number=generate_resident_id(RNG), account_number=number)
        else:
            account = accounts.create_account(
                session, tenant_id, kind=kind, owner_type="enterprise",
                owner_name=name or f"测试企业{uuid.uuid4().hex[:6]}有限公司",
                owner_uscc=generate_uscc(RNG), account_number=number)
        if fund:
            accounts.deposit(session, tenant_id, account.id, fund, journal_ref=f"seed:{account.id}")
        return account.id


def ledger_balance(app: Any, tenant_id: str, account_id: str) -> int:
    with app.state.database.transaction() as session:
        return accounts.balance(session, tenant_id, account_id).ledger_fen


def setup_portal(app: Any, pc: Any, origins: list[str] | None = None) -> str:
    payee = open_account(app, pc.tenant_id, name="上海市财政局非税收入专户")
    response = pc.request("PUT", "/v1/egov/portal", json={
        "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": payee,
        "origins": origins or [ORIGIN]})
    assert response.status_code == 200, response.text
    return payee


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": "103040101", "item_name": "机动车驾驶证工本费",
        "payer": {"name": "张三", "id_type": "resident_id", "id_number": generate_resident_id(RNG)},
        "amount": {"amount": "25.00", "currency": "CNY"}, "description": "补领驾驶证",
        "portal_reference": f"WB{uuid.uuid4().hex[:12]}", "return_url": ORIGIN + "/done?x=1",
    }
    body.update(overrides)
    return body


def create_order(pc: Any, **overrides: Any) -> dict[str, Any]:
    response = pc.post("/v1/egov/payment-orders", order_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def checkout_path(order: dict[str, Any]) -> str:
    return "/checkout/" + order["checkout_url"].rsplit("/checkout/", 1)[1]


CARD = "6222021234567890128"


def advance(app: Any, tenant_id: str, seconds: float) -> None:
    """Move the tenant's sandbox test clock forward."""
    from gateway.tenancy import advance_clock

    with app.state.database.transaction() as session:
        advance_clock(session, tenant_id, seconds)


def run_jobs(app: Any, *names: str) -> dict[str, int]:
    from gateway.jobs import run_all_once

    return run_all_once(app.state.database, only=list(names))


def pay(http: Any, order: dict[str, Any], *, method: str = "bank_account", card: str = CARD,
        password: str = "123456", lang: str = "zh") -> Any:
    """Submit the checkout form as the payer's browser would (no token: the checkout is public)."""
    return http.post(checkout_path(order) + "/pay", data={
        "method": method, "account_number": card, "password": password, "lang": lang},
        follow_redirects=False)


def events(pc: Any, type_: str) -> list[dict[str, Any]]:
    response = pc.get(f"/v1/events?type={type_}&limit=100")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def result_token(http: Any, order: dict[str, Any]) -> str:
    """The signed result from the checkout's return link (what the payer's browser carries back)."""
    import html
    import re
    from urllib.parse import parse_qs, urlsplit

    page = http.get(checkout_path(order))
    match = re.search(r'href="([^"]+)" target="_top" id="return-link"', page.text)
    assert match, page.text
    url = html.unescape(match.group(1))
    return parse_qs(urlsplit(url).query)["egov_result"][0]
