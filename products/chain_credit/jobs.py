"""Chain credit's scheduled work, each on the tenant's own clock (the sandbox test clock):

- `chain_credit.maturity`: certificates on or after their maturity date are paid by the core
  enterprise (or go overdue); unaccepted ones are cancelled. Overdue trees are retried.
- `chain_credit.quotes`: lapsed financing quotes expire and free their certificates.
- `chain_credit.facilities`: facilities past their expiry date become expired.
- `chain_credit.repayments`: factoring / order-financing repayments fall due (or go overdue).

Each item is handled in its own short transaction under row locks, so several workers may run
at once and a crash at any point is repaired by the next run (journal references make every
payment happen once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.clock import business_date
from gateway.db import Database
from gateway.jobs import register_job
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


def _tenant_clocks(database: Database, tenant_ids: list[str]) -> dict[str, datetime]:
    with database.transaction() as session:
        return {t: clock_for(session, t).now() for t in tenant_ids}


def _each(database: Database, items: list[tuple[str, str]], now: dict[str, datetime],
          fn: Callable[..., object]) -> int:
    done = 0
    for tenant_id, item_id in items:
        try:
            with database.transaction() as session:
                if fn(session, tenant_id, item_id, now[tenant_id]):
                    done += 1
        except Exception:  # one bad item must not stop the others; it is retried next run
            log.exception("chain credit job failed on %s", item_id)
    return done


def mature_certificates(database: Database) -> int:
    """Settle (or mark overdue) every certificate tree whose maturity date has come."""
    statuses = sorted(MATURING_STATES | {"issued"})
    with database.transaction() as session:
        tenants = list(session.scalars(select(PayablesCertificate.tenant_id).where(
            PayablesCertificate.status.in_(statuses)).distinct()))
    if not tenants:
        return 0
    now = _tenant_clocks(database, tenants)
    roots: list[tuple[str, str]] = []
    with database.transaction() as session:
        for tenant_id in tenants:
            today: date = business_date(now[tenant_id])
            for root_id in session.scalars(select(PayablesCertificate.root_id).where(
                    PayablesCertificate.tenant_id == tenant_id,
                    PayablesCertificate.status.in_(statuses),
                    PayablesCertificate.maturity_date <= today).distinct()):
                roots.append((tenant_id, root_id))
    return _each(database, roots, now, service.mature_root)


def expire_quotes(database: Database) -> int:
    """Expire open financing quotes whose validity has passed."""
    with database.transaction() as session:
        tenants = list(session.scalars(select(FinancingQuote.tenant_id).where(
            FinancingQuote.status == "open").distinct()))
    if not tenants:
        return 0
    now = _tenant_clocks(database, tenants)
    with database.transaction() as session:
        due = [(t, q) for t in tenants for q in session.scalars(select(FinancingQuote.id).where(
            FinancingQuote.tenant_id == t, FinancingQuote.status == "open",
            FinancingQuote.valid_until <= now[t]))]
    return _each(database, due, now, service.expire_quote)


def _expire_facility(session: Session, tenant_id: str, facility_id: str, at: datetime) -> bool:
    facility = repository.get_facility(session, tenant_id, facility_id, lock=True)
    return service.expire_facility_if_due(session, facility, at)


def expire_facilities(database: Database) -> int:
    """Mark facilities expired once their tenant's business date passes the expiry date."""
    with database.transaction() as session:
        tenants = list(session.scalars(select(CreditFacility.tenant_id).where(
            CreditFacility.status != "expired").distinct()))
    if not tenants:
        return 0
    now = _tenant_clocks(database, tenants)
    with database.transaction() as session:
        due = [(t, f) for t in tenants for f in session.scalars(select(CreditFacility.id).where(
            CreditFacility.tenant_id == t, CreditFacility.status != "expired",
            CreditFacility.expires_on < business_date(now[t])))]
    return _each(database, due, now, _expire_facility)


def collect_repayments(database: Database) -> int:
    """Collect factoring / order-financing repayments on their due dates (overdue ones again)."""
    with database.transaction() as session:
        tenants = list(session.scalars(select(FinancingApplication.tenant_id).where(
            FinancingApplication.status.in_(["disbursed", "overdue"])).distinct()))
    if not tenants:
        return 0
    now = _tenant_clocks(database, tenants)
    with database.transaction() as session:
        due = [(t, a) for t in tenants for a in session.scalars(select(FinancingApplication.id).where(
            FinancingApplication.tenant_id == t,
            FinancingApplication.status.in_(["disbursed", "overdue"]),
            FinancingApplication.due_date <= business_date(now[t])))]
    return _each(database, due, now, service.collect_repayment)


def register() -> None:
    register_job("chain_credit.maturity", mature_certificates, interval=1.0)
    register_job("chain_credit.quotes", expire_quotes, interval=5.0)
    register_job("chain_credit.facilities", expire_facilities, interval=60.0)
    register_job("chain_credit.repayments", collect_repayments, interval=1.0)
