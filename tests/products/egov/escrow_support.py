"""Setting up escrow worlds for the tests: a regulator recognised by bank operations (with two
regulator users, each its own OAuth client), an operator (the partner fixture) with a
beneficiary account, and depositors' accounts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.identifiers import generate_uscc
from gateway.tenancy import Partner
from tests.products.egov.helpers import RNG, ledger_balance, open_account
from tests.tools.api import PartnerClient, new_partner_client

OPS_SCOPES = ["operations:read", "operations:write"]


@dataclass
class World:
    app: Any
    http: Any
    operator: PartnerClient
    regulator: PartnerClient
    ops: PartnerClient
    beneficiary: str
    colleague: PartnerClient | None = None  # a second regulator user (another client, same partner)

    def balance(self, account_id: str) -> int:
        return ledger_balance(self.app, self.operator.tenant_id, account_id)

    def account(self, fund: int = 0, person: bool = False, name: str | None = None) -> str:
        return open_account(self.app, self.operator.tenant_id, fund=fund, person=person, name=name)

    def scheme(self, policy: dict[str, Any], *, beneficiary: bool = True, **extra: Any) -> dict[str, Any]:
        body = {"reference": f"S-{RNG.randrange(10**8)}", "name": "资金监管",
                "regulator_partner_id": self.regulator.partner_id, "holder_name": "示范机构有限公司",
                "holder_uscc": generate_uscc(RNG), "policy": policy}
        if beneficiary:
            body["beneficiary_account_id"] = self.beneficiary
        body.update(extra)
        response = self.operator.post("/v1/egov/escrow-schemes", body)
        assert response.status_code == 201, response.text
        return response.json()

    def sub_account(self, scheme: dict[str, Any], reference: str, holder: str = "王小明",
                    **terms: Any) -> dict[str, Any]:
        response = self.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts",
                                      {"reference": reference, "holder_name": holder, **terms})
        assert response.status_code == 201, response.text
        return response.json()

    def deposit(self, scheme: dict[str, Any], sub: dict[str, Any], from_account: str, amount: str) -> Any:
        return self.operator.post(
            f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}/deposits",
            {"from_account_id": from_account, "amount": {"amount": amount, "currency": "CNY"}})

    def instruct(self, scheme: dict[str, Any], sub: dict[str, Any], **body: Any) -> Any:
        if isinstance(body.get("amount"), str):
            body["amount"] = {"amount": body["amount"], "currency": "CNY"}
        return self.operator.post(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions",
                                  {"sub_account_id": sub["id"], **body})

    def decide(self, instruction: dict[str, Any], approver: str, decision: str = "approve",
               regulator: PartnerClient | None = None) -> Any:
        return (regulator or self.regulator).post(
            f"/v1/egov/supervision/release-instructions/{instruction['id']}/decisions",
            {"approver_id": approver, "approver_name": f"审批人{approver}", "decision": decision,
             "comment": "同意" if decision == "approve" else "不同意"})

    def sub(self, scheme: dict[str, Any], sub: dict[str, Any]) -> dict[str, Any]:
        return self.operator.get(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}").json()

    def instructions(self, scheme: dict[str, Any]) -> list[dict[str, Any]]:
        return self.operator.get(
            f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions?limit=100").json()["data"]


def recognise(ops: PartnerClient, partner_id: str, kinds: list[str], name: str = "监管部门",
              status: int = 201) -> None:
    response = ops.post("/v1/operations/egov/regulators",
                        {"partner_id": partner_id, "name": name, "kinds": kinds})
    assert response.status_code == status, response.text


def regulator_user(app: Any, http: Any, regulator: PartnerClient) -> PartnerClient:
    """Another regulator user of the same regulator: its own OAuth client of the same partner."""
    with app.state.database.transaction() as session:
        partner = session.get(Partner, regulator.partner_id)
        session.expunge(partner)
    return new_partner_client(app, http, scopes=regulator.scopes, partner=partner)


def world(app: Any, http: Any, operator: PartnerClient,
          kinds: tuple[str, ...] = ("tuition", "presale_housing", "bid_deposit", "court_funds")) -> World:
    ops = new_partner_client(app, http, operations=True, scopes=OPS_SCOPES)
    regulator = new_partner_client(app, http, scopes=["egov:supervise"], name="某区教育局")
    recognise(ops, regulator.partner_id, list(kinds))
    beneficiary = open_account(app, operator.tenant_id, name="示范机构有限公司")
    return World(app=app, http=http, operator=operator, regulator=regulator, ops=ops,
                 beneficiary=beneficiary, colleague=regulator_user(app, http, regulator))
