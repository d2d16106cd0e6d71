"""The sandbox's own regulator: supervised escrow tried self-serve, from sign-up to an executed
release that needed two regulator users, confined to the tenant that made it."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from gateway.identifiers import generate_uscc
from gateway.oauth.models import OAuthClient
from gateway.tenancy import Partner
from products.egov.models import EscrowRegulator, EscrowScheme
from tests.products.egov.helpers import RNG, open_account
from tests.tools.api import PartnerClient, new_partner_client, problem, sandbox_signup

SCOPES_OUT = ["egov:supervise"]


def _unlimited(app: Any, client_id: str) -> None:
    """Sign-up's clients are on the sandbox rate plan; a test's burst of calls is not."""
    with app.state.database.transaction() as session:
        session.execute(update(OAuthClient).where(OAuthClient.id == client_id)
                        .values(rate_plan="unlimited"))


def signup(app: Any, http: Any, name: str = "Acme 教育平台") -> tuple[PartnerClient, dict[str, Any]]:
    return sandbox_signup(app, http, name=name)


def regulator_user(app: Any, http: Any, developer: PartnerClient,
                   **body: Any) -> tuple[PartnerClient, dict[str, Any]]:
    response = developer.post("/sandbox/v1/regulators", body or None)
    assert response.status_code == 201, response.text
    made = response.json()
    _unlimited(app, made["client_id"])
    with app.state.database.transaction() as session:
        tenant_id = session.scalar(select(OAuthClient.tenant_id)
                                   .where(OAuthClient.id == made["client_id"]))
    return PartnerClient(http=http, client_id=made["client_id"],
                         partner_id=made["regulator"]["partner_id"], tenant_id=str(tenant_id),
                         secret=made["client_secret"], scopes=made["scopes"]), made


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def tuition_scheme(pc: PartnerClient, regulator_partner_id: str, beneficiary: str,
                   reference: str = "JG-2026-001", approvals: int = 2) -> Any:
    return pc.post("/v1/egov/escrow-schemes", {
        "reference": reference, "name": "某培训学校预收费监管", "regulator_partner_id": regulator_partner_id,
        "holder_name": "某培训学校有限公司", "holder_uscc": generate_uscc(RNG),
        "beneficiary_account_id": beneficiary,
        "policy": {"kind": "tuition", "required_approvals": approvals, "max_classes": 48}})


def balance(pc: PartnerClient, account_id: str) -> str:
    response = pc.get(f"/v1/accounts/{account_id}/balances")
    assert response.status_code == 200, response.text
    return response.json()["ledger"]["amount"]


def decide(regulator: PartnerClient, instruction_id: str, approver: str, **kwargs: Any) -> Any:
    return regulator.post(f"/v1/egov/supervision/release-instructions/{instruction_id}/decisions",
                          {"approver_id": approver, "approver_name": f"审批人{approver}",
                           "decision": "approve", "comment": "同意"}, **kwargs)


def test_sign_up_to_a_release_approved_by_two_regulator_users(app, http):
    developer, body = signup(app, http)
    guide = body["seeded"]["egov"]["escrow_regulator"]
    assert guide["set_up"] == "POST /sandbox/v1/regulators"

    first, made = regulator_user(app, http, developer, name="审批人 张科长")
    assert made["created"] is True and made["scopes"] == SCOPES_OUT
    assert made["client_name"] == "审批人 张科长"
    assert made["token_endpoint"].endswith("/oauth/token")
    regulator = made["regulator"]
    assert set(regulator["kinds"]) == {"tuition", "presale_housing", "bid_deposit", "court_funds"}
    second, again = regulator_user(app, http, developer)
    assert again["created"] is False and again["regulator"] == regulator
    assert again["client_id"] != made["client_id"]
    registered = developer.get("/v1/events?type=egov_regulator.registered").json()["data"]
    assert [e["resource"]["id"] for e in registered] == [regulator["partner_id"]]  # once
    me = second.get("/v1/me").json()
    assert me["environment"] == "sandbox" and me["scopes"] == SCOPES_OUT
    assert me["partner_id"] == regulator["partner_id"]

    accounts = body["seeded"]["accounts"]["accounts"]
    family, school = accounts["operating"]["id"], accounts["supplier"]["id"]
    family_before, school_before = balance(developer, family), balance(developer, school)
    created = tuition_scheme(developer, regulator["partner_id"], school)
    assert created.status_code == 201, created.text
    scheme = created.json()
    assert scheme["regulator_partner_id"] == regulator["partner_id"]
    student = developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts", {
        "reference": "STU-001", "holder_name": "王小明", "total_classes": 10,
        "tuition": money("3000.00")})
    assert student.status_code == 201, student.text
    sub = student.json()
    paid = developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}/deposits",
                          {"from_account_id": family, "amount": money("3000.00")})
    assert paid.status_code == 201, paid.text

    asked = developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions",
                           {"sub_account_id": sub["id"], "kind": "release", "classes": 4,
                            "reason": "第1-4课时"})
    assert asked.status_code == 201, asked.text
    instruction = asked.json()
    assert instruction["status"] == "pending_approval" and instruction["required_approvals"] == 2

    # Both regulator users see it; the first approval waits for the second.
    for user in (first, second):
        listed = user.get("/v1/egov/supervision/release-instructions?status=pending_approval")
        assert [i["id"] for i in listed.json()["data"]] == [instruction["id"]]
    once = decide(first, instruction["id"], "zhang")
    assert once.status_code == 200 and once.json()["status"] == "pending_approval", once.text
    problem(decide(first, instruction["id"], "zhang-again"), 409, "duplicate_approver")
    assert balance(developer, school) == school_before
    done = decide(second, instruction["id"], "li")
    assert done.status_code == 200, done.text
    executed = done.json()
    assert executed["status"] == "executed" and executed["journal_entry_id"]
    assert [a["client_id"] for a in executed["approvals"]] == [first.client_id, second.client_id]

    # The money moved exactly once: 4 of 10 classes to the school, the rest still held.
    assert _fen(balance(developer, school)) - _fen(school_before) == 120000
    assert _fen(family_before) - _fen(balance(developer, family)) == 300000
    state = developer.get(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}").json()
    assert state["consumed_classes"] == 4 and state["balance"] == money("1800.00")
    seen = first.get(f"/v1/egov/supervision/escrow-schemes/{scheme['id']}")
    assert seen.status_code == 200 and seen.json()["balance"] == money("1800.00")


def _fen(amount: str) -> int:
    whole, _, cents = amount.partition(".")
    return int(whole) * 100 + int(cents)


def test_a_sandbox_regulator_serves_its_own_tenant_only(app, http):
    """No other tenant, sandbox or production, may name it; it sees its tenant's schemes only,
    and another tenant's regulator none of them."""
    alice, alice_body = signup(app, http, "Alice 平台")
    bob, bob_body = signup(app, http, "Bob 平台")
    alice_reg, made = regulator_user(app, http, alice)
    bob_reg, bob_made = regulator_user(app, http, bob)
    assert made["regulator"]["partner_id"] != bob_made["regulator"]["partner_id"]
    alice_school = alice_body["seeded"]["accounts"]["accounts"]["supplier"]["id"]
    bob_school = bob_body["seeded"]["accounts"]["accounts"]["supplier"]["id"]

    mine = tuition_scheme(alice, alice_reg.partner_id, alice_school)
    assert mine.status_code == 201, mine.text
    problem(tuition_scheme(bob, alice_reg.partner_id, bob_school), 422,
            "regulator_not_recognised")
    assert bob.get("/v1/egov/escrow-schemes").json()["data"] == []
    theirs = tuition_scheme(bob, bob_reg.partner_id, bob_school)
    assert theirs.status_code == 201, theirs.text

    assert [s["id"] for s in alice_reg.get("/v1/egov/supervision/escrow-schemes").json()["data"]] \
        == [mine.json()["id"]]
    assert [s["id"] for s in bob_reg.get("/v1/egov/supervision/escrow-schemes").json()["data"]] \
        == [theirs.json()["id"]]
    problem(alice_reg.get(f"/v1/egov/supervision/escrow-schemes/{theirs.json()['id']}"), 404,
            "escrow_scheme_not_found")

    # Production: the route does not exist there, and no production scheme may name it.
    prod = new_partner_client(app, http, environment="production")
    problem(prod.post("/sandbox/v1/regulators", {}), 403, "sandbox_only")
    beneficiary = open_account(app, prod.tenant_id)
    problem(tuition_scheme(prod, alice_reg.partner_id, beneficiary), 422,
            "regulator_not_recognised")
    with app.state.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(EscrowScheme)
                              .where(EscrowScheme.tenant_id == prod.tenant_id)) == 0


