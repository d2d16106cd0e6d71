"""Sandbox seed for e-government: nothing is seeded, but the summary says where to start.

A portal's profile is its own configuration (its payee account and web origins), and escrow
needs a regulator the bank recognises, which a developer cannot be. The summary (shown at
sign-up and after each reset) points to both: `PUT /v1/egov/portal`, and the sandbox's own
regulator (`POST /sandbox/v1/regulators`, `sandbox.regulators`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from products.accounts.models import Account
from products.egov import service


def seed_egov(session: Session, tenant_id: str, fake: Any) -> dict[str, Any]:
    """No rows: what to call first, for payment orders and for supervised escrow. After a
    reset, a kept portal profile whose payee account is gone is pointed at the seeded
    `operating` account (`service.keep_portal_payable`)."""
    operating = session.scalar(select(Account.id).where(Account.tenant_id == tenant_id,
                                                        Account.label == "operating")
                        .order_by(Account.id).limit(1))
    if operating is not None:
        service.keep_portal_payable(session, tenant_id, fallback_account_id=operating,
                                    actor="sandbox-reset")
    return {
        "portal": {
            "set_up": "PUT /v1/egov/portal",
            "description": "Set the payee account (a seeded one, e.g. accounts.operating) and "
                           "the web origins before creating payment orders. A reset keeps it (a "
                           "payee account the reset deleted is replaced by accounts.operating).",
        },
        "escrow_regulator": {
            "set_up": "POST /sandbox/v1/regulators",
            "description": "Makes this sandbox's own regulator, recognised for every kind of "
                           "escrow scheme of this tenant (name regulator.partner_id as the "
                           "scheme's regulator_partner_id), and issues a new regulator client "
                           "(egov:supervise) each call: one regulator user, so call twice for a "
                           "scheme needing two approvals. A reset keeps it and its clients.",
        },
    }


def _register() -> None:
    from sandbox.seed import register_seeder

    register_seeder("egov", seed_egov, order=400)


_register()
