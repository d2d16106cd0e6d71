"""Sandbox seed for payroll: a construction project with its supervised wage account (funded by
the developer) and five real-name registered workers, so that a developer can submit a wage
batch from the wage account in one call; plus the payroll magic values.

`seed_payroll(session, tenant_id, fake)` is registered with the sandbox seeder at import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from gateway.money import MoneyIn
from gateway.tenancy import Principal, clock_for
from products.accounts import service as accounts
from products.payroll import receiving, wage
from products.payroll.schemas import FundingIn, WageProjectIn, WorkerIn

SEED_ACTOR = "sandbox-seed"
DEVELOPER_FUNDING_FEN = 5_000_000_00
WAGE_FUNDING = "500000.00"
TEAMS = ("钢筋班", "木工班", "混凝土班", "架子工班", "水电班")


def seed_payroll(session: Session, tenant_id: str, fake: Any) -> dict[str, Any]:
    """Create the payroll sandbox data of a tenant; returns a summary (personal data masked)."""
    principal = Principal(client_id=SEED_ACTOR, partner_id="", tenant_id=tenant_id,
                          environment="sandbox", scopes=frozenset())
    developer = fake.enterprise()
    contractor = fake.enterprise()
    account = accounts.create_account(session, tenant_id, kind="settlement",
                                      owner_type="enterprise", owner_name=developer["name"],
                                      owner_uscc=developer["uscc"], label="payroll developer",
                                      account_number=accounts.generate_account_number(
                                          "enterprise", rng=fake.rng))
    accounts.deposit(session, tenant_id, account.id, DEVELOPER_FUNDING_FEN,
                     journal_ref=f"sandbox-seed:payroll:{account.id}", memo="Sandbox funding")
    project = wage.create_project(session, principal, WageProjectIn(
        project_code="SANDBOX-WAGE-01", name="示例保障房项目", region_code="310115",
        contractor_name=contractor["name"], contractor_uscc=contractor["uscc"],
        developer_name=developer["name"], developer_uscc=developer["uscc"],
        developer_account_id=account.id, payday=10, arrears_grace_days=3, balance_check_days=3))
    wage.fund_project(session, principal, project.id, FundingIn(
        amount=MoneyIn(amount=WAGE_FUNDING, currency="CNY"), memo="人工费用拨付"))
    start = clock_for(session, tenant_id).today() - timedelta(days=30)
    workers = []
    for team in TEAMS:
        person = fake.person()
        workers.append(wage.register_worker(session, principal, project.id, WorkerIn(
            name=person["name"], id_number=person["id_number"], card_number=person["card_number"],
            team=team, contract_start=start)))
    return {
        "wage_project": {"id": project.id, "project_code": project.project_code,
                         "wage_account_id": project.wage_account_id, "payday": project.payday,
                         "developer_account_id": account.id},
        "workers": [wage.worker_view(w) for w in workers],
        "magic_values": receiving.table(),
    }


def _register() -> None:
    try:
        from sandbox.seed import register_seeder
    except ImportError:  # pragma: no cover - the sandbox package is part of the distribution
        return
    register_seeder("payroll", seed_payroll, order=40)


_register()
