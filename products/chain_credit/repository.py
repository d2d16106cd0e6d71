"""Queries of the chain credit tables: tenant-scoped look-ups, row locks and cursor pages.

Every query filters by the caller's tenant, so another tenant's id is simply "not found".
Locked reads use `populate_existing`, so a row already in the session is refreshed with the
values read under the lock (on PostgreSQL a waiter sees the winner's committed change).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Select, bindparam, func, select, true
from sqlalchemy.orm import Session

from gateway.bulk import session_select
from gateway.db import advisory_lock, advisory_locks  # noqa: F401  (moved; the service uses them here)
from gateway.pagination import decode_cursor, encode_cursor, page  # noqa: F401  (one pagination)
from products.chain_credit.errors import (
    ApplicationNotFound,
    CertificateNotFound,
    FacilityNotFound,
    MemberNotFound,
    QuoteNotFound,
)
from products.chain_credit.models import (
    CertificateInvoice,
    ChainMember,
    CreditFacility,
    FinancingApplication,
    FinancingQuote,
    PayablesCertificate,
)
from products.chain_credit.states import LENT_APPLICATION_STATES

T = TypeVar("T")
MAX_CURSOR = 60




def _locked(stmt: Select[Any]) -> Select[Any]:
    return stmt.with_for_update().execution_options(populate_existing=True)


def member(session: Session, tenant_id: str, member_id: str) -> ChainMember | None:
    return session.scalars(select(ChainMember).where(
        ChainMember.tenant_id == tenant_id, ChainMember.id == member_id)).first()


class MemberTerms(NamedTuple):
    """What an action needs of the members it names, read on the driver (`member_terms`)."""

    id: str
    status: str
    chain_id: str
    role: str
    tier: int


def member_terms(session: Session, tenant_id: str, ids: set[str]) -> dict[str, MemberTerms]:
    """The tenant's members among `ids`, in one driver read: every certificate action reads
    its acting member (and a transfer its recipient), and the ORM's read costs several times
    more."""
    wanted = sorted(i for i in ids if isinstance(i, str) and len(i) <= 60)
    if not wanted:
        return {}
    where = f"tenant_id = :tenant AND id IN ({', '.join(f':m{i}' for i in range(len(wanted)))})"
    rows = session_select(session, ChainMember.__table__, MemberTerms._fields, where,
                          {"tenant": tenant_id, **{f"m{i}": m for i, m in enumerate(wanted)}})
    return {row.id: row for row in map(MemberTerms._make, rows)}


def members(session: Session, tenant_id: str, ids: set[str]) -> dict[str, ChainMember]:
    if not ids:
        return {}
    rows = session.scalars(select(ChainMember).where(
        ChainMember.tenant_id == tenant_id, ChainMember.id.in_(sorted(ids))))
    return {m.id: m for m in rows}


def get_member(session: Session, tenant_id: str, member_id: str) -> ChainMember:
    found = member(session, tenant_id, member_id)
    if found is None:
        raise MemberNotFound(f"No chain member {member_id} in this tenant.")
    return found


def facility_of(session: Session, tenant_id: str, core_enterprise_id: str, *,
                lock: bool = False) -> CreditFacility | None:
    stmt = select(CreditFacility).where(CreditFacility.tenant_id == tenant_id,
                                        CreditFacility.core_enterprise_id == core_enterprise_id)
    return session.scalars(_locked(stmt) if lock else stmt).first()


def get_facility(session: Session, tenant_id: str, facility_id: str, *,
                 lock: bool = False) -> CreditFacility:
    stmt = select(CreditFacility).where(CreditFacility.tenant_id == tenant_id,
                                        CreditFacility.id == facility_id)
    found = session.scalars(_locked(stmt) if lock else stmt).first()
    if found is None:
        raise FacilityNotFound(f"No credit facility {facility_id} in this tenant.")
    return found


# Built once: every certificate action reads its certificate, and building the statement (and
# its cache key) anew each time costs about as much as running it.
_CERTIFICATE = select(PayablesCertificate).where(
    PayablesCertificate.tenant_id == bindparam("tenant"), PayablesCertificate.id == bindparam("id"))
_CERTIFICATE_LOCKED = _locked(_CERTIFICATE)


def get_certificate(session: Session, tenant_id: str, cert_id: str, *,
                    lock: bool = False) -> PayablesCertificate:
    found = session.scalars(_CERTIFICATE_LOCKED if lock else _CERTIFICATE,
                            {"tenant": tenant_id, "id": cert_id}).first()
    if found is None:
        raise CertificateNotFound(f"No payables certificate {cert_id} in this tenant.")
    return found


def tree(session: Session, tenant_id: str, root_id: str, *, statuses: frozenset[str] | None = None,
         lock: bool = False) -> list[PayablesCertificate]:
    """Every node of a certificate's tree (or those in `statuses`), in id order."""
    stmt = select(PayablesCertificate).where(PayablesCertificate.tenant_id == tenant_id,
                                             PayablesCertificate.root_id == root_id)
    if statuses is not None:
        stmt = stmt.where(PayablesCertificate.status.in_(sorted(statuses)))
    stmt = stmt.order_by(PayablesCertificate.id)
    return list(session.scalars(_locked(stmt) if lock else stmt))


