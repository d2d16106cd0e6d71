"""Public representations of chain credit rows: the API responses and the events' data.

One function per resource, used by the routers and by `gateway.events.publish`, so that a
webhook carries exactly what a GET returns. Nothing here holds personal data: members are
enterprises, and accounts are referred to by their ledger ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.clock import to_rfc3339
from gateway.money import Money
from products.chain_credit import schemas
from products.chain_credit.models import (
    ChainMember,
    CreditFacility,
    FinancingApplication,
    FinancingQuote,
    PayablesCertificate,
    RiskEvent,
)
from products.chain_credit.pricing import format_rate


def _ts(value: datetime | None) -> str | None:
    return to_rfc3339(value) if value is not None else None


def member_out(member: ChainMember) -> schemas.MemberOut:
    return schemas.MemberOut(
        id=member.id, core_enterprise_id=member.chain_id, role=member.role, name=member.name,
        uscc=member.uscc, settlement_account_id=member.settlement_account_id, tier=member.tier,
        upstream_member_id=member.upstream_member_id, status=member.status,
        created_at=to_rfc3339(member.created_at))


def facility_out(facility: CreditFacility) -> schemas.FacilityOut:
    return schemas.FacilityOut(
        id=facility.id, core_enterprise_id=facility.core_enterprise_id,
        limit=Money.of(facility.limit_fen), outstanding=Money.of(facility.outstanding_fen),
        available=Money.of(max(0, facility.limit_fen - facility.outstanding_fen)),
        expires_on=facility.expires_on, guarantee_circle=facility.guarantee_circle,
        discount_rate=format_rate(facility.discount_rate), status=facility.status,
        frozen_reason=facility.frozen_reason, created_at=to_rfc3339(facility.created_at),
        updated_at=to_rfc3339(facility.updated_at))


def certificate_out(cert: PayablesCertificate) -> schemas.CertificateOut:
    return schemas.CertificateOut(
        id=cert.id, facility_id=cert.facility_id, issuer_id=cert.issuer_id, root_id=cert.root_id,
        parent_id=cert.parent_id, depth=cert.depth, holder_type=cert.holder_type,  # type: ignore[arg-type]
        holder_member_id=cert.holder_member_id, amount=Money.of(cert.face_fen),
        maturity_date=cert.maturity_date, status=cert.status,  # type: ignore[arg-type]
        invoice_numbers=list(cert.invoice_numbers), contract_number=cert.contract_number,
        holder_history=[schemas.HolderEntry(**entry) for entry in cert.holder_history],
        created_at=to_rfc3339(cert.created_at), updated_at=to_rfc3339(cert.updated_at),
        accepted_at=_ts(cert.accepted_at), financed_at=_ts(cert.financed_at),
        settled_at=_ts(cert.settled_at))


def quote_out(quote: FinancingQuote) -> schemas.QuoteOut:
    return schemas.QuoteOut(
        id=quote.id, certificate_id=quote.certificate_id, holder_member_id=quote.holder_member_id,
        face=Money.of(quote.face_fen), annual_rate=format_rate(quote.annual_rate), days=quote.days,
        discount=Money.of(quote.discount_fen), net_amount=Money.of(quote.net_fen),
        valid_until=to_rfc3339(quote.valid_until), status=quote.status,
        created_at=to_rfc3339(quote.created_at), accepted_at=_ts(quote.accepted_at))


def application_out(app: FinancingApplication) -> schemas.FinancingApplicationOut:
    factoring = app.kind == "factoring"
    repayment = (app.approved_fen + (app.interest_fen or 0)) if app.approved_fen is not None else None
    return schemas.FinancingApplicationOut(
        id=app.id, kind=app.kind,  # type: ignore[arg-type]
        applicant_id=app.applicant_id, counterparty_member_id=app.counterparty_id,
        invoice_numbers=list(app.references) if factoring else None,
        purchase_order_numbers=None if factoring else list(app.references),
        requested_amount=Money.of(app.requested_fen),
        approved_amount=Money.of(app.approved_fen) if app.approved_fen is not None else None,
        annual_rate=format_rate(app.annual_rate) if app.annual_rate is not None else None,
        due_date=app.due_date,
        interest=Money.of(app.interest_fen) if app.interest_fen is not None else None,
        repayment_amount=Money.of(repayment) if repayment is not None else None,
        status=app.status, decline_reason=app.decline_reason,
        created_at=to_rfc3339(app.created_at), disbursed_at=_ts(app.disbursed_at),
        repaid_at=_ts(app.repaid_at), overdue_at=_ts(app.overdue_at))


def risk_event_out(event: RiskEvent) -> schemas.RiskEventOut:
    return schemas.RiskEventOut(
        id=event.id, core_enterprise_id=event.core_enterprise_id, member_id=event.member_id,
        facility_id=event.facility_id, type=event.type,  # type: ignore[arg-type]
        source=event.source,  # type: ignore[arg-type]
        description=event.description, related_resource_id=event.related_resource_id,
        froze_facility=event.froze_facility, created_at=to_rfc3339(event.created_at))


def data(model: Any) -> dict[str, Any]:
    """An event's data: the JSON form of a public representation."""
    return model.model_dump(mode="json")
