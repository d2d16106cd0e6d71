"""Every paged list answers a cursor it did not issue the same way: 422 `invalid_cursor`
pointing at `query.cursor`; its own cursors keep paging without skipping or repeating a row.

The lists are read from the committed OpenAPI document (every GET with a `cursor` query
parameter), so a new list is covered the day it is added. Each is called over HTTP by a client
holding its scope: a seeded sandbox developer for the partner lists, a sandbox regulator for
e-government supervision, a payroll regulator with the seeded project's region, and a bank
operations client."""

from __future__ import annotations

import base64
import json
import random
import uuid
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from gateway.identifiers import generate_uscc
from tests.tools.api import PartnerClient, new_partner_client, problem, sandbox_signup

ROOT = Path(__file__).resolve().parents[2]
BOGUS = "eyJ4IjoxfQ"  # base64url of {"x":1}


def _paged_lists() -> list[tuple[str, str, tuple[str, ...]]]:
    """(path, the scope it needs, its required query parameters) of every paged list."""
    doc = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    found = []
    for path, operations in doc["paths"].items():
        get = operations.get("get")
        if get and any(p.get("in") == "query" and p.get("name") == "cursor"
                       for p in get.get("parameters", [])):
            scopes = [s for requirement in get.get("security", []) for s in
                      next(iter(requirement.values()), [])]
            required = tuple(p["name"] for p in get["parameters"]
                             if p.get("in") == "query" and p.get("required"))
            found.append((path, scopes[0] if scopes else "", required))
    return found


PAGED_LISTS = _paged_lists()


def _problem_points_at_cursor(response: Any) -> None:
    body = problem(response, 422, "invalid_cursor")
    assert any(e["field"] == "query.cursor" for e in body.get("errors") or []), body