def get_quote(session: Session, tenant_id: str, quote_id: str, *,
              lock: bool = False) -> FinancingQuote:
    stmt = select(FinancingQuote).where(FinancingQuote.tenant_id == tenant_id,
                                        FinancingQuote.id == quote_id)
    found = session.scalars(_locked(stmt) if lock else stmt).first()
    if found is None:
        raise QuoteNotFound(f"No financing quote {quote_id} in this tenant.")
    return found


def open_quote(session: Session, tenant_id: str, cert_id: str, *,
               lock: bool = False) -> FinancingQuote | None:
    stmt = select(FinancingQuote).where(FinancingQuote.tenant_id == tenant_id,
                                        FinancingQuote.certificate_id == cert_id,
                                        FinancingQuote.status == "open")
    return session.scalars(_locked(stmt) if lock else stmt).first()


def get_application(session: Session, tenant_id: str, app_id: str, *,
                    lock: bool = False) -> FinancingApplication:
    stmt = select(FinancingApplication).where(FinancingApplication.tenant_id == tenant_id,
                                              FinancingApplication.id == app_id)
    found = session.scalars(_locked(stmt) if lock else stmt).first()
    if found is None:
        raise ApplicationNotFound(f"No financing application {app_id} in this tenant.")
    return found


def canonical_reference(column: Any) -> Any:
    """An invoice or purchase-order number column as compared: upper-case, trimmed. The API
    stores them so (`schemas.FinancedReference`), but one stored before it did (`inv-1`) is the
    same document as `INV-1`."""
    return func.upper(func.trim(column))


def invoices_backing_certificates(session: Session, tenant_id: str, numbers: list[str], *,
                                  issuer_id: str | None = None) -> set[str]:
    """Which of `numbers` (canonical: upper-case, trimmed) back a certificate of the tenant (or
    of one issuer), whatever the case they were stored in; returned canonical. A rejected or
    cancelled certificate has released its invoices (`CertificateInvoice`)."""
    number = canonical_reference(CertificateInvoice.invoice_number)
    stmt = select(number).where(CertificateInvoice.tenant_id == tenant_id, number.in_(numbers))
    if issuer_id is not None:
        stmt = stmt.where(CertificateInvoice.issuer_id == issuer_id)
    return set(session.scalars(stmt))


def references_of_applications(session: Session, tenant_id: str, kind: str, references: list[str],
                               statuses: frozenset[str], *, exclude_id: str | None = None) -> set[str]:
    """Which of `references` (invoice or purchase-order numbers, canonical) an application of
    `kind` in `statuses` cites, other than `exclude_id`, whatever the case it stored them in;
    matched in the database, element by element of the JSON list (PostgreSQL
    `json_array_elements_text`, SQLite `json_each`: both yield the elements as text), and
    returned canonical."""
    a = FinancingApplication
    elements = (func.json_array_elements_text if session.get_bind().dialect.name == "postgresql"
                else func.json_each)(a.references).table_valued("value")
    value = canonical_reference(elements.c.value)
    stmt = (select(value).select_from(a).join(elements, true())
            .where(a.tenant_id == tenant_id, a.kind == kind, a.status.in_(sorted(statuses)),
                   value.in_(references)))
    if exclude_id is not None:
        stmt = stmt.where(a.id != exclude_id)
    return set(session.scalars(stmt))


def applications_outstanding_fen(session: Session, tenant_id: str, chain_id: str) -> int:
    """Principal of the chain's factoring and order financing disbursed and not yet repaid."""
    a = FinancingApplication
    return int(session.scalar(select(func.coalesce(func.sum(a.approved_fen), 0)).where(
        a.tenant_id == tenant_id, a.chain_id == chain_id,
        a.status.in_(sorted(LENT_APPLICATION_STATES)))) or 0)
