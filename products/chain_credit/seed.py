"""Sandbox seed for chain credit: a core enterprise with a funded settlement account and a credit
facility, and three tiers of suppliers under it, so that a developer can issue, split,
transfer, finance and mature a certificate in a few calls.

`seed_chain_credit(session, tenant_id, fake)` is registered with the sandbox seeder at import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from gateway.tenancy import clock_for
from products.accounts import service as accounts
from products.chain_credit import service

SEED_ACTOR = "sandbox-seed"
CORE_FUNDING_FEN = 50_000_000_00          # 50 million CNY in the core enterprise's account
FACILITY_LIMIT_FEN = 100_000_000_00       # 100 million CNY facility
FACILITY_RATE = "0.0385"
GUARANTEE_CIRCLE = "GC-SANDBOX-01"
# Suppliers per tier: two tier-1, two tier-2 under the first tier-1, one tier-3 under the first
# tier-2 (the usual shape: the chain narrows as it goes up).
TIERS = (2, 2, 1)


def _enterprise(fake: Any, index: int) -> tuple[str, str]:
    if fake is not None and hasattr(fake, "enterprise"):
        enterprise = fake.enterprise()
        return enterprise["name"], enterprise["uscc"]
    import random

    from gateway.identifiers import generate_uscc

    rng = random.Random(index)
    return f"Sandbox Supplier {index}", generate_uscc(rng)


def _account(session: Session, tenant_id: str, name: str, uscc: str) -> str:
    account = accounts.create_account(session, tenant_id, kind="settlement", owner_type="enterprise",
                                      owner_name=name, owner_uscc=uscc, label="chain credit settlement")
    return account.id


def seed_chain_credit(session: Session, tenant_id: str, fake: Any) -> dict[str, Any]:
    """Create the chain credit sandbox data of a tenant; returns a summary of the ids."""
    today = clock_for(session, tenant_id).today()
    counter = 0

    def member(role: str, upstream: str | None) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        name, uscc = _enterprise(fake, counter)
        account_id = _account(session, tenant_id, name, uscc)
        created = service.create_member(session, tenant_id, name=name, uscc=uscc,
                                        settlement_account_id=account_id, role=role,
                                        upstream_member_id=upstream, tier=None, actor=SEED_ACTOR)
        return {"id": created.id, "name": created.name, "tier": created.tier,
                "settlement_account_id": account_id}

    core = member("core_enterprise", None)
    accounts.deposit(session, tenant_id, core["settlement_account_id"], CORE_FUNDING_FEN,
                     journal_ref=f"sandbox-seed:chain-credit:{core['settlement_account_id']}",
                     memo="Sandbox funding of the core enterprise")
    facility = service.grant_facility(
        session, tenant_id=tenant_id, core_enterprise_id=core["id"], limit_fen=FACILITY_LIMIT_FEN,
        expires_on=today + timedelta(days=730), guarantee_circle=GUARANTEE_CIRCLE,
        discount_rate=FACILITY_RATE, actor=SEED_ACTOR)
    tiers: list[list[dict[str, Any]]] = []
    upstream = core["id"]
    for count in TIERS:
        tier = [member("supplier", upstream) for _ in range(count)]
        tiers.append(tier)
        upstream = tier[0]["id"]
    return {"core_enterprise": core, "facility_id": facility.id,
            "suppliers": {f"tier_{i + 1}": tier for i, tier in enumerate(tiers)}}


def _register() -> None:
    try:
        from sandbox.seed import register_seeder
    except ImportError:  # pragma: no cover - the sandbox package is part of the distribution
        return
    register_seeder("chain_credit", seed_chain_credit, order=30)


_register()