class Sandbox:
    """A seeded sandbox developer and, made when first asked for, what a list needs: the client
    holding its scope and the ids its path names."""

    def __init__(self, app: Any, http: Any) -> None:
        self.app, self.http = app, http
        self.dev, body = sandbox_signup(app, http)
        self.seeded = body["seeded"]

    # --- clients ---------------------------------------------------------------------------

    @cached_property
    def ops(self) -> PartnerClient:
        return new_partner_client(self.app, self.http, operations=True,
                                  scopes=["operations:read", "operations:write"])

    @cached_property
    def egov_regulator(self) -> PartnerClient:
        from tests.sandbox.test_sandbox_regulators import regulator_user

        return regulator_user(self.app, self.http, self.dev)[0]

    @cached_property
    def payroll_regulator(self) -> PartnerClient:
        regulator = new_partner_client(self.app, self.http, scopes=["payroll:supervise"],
                                       name="某区人社局")
        project = self.get(self.dev, f"/v1/payroll/wage-projects/{self.project_id}")
        granted = self.ops.post("/v1/operations/payroll/regulators", {
            "partner_id": regulator.partner_id, "region_code": project["region_code"]})
        assert granted.status_code == 201, granted.text
        return regulator

    def client_for(self, scope: str) -> PartnerClient:
        if scope.startswith("operations:"):
            return self.ops
        if scope == "egov:supervise":
            return self.egov_regulator
        if scope == "payroll:supervise":
            return self.payroll_regulator
        return self.dev

    # --- ids -------------------------------------------------------------------------------

    def get(self, client: PartnerClient, path: str) -> Any:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    @property
    def account_id(self) -> str:
        return self.seeded["accounts"]["accounts"]["operating"]["id"]

    @property
    def project_id(self) -> str:
        return self.seeded["payroll"]["wage_project"]["id"]

    @cached_property
    def order_id(self) -> str:
        collection = self.seeded["collection"]
        response = self.dev.post("/v1/collection/orders", {
            "merchant_order_no": f"CUR-{uuid.uuid4().hex[:10]}",
            "amount": {"amount": "10.00", "currency": "CNY"},
            "payer": {"method": "mandate", "mandate_id": collection["payer"]["mandate_id"]},
            "splits": [{"sub_merchant_id": collection["sub_merchants"][0],
                        "amount": {"amount": "10.00", "currency": "CNY"}}]})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    @cached_property
    def scheme_id(self) -> str:
        response = self.dev.post("/v1/egov/escrow-schemes", {
            "reference": f"JG-{uuid.uuid4().hex[:8]}", "name": "某培训学校预收费监管",
            "regulator_partner_id": self.egov_regulator.partner_id,
            "holder_name": "某培训学校有限公司", "holder_uscc": generate_uscc(random.Random(7)),
            "beneficiary_account_id": self.account_id,
            "policy": {"kind": "tuition", "required_approvals": 1, "max_classes": 48}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    @cached_property
    def sub_account_id(self) -> str:
        response = self.dev.post(f"/v1/egov/escrow-schemes/{self.scheme_id}/sub-accounts", {
            "reference": f"STU-{uuid.uuid4().hex[:8]}", "holder_name": "赵小明",
            "total_classes": 10, "tuition": {"amount": "3000.00", "currency": "CNY"}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    @cached_property
    def diner_id(self) -> str:
        employer = self.seeded["collection"]["canteen"]["employer_id"]
        response = self.dev.post(f"/v1/collection/canteen/employers/{employer}/diners", {
            "employee_no": f"E-{uuid.uuid4().hex[:8]}", "name": "王伟"})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    @cached_property
    def batch_id(self) -> str:
        from tests.products.payroll.support import items_for, people

        today = self.get(self.dev, "/sandbox/v1/clock")["business_date"]
        items = items_for(people(3))
        total = sum(int(i["amount"]["amount"].replace(".", "")) for i in items)
        response = self.dev.post("/v1/payroll/batches", {"header": {
            "payer_account_id": self.account_id, "purpose": "wages", "value_date": today,
            "declared_count": len(items),
            "declared_total": {"amount": f"{total // 100}.{total % 100:02d}", "currency": "CNY"},
            "external_reference": f"HR-{uuid.uuid4().hex[:10]}"}, "items": items})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    @cached_property
    def endpoint_id(self) -> str:
        response = self.dev.post("/v1/webhook-endpoints", {"url": "https://93.184.215.14/hooks",
                                                           "event_types": ["*"]})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def fill(self, path: str) -> str:
        seeded = self.seeded["collection"]
        ids = {
            "account_id": lambda: self.account_id,
            "employer_id": lambda: seeded["canteen"]["employer_id"],
            "order_id": lambda: self.order_id,
            "park_id": lambda: seeded["park"]["park_id"],
            "virtual_account_id": lambda: seeded["payer"]["virtual_account_id"],
            "scheme_id": lambda: self.scheme_id,
            "sub_account_id": lambda: self.sub_account_id,
            "diner_id": lambda: self.diner_id,
            "batch_id": lambda: self.batch_id,
            "project_id": lambda: self.project_id,
            "endpoint_id": lambda: self.endpoint_id,
        }
        while "{" in path:
            name = path[path.index("{") + 1:path.index("}")]
            path = path.replace("{" + name + "}", ids[name]())
        return path

    def query_value(self, name: str) -> str:
        """A value for a list's required query parameter."""
        if name == "month":
            return self.get(self.dev, "/sandbox/v1/clock")["business_date"][:7]
        return {"tenant_id": self.dev.tenant_id}[name]

    def move_money(self, times: int) -> None:
        """Transfers from the seeded operating account (postings for its transactions)."""
        supplier = self.seeded["accounts"]["accounts"]["supplier"]["id"]
        for _ in range(times):
            response = self.dev.post("/v1/transfers", {
                "from_account_id": self.account_id, "to_account_id": supplier,
                "amount": {"amount": "1.00", "currency": "CNY"}})
            assert response.status_code in (200, 201), response.text

    def cursor_of(self, path: str) -> str:
        """A real `next_cursor` of this list (the seeded data has more than one row)."""
        cursor = self.get(self.dev, path + "?limit=1")["next_cursor"]
        assert cursor, path
        return cursor


@pytest.fixture
def sandbox(app, http) -> Sandbox:  # type: ignore[no-untyped-def]
    return Sandbox(app, http)


def test_every_paged_list_is_in_the_document():
    paths = {path for path, _, _ in PAGED_LISTS}
    assert {"/v1/accounts", "/v1/events", "/v1/payroll/wage-projects/{project_id}/workers",
            "/v1/collection/orders", "/v1/egov/payment-orders"} <= paths
    assert len(paths) >= 40


@pytest.mark.parametrize(("path", "scope", "required"), PAGED_LISTS,
                         ids=[p for p, _, _ in PAGED_LISTS])
def test_a_cursor_the_list_did_not_issue_is_invalid_cursor(sandbox, path, scope, required):
    client = sandbox.client_for(scope)
    url = sandbox.fill(path)
    query = {name: sandbox.query_value(name) for name in required}
    # The list answers without a cursor: the 422s below are about the cursor alone.
    answer = client.get(url, params=query)
    assert answer.status_code == 200, answer.text
    # Another list's real cursor (the events list's, or the accounts list's for events).
    foreign = sandbox.cursor_of("/v1/accounts" if path == "/v1/events" else "/v1/events")
    # Its scope is another list's: valid base64url, well-formed, still refused.
    raw = base64.urlsafe_b64decode(foreign + "=" * (-len(foreign) % 4))
    spoofed = base64.urlsafe_b64encode(raw[:8] + b"zzzzzzzzzzzzzzzzzzzzzzzzzz").decode().rstrip("=")
    for cursor in (BOGUS, foreign, spoofed, "not a cursor!", "%%%", "A" * 200,
                   base64.urlsafe_b64encode(b"acct_01M999W69S000000AD5TCAADGW").decode()):
        _problem_points_at_cursor(client.get(url, params={**query, "cursor": cursor}))


@pytest.mark.parametrize("path", [
    "/v1/accounts",
    "/v1/events",
    "/v1/chain-credit/members",
    "/v1/collection/sub-merchants",
    "/v1/accounts/{account_id}/transactions",
    "/v1/payroll/wage-projects/{project_id}/workers",
    "/v1/payroll/batches/{batch_id}/items",
])
def test_a_lists_own_cursor_pages_without_skips_or_repeats(sandbox, path):
    url = sandbox.fill(path)
    if path.endswith("/transactions"):
        sandbox.move_money(3)
    everything = sandbox.get(sandbox.dev, url + "?limit=100")
    assert everything["next_cursor"] is None
    expected = [row.get("id") or row for row in everything["data"]]
    assert len(expected) >= 2, (path, everything)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        response = sandbox.dev.get(url, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [row.get("id") or row for row in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(cursor) <= 200
    assert seen == expected


def test_an_edited_cursor_is_refused(sandbox):
    cursor = sandbox.cursor_of("/v1/accounts")
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-1] ^= 0x01  # the last key character: another, real-looking account id
    edited = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert edited != cursor
    _problem_points_at_cursor(sandbox.dev.get("/v1/accounts", params={"cursor": edited}))
    # The unedited cursor still works; an empty one is the first page.
    assert sandbox.dev.get("/v1/accounts", params={"cursor": cursor}).status_code == 200
    first = sandbox.get(sandbox.dev, "/v1/accounts?limit=1&cursor=")
    assert first["next_cursor"] == cursor