def test_only_the_developers_credentials_make_regulators(app, http):
    developer, _ = signup(app, http)
    regulator, _ = regulator_user(app, http, developer)
    # A regulator user holds egov:supervise only: it cannot make itself more users.
    problem(regulator.post("/sandbox/v1/regulators", {}), 403, "insufficient_scope")
    reader = new_partner_client(app, http, scopes=["accounts:read", "egov:read"])
    problem(reader.post("/sandbox/v1/regulators", {}), 403, "insufficient_scope")
    problem(http.post("/sandbox/v1/regulators", json={}), 401)

    before = _clients(app, regulator.partner_id)
    problem(developer.post("/sandbox/v1/regulators", {"name": ""}), 422)
    problem(developer.post("/sandbox/v1/regulators", {"name": "x" * 121}), 422)
    problem(developer.post("/sandbox/v1/regulators", {"scopes": ["payroll:supervise"]}), 422)
    problem(developer.post("/sandbox/v1/regulators", [1, 2]), 422)
    assert _clients(app, regulator.partner_id) == before


def _clients(app: Any, partner_id: str) -> int:
    with app.state.database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(OAuthClient)
                                  .where(OAuthClient.partner_id == partner_id)) or 0)


def test_a_reset_keeps_the_regulator_and_its_users(app, http):
    """The regulator, its recognition and its clients are kept (its id stays configured); the
    schemes and instructions go, and the regulator users' idempotency answers about them too."""
    developer, body = signup(app, http)
    first, made = regulator_user(app, http, developer)
    second, _ = regulator_user(app, http, developer)
    school = body["seeded"]["accounts"]["accounts"]["supplier"]["id"]
    family = body["seeded"]["accounts"]["accounts"]["operating"]["id"]
    scheme = tuition_scheme(developer, first.partner_id, school, approvals=1).json()
    sub = developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts", {
        "reference": "STU-9", "holder_name": "李四", "total_classes": 2,
        "tuition": money("200.00")}).json()
    developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/sub-accounts/{sub['id']}/deposits",
                   {"from_account_id": family, "amount": money("200.00")})
    ins = developer.post(f"/v1/egov/escrow-schemes/{scheme['id']}/release-instructions",
                         {"sub_account_id": sub["id"], "kind": "release", "classes": 1}).json()
    decided = decide(first, ins["id"], "zhang", idempotency_key="decision-1")
    assert decided.status_code == 200 and decided.json()["status"] == "executed", decided.text

    reset = developer.post("/sandbox/v1/reset")
    assert reset.status_code == 200, reset.text
    assert reset.json()["seeded"]["egov"]["escrow_regulator"]["set_up"] == "POST /sandbox/v1/regulators"

    problem(developer.get(f"/v1/egov/escrow-schemes/{scheme['id']}"), 404)
    for user in (first, second):  # their credentials still work; nothing left to supervise
        assert user.get("/v1/egov/supervision/escrow-schemes").json()["data"] == []
    # The same decision sent again runs against the reset data instead of replaying.
    problem(decide(first, ins["id"], "zhang", idempotency_key="decision-1"), 404,
            "release_instruction_not_found")
    again = developer.post("/sandbox/v1/regulators", {})
    assert again.status_code == 201 and again.json()["created"] is False
    assert again.json()["regulator"] == made["regulator"]
    assert tuition_scheme(developer, first.partner_id, school).status_code == 201
    with app.state.database.transaction() as session:
        assert session.get(Partner, first.partner_id).partner_type == "sandbox_regulator"
        assert session.get(EscrowRegulator, first.partner_id) is not None


def test_first_calls_at_once_make_one_regulator(app, http):
    """Two developers' calls racing to make the regulator: one regulator, two users."""
    developer, _ = signup(app, http)
    answers: list[Any] = []

    def call() -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            pc = PartnerClient(http=client, client_id=developer.client_id,
                               partner_id=developer.partner_id, tenant_id=developer.tenant_id,
                               secret=developer.secret)
            answers.append(pc.post("/sandbox/v1/regulators", {}))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
    made = [a.json() for a in answers]
    assert made[0]["regulator"] == made[1]["regulator"]
    assert sorted(m["created"] for m in made) == [False, True]
    assert _clients(app, made[0]["regulator"]["partner_id"]) == 2
