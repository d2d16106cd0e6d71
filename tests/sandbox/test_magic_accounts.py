"""The sandbox's magic account numbers do what the magic-value table says.

A frozen account (number ending 0003) is frozen as banks commonly freeze one (只收不付): it
refuses debits and accepts credits. A closed one (0002) refuses both. The table a developer
reads at sign-up and in /docs says exactly that, so a transfer into the seeded frozen account
completing is the documented behaviour, not a hole in the magic values.
"""

from __future__ import annotations

from tests.sandbox.test_sandbox_api import signup
from tests.tools.api import PartnerClient


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def _ledger(pc: PartnerClient, account_id: str) -> str:
    return pc.get(f"/v1/accounts/{account_id}/balances").json()["ledger"]["amount"]


def test_frozen_accepts_credits_refuses_debits_and_the_table_says_so(http):
    body = signup(http).json()
    pc = PartnerClient(http=http, client_id=body["client_id"], partner_id=body["partner_id"],
                       tenant_id=body["tenant_id"], secret=body["client_secret"])
    rows = {row["input"]: row for row in body["seeded"]["accounts"]["magic_values"]}
    frozen_row = rows["account number ending 0003"]
    assert frozen_row["failure_code"] == "account_frozen"
    assert "debits fail, credits succeed" in frozen_row["outcome"]
    assert "refuses debits and accepts credits" in frozen_row["description"]
    assert "payroll item to a card ending 0003 is refused by the receiving bank" in \
        frozen_row["description"]
    closed_row = rows["account number ending 0002"]
    assert "debits and credits fail" in closed_row["outcome"]
    described = http.get("/openapi.json").json()["info"]["description"]
    assert frozen_row["description"] in described and closed_row["description"] in described
    # Payroll's own table (what its receiving bank answers) agrees.
    assert "| card number ending 0003 | item fails | account_frozen |" in described

    seeded = body["seeded"]["accounts"]["accounts"]
    operating, frozen, closed = (seeded[k]["id"] for k in ("operating", "frozen", "closed"))
    assert (seeded["frozen"]["status"], seeded["closed"]["status"]) == ("frozen", "closed")
    assert seeded["frozen"]["account_number"].endswith("0003")
    before = _ledger(pc, frozen)

    into = pc.post("/v1/transfers", {"from_account_id": operating, "to_account_id": frozen,
                                     "amount": _money("25.00")})
    assert into.status_code == 201 and into.json()["status"] == "completed", into.text
    assert _ledger(pc, frozen) == f"{float(before) + 25:.2f}"

    out = pc.post("/v1/transfers", {"from_account_id": frozen, "to_account_id": operating,
                                    "amount": _money("10.00")})
    assert out.status_code == 201, out.text
    assert (out.json()["status"], out.json()["failure_code"]) == ("failed", "account_frozen")
    assert _ledger(pc, frozen) == f"{float(before) + 25:.2f}"  # nothing moved

    for payer, payee in ((operating, closed), (closed, operating)):
        refused = pc.post("/v1/transfers", {"from_account_id": payer, "to_account_id": payee,
                                            "amount": _money("1.00")})
        assert (refused.json()["status"], refused.json()["failure_code"]) == \
            ("failed", "account_closed"), refused.text
