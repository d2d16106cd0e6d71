"""Chain credit's scheduled work, each on the tenant's own clock (the sandbox test clock):

- `chain_credit.maturity`: certificates on or after their maturity date are paid by the core
  enterprise (or go overdue); unaccepted ones are cancelled. Overdue trees are retried.
- `chain_credit.quotes`: lapsed financing quotes expire and free their certificates.
- `chain_credit.facilities`: facilities past their expiry date become expired.
- `chain_credit.repayments`: factoring / order-financing repayments fall due (or go overdue).

Each tenant is served on its own (`gateway.jobs.for_each_tenant`): its clock and due items are
read in one short transaction, so a tenant whose run fails is logged with its id and left to
the next run while the tenants after it are served. Each item is then handled in its own short
transaction under row locks (a failing item is logged and retried next run; the tenant's other
items go on), so several workers may run at once and a crash at any point is repaired by the
next run (journal references make every payment happen once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from gateway.clock import business_date
from gateway.db import Database
from gateway.jobs import for_each_tenant, register_job
from gateway.tenancy import clock_for
from products.chain_credit import repository, service
from products.chain_credit.models import (
    CreditFacility,
    FinancingApplication,
    FinancingQuote,
    PayablesCertificate,
)
from products.chain_credit.states import MATURING_STATES

log = logging.getLogger("quanlian.chain_credit")


def _each(database: Database, tenant_id: str, items: list[str], now: datetime,
          fn: Callable[..., object]) -> int:
    done = 0
    for item_id in items:
        try:
            with database.transaction() as session:
                if fn(session, tenant_id, item_id, now):
                    done += 1
        except Exception:  # one bad item must not stop the others; it is retried next run
            log.exception("chain credit job failed on %s of tenant %s", item_id, tenant_id)
    return done


def _per_tenant(database: Database, tenants: Select[Any],
                due: Callable[[Session, str, datetime], list[str]],
                fn: Callable[..., object], job: str) -> int:
    """Each tenant the query finds on its own: its clock and its due items read in one short
    transaction, then each item in its own (`_each`)."""
    def run(tenant_id: str) -> int:
        with database.transaction() as session:
            now = clock_for(session, tenant_id).now()
            items = due(session, tenant_id, now)
        return _each(database, tenant_id, items, now, fn)

    return for_each_tenant(database, tenants, run, job, logger=log)


def mature_certificates(database: Database) -> int:
    """Settle (or mark overdue) every certificate tree whose maturity date has come."""
    statuses = sorted(MATURING_STATES | {"issued"})

    def due(session: Session, tenant_id: str, now: datetime) -> list[str]:
        today: date = business_date(now)
        return list(session.scalars(select(PayablesCertificate.root_id).where(
            PayablesCertificate.tenant_id == tenant_id,
            PayablesCertificate.status.in_(statuses),
            PayablesCertificate.maturity_date <= today).distinct()))

    return _per_tenant(database, select(PayablesCertificate.tenant_id).where(
        PayablesCertificate.status.in_(statuses)), due, service.mature_root, "chain credit maturity")


def expire_quotes(database: Database) -> int:
    """Expire open financing quotes whose validity has passed."""
    def due(session: Session, tenant_id: str, now: datetime) -> list[str]:
        return list(session.scalars(select(FinancingQuote.id).where(
            FinancingQuote.tenant_id == tenant_id, FinancingQuote.status == "open",
            FinancingQuote.valid_until <= now)))

    return _per_tenant(database, select(FinancingQuote.tenant_id).where(
        FinancingQuote.status == "open"), due, service.expire_quote, "financing quote expiry")


def _expire_facility(session: Session, tenant_id: str, facility_id: str, at: datetime) -> bool:
    facility = repository.get_facility(session, tenant_id, facility_id, lock=True)
    return service.expire_facility_if_due(session, facility, at)


def expire_facilities(database: Database) -> int:
    """Mark facilities expired once their tenant's business date passes the expiry date."""
    def due(session: Session, tenant_id: str, now: datetime) -> list[str]:
        return list(session.scalars(select(CreditFacility.id).where(
            CreditFacility.tenant_id == tenant_id, CreditFacility.status != "expired",
            CreditFacility.expires_on < business_date(now))))

    return _per_tenant(database, select(CreditFacility.tenant_id).where(
        CreditFacility.status != "expired"), due, _expire_facility, "credit facility expiry")


def collect_repayments(database: Database) -> int:
    """Collect factoring / order-financing repayments on their due dates (overdue ones again)."""
    statuses = ["disbursed", "overdue"]

    def due(session: Session, tenant_id: str, now: datetime) -> list[str]:
        return list(session.scalars(select(FinancingApplication.id).where(
            FinancingApplication.tenant_id == tenant_id,
            FinancingApplication.status.in_(statuses),
            FinancingApplication.due_date <= business_date(now))))

    return _per_tenant(database, select(FinancingApplication.tenant_id).where(
        FinancingApplication.status.in_(statuses)), due, service.collect_repayment,
        "repayment collection")


def register() -> None:
    register_job("chain_credit.maturity", mature_certificates, interval=1.0)
    register_job("chain_credit.quotes", expire_quotes, interval=5.0)
    register_job("chain_credit.facilities", expire_facilities, interval=60.0)
    register_job("chain_credit.repayments", collect_repayments, interval=1.0)
