"""Sandbox seed for accounts: a few funded accounts to transfer between, and one account for
each sandbox magic status, so that a developer can try every outcome at once.

| key | account | balance |
| --- | --- | --- |
| `operating` | an enterprise's settlement account | 1,000,000.00 |
| `supplier` | another enterprise's settlement account | 50,000.00 |
| `person` | a person's account | 5,000.00 |
| `virtual` | a virtual sub-account of `operating` | 0.00 |
| `closed` | number ending 0002: closed | 0.00 |
| `frozen` | number ending 0003: frozen (credits arrive, debits fail) | 1,000.00 |

Deterministic for the sandbox's seed (numbers come from `fake.rng`); registered with the
sandbox seeder at import, before the other products' seeders.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from products.accounts import magic, service
from products.accounts.models import Account

FUNDING_FEN = {"operating": 1_000_000_00, "supplier": 50_000_00, "person": 5_000_00,
               "frozen": 1_000_00}


def _summary(account: Account) -> dict[str, Any]:
    return {"id": account.id, "kind": account.kind, "status": account.status,
            "owner": account.owner_display_name, "account_number": account.account_number_masked}


def seed_accounts(session: Session, tenant_id: str, fake: Any) -> dict[str, Any]:
    """Create the accounts sandbox data of a tenant; returns what was created (masked)."""
    rng = fake.rng
    made: dict[str, Account] = {}

    def enterprise(key: str, suffix: str = "") -> None:
        company = fake.enterprise()
        made[key] = service.create_account(
            session, tenant_id, kind="settlement", owner_type="enterprise",
            owner_name=company["name"], owner_uscc=company["uscc"], label=key,
            account_number=service.generate_account_number("enterprise", suffix=suffix, rng=rng))

    enterprise("operating")
    enterprise("supplier")
    person = fake.person()
    made["person"] = service.create_account(
        session, tenant_id, kind="settlement", owner_type="person", owner_name=person["name"],
        owner_id_number=person["id_number"], label="person",
        account_number=service.generate_account_number("person", rng=rng))
    made["virtual"] = service.create_account(session, tenant_id, kind="virtual",
                                             parent_account_id=made["operating"].id,
                                             label="virtual",
                                             account_number=service.generate_account_number(
                                                 "enterprise", rng=rng))
    for key, suffix in (("closed", "0002"), ("frozen", "0003")):  # the magic statuses
        enterprise(key, suffix)
    for key, fen in FUNDING_FEN.items():
        service.deposit(session, tenant_id, made[key].id, fen,
                        journal_ref=f"sandbox-seed:accounts:{made[key].id}",
                        memo="Sandbox funding")
    return {"accounts": {key: _summary(account) for key, account in made.items()},
            "magic_values": magic.table()}


def _register() -> None:
    try:
        from sandbox.seed import register_seeder
    except ImportError:  # pragma: no cover - the sandbox package is part of the distribution
        return
    register_seeder("accounts", seed_accounts, order=10)


_register()
