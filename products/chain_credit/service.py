"""Chain credit rules: members, facilities, payables certificates, financing, maturity, risk.

Every function takes a Session, `flush()`es and never commits, raises domain errors from
`products.chain_credit.errors`, and knows nothing of HTTP. Money moves only through
`products.chain_credit.ledger` (the accounts port). Time comes from the tenant's clock.

Concurrency: an action on a certificate locks its row (`SELECT ... FOR UPDATE`) and checks the
holder and the state under the lock, so of two conflicting actions the second sees the first's
result and is refused with `certificate_state_conflict`; issuance and the approval of factoring
or order financing lock the facility row, so `outstanding` never passes the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from gateway.bulk import session_save, session_store
from gateway.clock import start_of_business_day
from gateway.db import insert_unique
from gateway.errors import Problem, ValidationFailed
from gateway.events import publish
from gateway.ids import new_id
from gateway.tenancy import Partner, clock_for, get_tenant, partner_states
from products.chain_credit import ledger, repository, views
from products.chain_credit.errors import (
    ApprovalExceedsRequest,
    CertificateMatured,
    CertificateStateConflict,
    FacilityExists,
    FacilityExpired,
    FacilityFrozen,
    GuaranteeCircleCapExceeded,
    InvalidApplicant,
    InvalidDueDate,
    InvalidFacilityTerms,
    InvalidMaturity,
    InvalidRecipient,
    InvalidSettlementAccount,
    InvalidUpstream,
    InvoiceAlreadyFinanced,
    InvoiceAlreadyUsed,
    LimitExceeded,
    MemberExists,
    MemberInactive,
    NoFacility,
    NotApplicant,
    NotCoreEnterprise,
    NotFinanceable,
    NotHolder,
    NotIssuer,
    NotSameChain,
    PartnerNotInService,
    PurchaseOrderAlreadyFinanced,
    QuoteExpired,
    SplitMismatch,
    UnknownMember,
)
from products.chain_credit.models import (
    CertificateInvoice,
    ChainMember,
    CreditFacility,
    FinancingApplication,
    FinancingQuote,
    PayablesCertificate,
    RiskEvent,
)
from products.chain_credit.pricing import discount_quote, interest_fen, parse_rate
from products.chain_credit.repository import MemberTerms
from products.chain_credit.schemas import canonical_reference
from products.chain_credit.settings import chain_credit_settings
from products.chain_credit.states import (
    APPLICATION_TRANSITIONS,
    CLAIMING_APPLICATION_STATES,
    FACILITY_TRANSITIONS,
    FINANCED_APPLICATION_STATES,
    MATURING_STATES,
    QUOTE_TRANSITIONS,
    UNPAID_CERTIFICATE_STATES,
    check,
    check_certificate,
)

MAX_MATURITY_DAYS = 365
MAX_REPAYMENT_DAYS = 3 * 366
CORE = "core_enterprise"
# An application cites invoices (factoring) or purchase orders (order financing); certificates are
# issued against invoices too, so an invoice factored is an invoice financed.
FACTORING = "factoring"
_REFERENCES: dict[str, tuple[str, str, type[Problem]]] = {  # field, noun, problem
    FACTORING: ("invoice_numbers", "Invoice(s)", InvoiceAlreadyFinanced),
    "order_financing": ("purchase_order_numbers", "Purchase order(s)", PurchaseOrderAlreadyFinanced),
}


def _canonical_references(references: list[str]) -> list[str]:
    """Invoice or purchase-order numbers as stored, compared and locked: upper-case, trimmed
    (`schemas.canonical_reference`; the API stores them so already, this covers other callers
    and the references of applications stored before it did)."""
    return [str(canonical_reference(reference)) for reference in references]


def _now(session: Session, tenant_id: str) -> datetime:
    return clock_for(session, tenant_id).now()


def _today(now: datetime) -> date:
    from gateway.clock import business_date

    return business_date(now)


# --- members -----------------------------------------------------------------------------


def acting_member(session: Session, tenant_id: str, member_id: str, field: str = "acting_member_id"
                  ) -> MemberTerms:
    """The member named in a request body: it must exist in the tenant and be active."""
    return _active(repository.member_terms(session, tenant_id, {member_id}), member_id, field)


def _acting_pair(session: Session, tenant_id: str, acting_member_id: str, other_id: str,
                 other_field: str) -> tuple[MemberTerms, MemberTerms]:
    """`acting_member` for two members in one query (the acting one and a recipient)."""
    found = repository.member_terms(session, tenant_id, {acting_member_id, other_id})
    return (_active(found, acting_member_id, "acting_member_id"),
            _active(found, other_id, other_field))


def _active(found: dict[str, MemberTerms], member_id: str, field: str) -> MemberTerms:
    member = found.get(member_id)
    if member is None:
        raise UnknownMember(f"No chain member {member_id} in this tenant.",
                            errors=[{"field": f"body.{field}", "message": "unknown chain member"}])
    if member.status != "active":
        raise MemberInactive(f"Chain member {member_id} is {member.status}.")
    return member


def create_member(session: Session, tenant_id: str, *, name: str, uscc: str,
                  settlement_account_id: str, role: str, upstream_member_id: str | None,
                  tier: int | None, actor: str) -> ChainMember:
    """Register a core enterprise (a new chain, tier 0) or a supplier / distributor under an
    upstream member of a chain (tier = upstream tier + 1)."""
    if role == CORE:
        if upstream_member_id is not None:
            raise InvalidUpstream("A core enterprise starts its own chain: it has no upstream member.",
                                  errors=[{"field": "body.upstream_member_id",
                                           "message": "must be absent for a core enterprise"}])
        if tier not in (None, 0):
            raise InvalidUpstream("A core enterprise is tier 0.",
                                  errors=[{"field": "body.tier", "message": "must be 0"}])
        upstream = None
        computed_tier = 0
    else:
        if upstream_member_id is None:
            raise InvalidUpstream("A supplier or distributor needs its upstream member "
                                  "(the core enterprise for tier 1).",
                                  errors=[{"field": "body.upstream_member_id", "message": "required"}])
        upstream = repository.member(session, tenant_id, upstream_member_id)
        if upstream is None:
            raise InvalidUpstream(f"No chain member {upstream_member_id} in this tenant.",
                                  errors=[{"field": "body.upstream_member_id",
                                           "message": "unknown chain member"}])
        if upstream.status != "active":
            raise InvalidUpstream(f"Upstream member {upstream_member_id} is {upstream.status}.")
        computed_tier = upstream.tier + 1
        if tier is not None and tier != computed_tier:
            raise InvalidUpstream(
                f"The upstream member is tier {upstream.tier}, so this member is tier "
                f"{computed_tier}, not {tier}.",
                errors=[{"field": "body.tier", "message": f"must be {computed_tier}"}])
    exists = MemberExists(f"A chain member with unified social credit code {uscc} exists.")
    if session.scalars(select(ChainMember.id).where(ChainMember.tenant_id == tenant_id,
                                                    ChainMember.uscc == uscc)).first():
        raise exists
    problem = ledger.settlement_account_problem(session, tenant_id, settlement_account_id, uscc)
    if problem is not None:
        raise InvalidSettlementAccount(
            problem, errors=[{"field": "body.settlement_account_id", "message": problem}])
    now = _now(session, tenant_id)
    member_id = new_id("cmem")
    member = ChainMember(
        id=member_id, tenant_id=tenant_id, chain_id=upstream.chain_id if upstream else member_id,
        role=role, name=name, uscc=uscc, settlement_account_id=settlement_account_id,
        tier=computed_tier, upstream_member_id=upstream.id if upstream else None, status="active",
        created_by=actor, created_at=now, updated_at=now)
    insert_unique(session, [member], exists)
    publish(session, tenant_id=tenant_id, type="chain_member.registered", resource_type="chain_member",
            resource_id=member.id, data=views.data(views.member_out(member)), actor=actor, at=now)
    return member


def list_members(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                 role: str | None = None, tier: int | None = None,
                 core_enterprise_id: str | None = None, upstream_member_id: str | None = None
                 ) -> tuple[list[ChainMember], str | None]:
    """A page of the tenant's chain members, newest first, with optional filters."""
    query = select(ChainMember).where(ChainMember.tenant_id == tenant_id)
    if role is not None:
        query = query.where(ChainMember.role == role)
    if tier is not None:
        query = query.where(ChainMember.tier == tier)
    if core_enterprise_id is not None:
        query = query.where(ChainMember.chain_id == core_enterprise_id)
    if upstream_member_id is not None:
        query = query.where(ChainMember.upstream_member_id == upstream_member_id)
    return repository.page(session, query, ChainMember.id, limit=limit, cursor=cursor)


# --- facilities --------------------------------------------------------------------------


def _facility_event(session: Session, facility: CreditFacility, type_: str, actor: str,
                    at: datetime) -> None:
    publish(session, tenant_id=facility.tenant_id, type=f"credit_facility.{type_}",
            resource_type="credit_facility", resource_id=facility.id,
            data=views.data(views.facility_out(facility)), actor=actor, at=at)


def effective_status(facility: CreditFacility, today: date) -> str:
    """The facility's status as of `today` (a facility past its expiry date is expired)."""
    if facility.status != "expired" and today > facility.expires_on:
        return "expired"
    return facility.status


def _require_usable_facility(facility: CreditFacility | None, today: date, *, core_id: str,
                             refused: str) -> CreditFacility:
    """The facility new credit is given under (a certificate issued, financed or an application
    approved): it must exist, be unexpired and not be frozen. `refused` ends each refusal."""
    if facility is None:
        raise NoFacility(f"Core enterprise {core_id} has no credit facility. {refused}")
    status = effective_status(facility, today)
    if status == "expired":
        raise FacilityExpired(f"Facility {facility.id} expired on {facility.expires_on.isoformat()}. "
                              f"{refused}")
    if status == "frozen":
        reason = (facility.frozen_reason or "risk event").rstrip(" .。")
        raise FacilityFrozen(f"Facility {facility.id} is frozen: {reason}. {refused}")
    return facility


def _limit_exceeded(facility: CreditFacility) -> LimitExceeded:
    from gateway.money import format_fen

    available = facility.limit_fen - facility.outstanding_fen
    shown = format_fen(max(available, 0))
    detail = f"The facility has {shown} CNY available."
    if available < 0:  # renewed with a limit below what its earlier term still owes
        detail = (f"The facility has {shown} CNY available: its outstanding certificates and "
                  f"financing ({format_fen(facility.outstanding_fen)} CNY) exceed its limit "
                  f"({format_fen(facility.limit_fen)} CNY).")
    return LimitExceeded(detail, extra={"available": {"amount": shown, "currency": "CNY"}})


def _recount_outstanding(session: Session, facility: CreditFacility, now: datetime) -> None:
    """Set the facility's outstanding from what it is lent against: the face of its unpaid
    certificates and the principal of its chain's factoring and order financing not yet repaid.
    Called (under the facility's row lock) where an application starts or stops using the
    facility, so that applications disbursed before they counted against it are counted too."""
    certificates = int(session.scalar(
        select(func.coalesce(func.sum(PayablesCertificate.face_fen), 0)).where(
            PayablesCertificate.tenant_id == facility.tenant_id,
            PayablesCertificate.facility_id == facility.id,
            PayablesCertificate.status.in_(sorted(UNPAID_CERTIFICATE_STATES)))) or 0)
    total = certificates + repository.applications_outstanding_fen(
        session, facility.tenant_id, facility.core_enterprise_id)
    if total != facility.outstanding_fen:
        facility.outstanding_fen = total
        facility.updated_at = now


def _circle_scope(session: Session, tenant_id: str) -> tuple[str, Any]:
    """Which facilities share a guarantee circle's cap: the bank's whole production book, or
    (in the sandbox, where tenants never see each other) the tenant's own."""
    from gateway.tenancy import Tenant

    tenant = get_tenant(session, tenant_id)
    if tenant.environment == "production":
        production = select(Tenant.id).where(Tenant.environment == "production")
        return "production", CreditFacility.tenant_id.in_(production)
    return tenant_id, CreditFacility.tenant_id == tenant_id


def guarantee_circle_granted(session: Session, tenant_id: str, circle: str, today: date) -> int:
    """Total limit of the unexpired facilities in a guarantee circle (in the cap's scope).

    Codes are compared without case: the API stores them upper-case, but a code stored before
    it did (`gc-sz-01`) is the same circle as `GC-SZ-01` and shares its cap."""
    _, scope = _circle_scope(session, tenant_id)
    return int(session.scalar(select(func.coalesce(func.sum(CreditFacility.limit_fen), 0)).where(
        scope, func.upper(CreditFacility.guarantee_circle) == circle.upper(),
        CreditFacility.status != "expired", CreditFacility.expires_on >= today)) or 0)


def _check_circle_cap(session: Session, tenant_id: str, circle: str, limit_fen: int,
                      today: date) -> None:
    """Refuse a grant that would take the guarantee circle past its share of the bank-wide limit
    (the caller holds the circle's lock)."""
    settings = chain_credit_settings()
    granted = guarantee_circle_granted(session, tenant_id, circle, today)
    cap = settings.guarantee_circle_cap_fen
    if granted + limit_fen <= cap:
        return
    from gateway.money import format_fen

    raise GuaranteeCircleCapExceeded(
        f"Guarantee circle {circle} has {format_fen(granted)} CNY granted; adding "
        f"{format_fen(limit_fen)} CNY would pass its cap of {format_fen(cap)} CNY "
        f"({settings.guarantee_circle_share:%} of the bank-wide limit).",
        extra={"guarantee_circle": circle,
               "cap": {"amount": format_fen(cap), "currency": "CNY"},
               "granted": {"amount": format_fen(granted), "currency": "CNY"},
               "requested": {"amount": format_fen(limit_fen), "currency": "CNY"}})


def require_partner_in_service(session: Session, tenant_id: str) -> None:
    """New credit and disbursements (a facility granted or unfrozen, financing approved) only
    in the tenant of a partner the gateway serves there (`gateway.tenancy.partner_states`:
    suspended and offboarded partners are not; in production only active ones are), whether
    operations act by the API or the console. What lowers the bank's exposure (a freeze, a
    decline, a risk event) stays open, and so does reading."""
    tenant = get_tenant(session, tenant_id)
    partner = session.get(Partner, tenant.partner_id)
    if partner is None or partner.status not in partner_states(tenant.environment):
        status = partner.status if partner is not None else "gone"
        raise PartnerNotInService(
            f"The partner is {status}: no facility can be granted or unfrozen and no financing "
            f"approved in its {tenant.environment} tenant. Freezing, declining and recording "
            "risk events are still possible.", extra={"partner_status": status})


def grant_facility(session: Session, *, tenant_id: str, core_enterprise_id: str, limit_fen: int,
                   expires_on: date, guarantee_circle: str, discount_rate: str | Decimal,
                   actor: str) -> CreditFacility:
    """Grant a core enterprise its credit facility (operations), or renew it once it has expired
    (banks grant for a term, usually a year). The guarantee circle's total stays within its
    configured share of the bank-wide limit; a facility still active or frozen is refused."""
    require_partner_in_service(session, tenant_id)
    get_tenant(session, tenant_id)
    rate = discount_rate if isinstance(discount_rate, Decimal) else parse_rate(discount_rate)
    core = repository.member(session, tenant_id, core_enterprise_id)
    if core is None:
        raise UnknownMember(f"No chain member {core_enterprise_id} in tenant {tenant_id}.",
                            errors=[{"field": "body.core_enterprise_id", "message": "unknown chain member"}])
    if core.role != CORE:
        raise InvalidFacilityTerms(f"Chain member {core.id} is a {core.role}, not a core enterprise.",
                                   errors=[{"field": "body.core_enterprise_id",
                                            "message": "not a core enterprise"}])
    if limit_fen <= 0:
        raise InvalidFacilityTerms("The limit must be greater than zero.")
    now = _now(session, tenant_id)
    today = _today(now)
    if expires_on <= today:
        raise InvalidFacilityTerms(f"The expiry date must be after today ({today.isoformat()}).",
                                   errors=[{"field": "body.expires_on", "message": "must be in the future"}])
    scope_key, _ = _circle_scope(session, tenant_id)
    repository.advisory_lock(session, f"chain-credit-circle:{scope_key}:{guarantee_circle.upper()}")
    current = repository.facility_of(session, tenant_id, core.id, lock=True)
    if current is not None and effective_status(current, today) != "expired":
        raise _facility_exists(core.id, current)
    _check_circle_cap(session, tenant_id, guarantee_circle, limit_fen, today)
    if current is not None:
        return _renew_facility(session, current, limit_fen=limit_fen, expires_on=expires_on,
                               guarantee_circle=guarantee_circle, rate=rate, actor=actor, now=now)
    facility = CreditFacility(
        id=new_id("cfac"), tenant_id=tenant_id, core_enterprise_id=core.id, limit_fen=limit_fen,
        outstanding_fen=0, currency="CNY", expires_on=expires_on, guarantee_circle=guarantee_circle,
        discount_rate=rate, status="active", granted_by=actor, created_at=now, updated_at=now)
    # The circle's lock serializes grants in one circle only: a grant for the same core
    # enterprise in another circle may be inserting its facility now.
    insert_unique(session, [facility], lambda: _facility_exists(
        core.id, repository.facility_of(session, tenant_id, core.id)))
    # Open the bank's financing account now rather than racing for it on the first financing.
    ledger.bank_financing_account(session, tenant_id)
    _facility_event(session, facility, "granted", actor, now)
    return facility


def _facility_exists(core_id: str, current: CreditFacility | None) -> FacilityExists:
    """The 409 for a core enterprise that has a facility (`current`, if it could be read)."""
    if current is None:
        return FacilityExists(f"Core enterprise {core_id} already has a credit facility.")
    return FacilityExists(f"Core enterprise {core_id} already has a credit facility, {current.id}, "
                          f"until {current.expires_on.isoformat()}; it can be renewed once it has "
                          "expired.", extra={"facility_id": current.id})


def _renew_facility(session: Session, facility: CreditFacility, *, limit_fen: int, expires_on: date,
                    guarantee_circle: str, rate: Decimal, actor: str, now: datetime) -> CreditFacility:
    """A new term on an expired facility, in place: a core enterprise has one facility (one row
    per core enterprise, `models.CreditFacility`), so its id, history and certificates stay.
    Certificates of the earlier term still unpaid stay in `outstanding_fen`: the core enterprise
    still owes them, so they count against the new limit."""
    # The expiry job may not have marked it yet: record the expiry first, so the history reads
    # expired, then renewed.
    expire_facility_if_due(session, facility, now)
    check(FACILITY_TRANSITIONS, "credit facility", facility.status, "active")
    facility.limit_fen = limit_fen
    facility.expires_on = expires_on
    facility.guarantee_circle = guarantee_circle
    facility.discount_rate = rate
    facility.status = "active"
    facility.frozen_reason = None
    facility.frozen_at = None
    facility.granted_by = actor
    facility.updated_at = now
    session.flush()
    _facility_event(session, facility, "renewed", actor, now)
    return facility


def _set_facility_status(session: Session, facility: CreditFacility, target: str, *, reason: str | None,
                         actor: str, now: datetime) -> bool:
    if facility.status == target:
        return False
    check(FACILITY_TRANSITIONS, "credit facility", facility.status, target)
    facility.status = target
    facility.updated_at = now
    if target == "frozen":
        facility.frozen_reason = reason
        facility.frozen_at = now
    elif target == "active":
        facility.frozen_reason = None
        facility.frozen_at = None
    session.flush()
    _facility_event(session, facility, {"frozen": "frozen", "active": "unfrozen",
                                        "expired": "expired"}[target], actor, now)
    return True


def freeze_facility(session: Session, tenant_id: str, facility_id: str, *, reason: str,
                    actor: str) -> CreditFacility:
    """Freeze a facility (no new issuance; existing certificates still move and mature)."""
    facility = repository.get_facility(session, tenant_id, facility_id, lock=True)
    check(FACILITY_TRANSITIONS, "credit facility", facility.status, "frozen")
    _set_facility_status(session, facility, "frozen", reason=reason, actor=actor,
                         now=_now(session, tenant_id))
    return facility


def unfreeze_facility(session: Session, tenant_id: str, facility_id: str, *, reason: str,
                      actor: str) -> CreditFacility:
    """Lift a freeze (operations, once the risk is resolved)."""
    require_partner_in_service(session, tenant_id)
    facility = repository.get_facility(session, tenant_id, facility_id, lock=True)
    now = _now(session, tenant_id)
    if effective_status(facility, _today(now)) == "expired":
        _set_facility_status(session, facility, "expired", reason=None, actor=actor, now=now)
        raise FacilityExpired(f"Facility {facility.id} expired on {facility.expires_on.isoformat()}.")
    if facility.status == "active":
        check(FACILITY_TRANSITIONS, "credit facility", "active", "active")
    _set_facility_status(session, facility, "active", reason=reason, actor=actor, now=now)
    return facility


def expire_facility_if_due(session: Session, facility: CreditFacility, now: datetime) -> bool:
    """Mark a facility expired once its tenant's business date is past its expiry date."""
    if facility.status != "expired" and _today(now) > facility.expires_on:
        return _set_facility_status(session, facility, "expired", reason=None, actor="system", now=now)
    return False


def list_facilities(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                    status: str | None = None) -> tuple[list[CreditFacility], str | None]:
    """A page of the tenant's facilities, newest first."""
    query = select(CreditFacility).where(CreditFacility.tenant_id == tenant_id)
    if status is not None:
        query = query.where(CreditFacility.status == status)
    return repository.page(session, query, CreditFacility.id, limit=limit, cursor=cursor)


@dataclass
class Utilisation:
    facility: CreditFacility
    awaiting_acceptance_fen: int
    overdue_fen: int
    by_tier: list[dict[str, Any]]
    applications_fen: int = 0


def facility_utilisation(session: Session, tenant_id: str, facility_id: str) -> Utilisation:
    """Where the facility's outstanding value sits: unpaid certificates by their holders' tier,
    and the principal of the chain's factoring and order financing not yet repaid."""
    facility = repository.get_facility(session, tenant_id, facility_id)
    rows = session.execute(
        select(PayablesCertificate.holder_type, ChainMember.tier, PayablesCertificate.status,
               func.count(PayablesCertificate.id),
               func.count(func.distinct(PayablesCertificate.holder_member_id)),
               func.coalesce(func.sum(PayablesCertificate.face_fen), 0))
        .select_from(PayablesCertificate)
        .outerjoin(ChainMember, ChainMember.id == PayablesCertificate.holder_member_id)
        .where(PayablesCertificate.tenant_id == tenant_id,
               PayablesCertificate.facility_id == facility.id,
               PayablesCertificate.status.in_(sorted(UNPAID_CERTIFICATE_STATES)))
        .group_by(PayablesCertificate.holder_type, ChainMember.tier, PayablesCertificate.status)
    ).all()
    tiers: dict[tuple[str, int | None], dict[str, Any]] = {}
    holders: dict[tuple[str, int | None], set[str]] = {}
    awaiting = overdue = 0
    for holder_type, tier, status, count, _distinct, amount in rows:
        if status == "issued":
            awaiting += int(amount)
        if status == "overdue":
            overdue += int(amount)
        key = (holder_type, tier if holder_type == "member" else None)
        entry = tiers.setdefault(key, {"tier": key[1], "holder_type": holder_type, "holders": 0,
                                       "certificates": 0, "amount_fen": 0})
        entry["certificates"] += int(count)
        entry["amount_fen"] += int(amount)
        holders.setdefault(key, set())
    # Distinct holders per tier (across statuses) need their own count.
    for (holder_type, tier), entry in tiers.items():
        if holder_type == "bank":
            entry["holders"] = 1
            continue
        entry["holders"] = int(session.scalar(
            select(func.count(func.distinct(PayablesCertificate.holder_member_id)))
            .join(ChainMember, ChainMember.id == PayablesCertificate.holder_member_id)
            .where(PayablesCertificate.tenant_id == tenant_id,
                   PayablesCertificate.facility_id == facility.id,
                   PayablesCertificate.status.in_(sorted(UNPAID_CERTIFICATE_STATES)),
                   ChainMember.tier == tier)) or 0)
    ordered = sorted(tiers.values(), key=lambda e: (e["holder_type"] == "bank", e["tier"] or 0))
    return Utilisation(facility=facility, awaiting_acceptance_fen=awaiting, overdue_fen=overdue,
                       by_tier=ordered, applications_fen=repository.applications_outstanding_fen(
                           session, tenant_id, facility.core_enterprise_id))


# --- certificates ------------------------------------------------------------------------


def _history_entry(cert_id: str, holder_type: str, member_id: str | None, via: str,
                   at: datetime) -> dict[str, Any]:
    from gateway.clock import to_rfc3339

    return {"holder_type": holder_type, "member_id": member_id, "via": via,
            "certificate_id": cert_id, "at": to_rfc3339(at)}


def _cert_event(session: Session, cert: PayablesCertificate, action: str, actor: str, at: datetime,
                extra: dict[str, Any] | None = None) -> None:
    data = views.data(views.certificate_out(cert))
    if extra:
        data.update(extra)
    publish(session, tenant_id=cert.tenant_id, type=f"payables_certificate.{action}",
            resource_type="payables_certificate", resource_id=cert.id, data=data, actor=actor, at=at)


def _require_holder(cert: PayablesCertificate, member: ChainMember | MemberTerms) -> None:
    if cert.holder_type != "member" or cert.holder_member_id != member.id:
        holder = "the bank" if cert.holder_type == "bank" else f"member {cert.holder_member_id}"
        raise NotHolder(f"Certificate {cert.id} is held by {holder}; member {member.id} may not act on it.")


def _require_before_maturity(cert: PayablesCertificate, today: date) -> None:
    if today >= cert.maturity_date:
        raise CertificateMatured(
            f"Certificate {cert.id} matures on {cert.maturity_date.isoformat()}: it can no longer "
            "be split, transferred or financed.")


def _release_lapsed_quote(session: Session, cert: PayablesCertificate, now: datetime) -> None:
    """A certificate reserved by a quote that has lapsed goes back to `accepted` (lazily, before
    the holder's next action; the quote job does the same on its own)."""
    if cert.status != "financing":
        return
    quote = repository.open_quote(session, cert.tenant_id, cert.id, lock=True)
    if quote is not None and quote.valid_until > now:
        return
    if quote is not None:
        _close_quote(session, quote, "expired", now)
    check_certificate(cert.id, cert.status, "accepted")
    cert.status = "accepted"
    cert.updated_at = now


def issue_certificate(session: Session, tenant_id: str, *, acting_member_id: str, to_member_id: str,
                      amount_fen: int, maturity_date: date, invoice_numbers: list[str],
                      contract_number: str, actor: str | None = None) -> PayablesCertificate:
    """The core enterprise issues a certificate to a tier-1 member of its chain, within the
    facility's available limit, maturing between tomorrow and 365 days ahead."""
    issuer, recipient = _acting_pair(session, tenant_id, acting_member_id, to_member_id, "to_member_id")
    if issuer.role != CORE:
        raise NotCoreEnterprise(f"Member {issuer.id} is a {issuer.role}: only a core enterprise issues "
                                "payables certificates.")
    if recipient.chain_id != issuer.chain_id:
        raise NotSameChain(f"Member {recipient.id} is not in {issuer.id}'s chain.",
                           errors=[{"field": "body.to_member_id", "message": "not in the issuer's chain"}])
    if recipient.tier != 1:
        raise InvalidRecipient(f"Certificates are issued to tier-1 members; {recipient.id} is tier "
                               f"{recipient.tier}.",
                               errors=[{"field": "body.to_member_id", "message": "not a tier-1 member"}])
    now = _now(session, tenant_id)
    today = _today(now)
    earliest, latest = today + timedelta(days=1), today + timedelta(days=MAX_MATURITY_DAYS)
    if not earliest <= maturity_date <= latest:
        raise InvalidMaturity(
            f"The maturity date must be between {earliest.isoformat()} and {latest.isoformat()}.",
            errors=[{"field": "body.maturity_date", "message": "out of range"}])
    facility = _require_usable_facility(
        repository.facility_of(session, tenant_id, issuer.id, lock=True), today, core_id=issuer.id,
        refused="No new certificates can be issued.")
    # The core enterprise pays at maturity: within the credit term the bank approved, so that
    # the exposure ends with the facility.
    if maturity_date > facility.expires_on:
        expiry = facility.expires_on.isoformat()
        raise InvalidMaturity(
            f"The maturity date must be on or before the facility's expiry, {expiry}: a "
            "certificate is paid within the term of the facility it is issued under.",
            errors=[{"field": "body.maturity_date", "message": f"after the facility's expiry {expiry}"}])
    if amount_fen > facility.limit_fen - facility.outstanding_fen:
        raise _limit_exceeded(facility)
    invoice_numbers = _canonical_references(invoice_numbers)
    if len(set(invoice_numbers)) != len(invoice_numbers):
        raise ValidationFailed("Each invoice is listed once.", code="duplicate_invoice_numbers",
                               errors=[{"field": "body.invoice_numbers", "message": "duplicates"}])
    used = repository.invoices_backing_certificates(session, tenant_id, invoice_numbers,
                                                    issuer_id=issuer.id)
    if used:
        raise InvoiceAlreadyUsed(f"Invoice(s) {', '.join(sorted(used))} already back another certificate "
                                 f"of {issuer.id}.", extra={"invoice_numbers": sorted(used)})
    # A certificate finances its invoices: not those the bank has already factored.
    _refuse_financed_references(session, tenant_id, FACTORING, invoice_numbers,
                                application_statuses=FINANCED_APPLICATION_STATES, certificates=False)
    cert_id = new_id("pcert")
    cert = PayablesCertificate(
        id=cert_id, tenant_id=tenant_id, facility_id=facility.id, chain_id=issuer.chain_id,
        issuer_id=issuer.id, root_id=cert_id, parent_id=None, depth=0, holder_type="member",
        holder_member_id=recipient.id, face_fen=amount_fen, maturity_date=maturity_date,
        status="issued", invoice_numbers=list(invoice_numbers), contract_number=contract_number,
        holder_history=[_history_entry(cert_id, "member", recipient.id, "issued", now)],
        created_by=actor or issuer.id, created_at=now, updated_at=now)
    facility.outstanding_fen += amount_fen
    facility.updated_at = now
    session.add(cert)
    session.flush()
    # The facility row lock serializes the issuer's issuances, so the check above is exact.
    session.add_all([CertificateInvoice(id=new_id("pcinv"), tenant_id=tenant_id, issuer_id=issuer.id,
                                        invoice_number=number, certificate_id=cert.id, created_at=now)
                     for number in invoice_numbers])
    session.flush()
    _cert_event(session, cert, "issued", issuer.id, now)
    return cert


def accept_certificate(session: Session, tenant_id: str, cert_id: str, *,
                       acting_member_id: str) -> PayablesCertificate:
    """The holder signs for an issued certificate (签收)."""
    member = acting_member(session, tenant_id, acting_member_id)
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    _require_holder(cert, member)
    check_certificate(cert.id, cert.status, "accepted")
    now = _now(session, tenant_id)
    cert.status = "accepted"
    cert.accepted_at = now
    cert.updated_at = now
    session.flush()
    _cert_event(session, cert, "accepted", member.id, now)
    return cert


def _void_issued(session: Session, cert: PayablesCertificate, target: str, actor: str,
                 now: datetime, reason: str | None = None) -> None:
    check_certificate(cert.id, cert.status, target)
    facility = repository.get_facility(session, cert.tenant_id, cert.facility_id, lock=True)
    facility.outstanding_fen -= cert.face_fen
    facility.updated_at = now
    # A voided certificate's invoices may back a new one.
    session.execute(delete(CertificateInvoice).where(CertificateInvoice.tenant_id == cert.tenant_id,
                                                     CertificateInvoice.certificate_id == cert.id))
    cert.status = target
    cert.updated_at = now
    session.flush()
    _cert_event(session, cert, target, actor, now, {"reason": reason} if reason else None)


def reject_certificate(session: Session, tenant_id: str, cert_id: str, *, acting_member_id: str,
                       reason: str | None = None) -> PayablesCertificate:
    """The holder refuses an issued certificate; the facility's limit is released."""
    member = acting_member(session, tenant_id, acting_member_id)
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    _require_holder(cert, member)
    _void_issued(session, cert, "rejected", member.id, _now(session, tenant_id), reason)
    return cert


def cancel_certificate(session: Session, tenant_id: str, cert_id: str, *,
                       acting_member_id: str) -> PayablesCertificate:
    """The issuer withdraws a certificate its holder has not accepted yet."""
    member = acting_member(session, tenant_id, acting_member_id)
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    if cert.issuer_id != member.id:
        raise NotIssuer(f"Only the issuer {cert.issuer_id} may cancel certificate {cert.id}.")
    _void_issued(session, cert, "cancelled", member.id, _now(session, tenant_id))
    return cert


def _child(parent: PayablesCertificate, *, holder_id: str, face_fen: int, via: str,
           now: datetime) -> PayablesCertificate:
    child_id = new_id("pcert")
    history = list(parent.holder_history) + [_history_entry(child_id, "member", holder_id, via, now)]
    return PayablesCertificate(
        id=child_id, tenant_id=parent.tenant_id, facility_id=parent.facility_id,
        chain_id=parent.chain_id, issuer_id=parent.issuer_id, root_id=parent.root_id,
        parent_id=parent.id, depth=parent.depth + 1, holder_type="member", holder_member_id=holder_id,
        face_fen=face_fen, maturity_date=parent.maturity_date, status="accepted",
        invoice_numbers=list(parent.invoice_numbers), contract_number=parent.contract_number,
        holder_history=history, created_by=holder_id, created_at=now, updated_at=now, accepted_at=now)


def _store_moved(session: Session, cert: PayablesCertificate,
                 children: list[PayablesCertificate]) -> None:
    """A split or transfer on the driver: the parent's new status (one UPDATE) and its
    children (one INSERT), where the unit of work's flush would cost several times more. Both
    go with the transaction's next statement (`gateway.deferred`); should one fail (none is
    expected: the parent is locked, the children's ids are new) the commit fails with it."""
    session_save(session, [cert], ("status", "updated_at"), later=True)
    session_store(session, children, later=True)


def split_certificate(session: Session, tenant_id: str, cert_id: str, *, acting_member_id: str,
                      parts_fen: list[int]) -> tuple[PayablesCertificate, list[PayablesCertificate]]:
    """The holder splits a certificate into parts (each at least 0.01) summing exactly to it;
    the holder keeps every part."""
    member = acting_member(session, tenant_id, acting_member_id)
    settings = chain_credit_settings()
    if len(parts_fen) > settings.max_split_parts:
        raise SplitMismatch(f"A certificate splits into at most {settings.max_split_parts} parts.",
                            errors=[{"field": "body.parts", "message": "too many parts"}])
    if len(parts_fen) < 2 or any(p < 1 for p in parts_fen):
        raise SplitMismatch("A split has at least two parts of at least 0.01 each.",
                            errors=[{"field": "body.parts", "message": "at least two positive parts"}])
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    _require_holder(cert, member)
    now = _now(session, tenant_id)
    _release_lapsed_quote(session, cert, now)
    check_certificate(cert.id, cert.status, "split")
    _require_before_maturity(cert, _today(now))
    total = sum(parts_fen)
    if total != cert.face_fen:
        from gateway.money import format_fen

        raise SplitMismatch(
            f"The parts sum to {format_fen(total)} CNY; the certificate is {format_fen(cert.face_fen)} CNY.",
            errors=[{"field": "body.parts", "message": "must sum exactly to the certificate's amount"}])
    children = [_child(cert, holder_id=member.id, face_fen=p, via="split", now=now) for p in parts_fen]
    cert.status = "split"
    cert.updated_at = now
    _store_moved(session, cert, children)
    _cert_event(session, cert, "split", member.id, now, {"children": [c.id for c in children]})
    return cert, children


def transfer_certificate(session: Session, tenant_id: str, cert_id: str, *, acting_member_id: str,
                         to_member_id: str) -> tuple[PayablesCertificate, PayablesCertificate]:
    """The holder passes a whole certificate to another member of the same chain (背书转让);
    the recipient's certificate is a child of this one."""
    member, recipient = _acting_pair(session, tenant_id, acting_member_id, to_member_id, "to_member_id")
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    _require_holder(cert, member)
    now = _now(session, tenant_id)
    _release_lapsed_quote(session, cert, now)
    check_certificate(cert.id, cert.status, "transferred")
    _require_before_maturity(cert, _today(now))
    if recipient.chain_id != cert.chain_id:
        raise NotSameChain(f"Member {recipient.id} is not in the certificate's chain.",
                           errors=[{"field": "body.to_member_id", "message": "not in the certificate's chain"}])
    if recipient.id == member.id:
        raise InvalidRecipient("A certificate cannot be transferred to its own holder.",
                               errors=[{"field": "body.to_member_id", "message": "is the holder"}])
    if recipient.role == CORE:
        raise InvalidRecipient("The core enterprise cannot hold its own payables.",
                               errors=[{"field": "body.to_member_id", "message": "is the core enterprise"}])
    child = _child(cert, holder_id=recipient.id, face_fen=cert.face_fen, via="transferred", now=now)
    cert.status = "transferred"
    cert.updated_at = now
    _store_moved(session, cert, [child])
    _cert_event(session, cert, "transferred", member.id, now,
                {"children": [child.id], "to_member_id": recipient.id})
    return cert, child


def get_certificate(session: Session, tenant_id: str, cert_id: str) -> PayablesCertificate:
    """One certificate of the tenant (404 otherwise)."""
    return repository.get_certificate(session, tenant_id, cert_id)


def list_certificates(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                      status: str | None = None, holder_member_id: str | None = None,
                      root_id: str | None = None, facility_id: str | None = None,
                      held_by_bank: bool | None = None, maturity_from: date | None = None,
                      maturity_to: date | None = None) -> tuple[list[PayablesCertificate], str | None]:
    """A page of the tenant's certificates, newest first, with optional filters."""
    c = PayablesCertificate
    query = select(c).where(c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(c.status == status)
    if holder_member_id is not None:
        query = query.where(c.holder_member_id == holder_member_id)
    if root_id is not None:
        query = query.where(c.root_id == root_id)
    if facility_id is not None:
        query = query.where(c.facility_id == facility_id)
    if held_by_bank is not None:
        query = query.where(c.holder_type == ("bank" if held_by_bank else "member"))
    if maturity_from is not None:
        query = query.where(c.maturity_date >= maturity_from)
    if maturity_to is not None:
        query = query.where(c.maturity_date <= maturity_to)
    return repository.page(session, query, c.id, limit=limit, cursor=cursor)


@dataclass
class LineageView:
    root: PayablesCertificate
    nodes: list[tuple[PayablesCertificate, bool]]  # depth-first from the root, with is_leaf
    members: dict[str, ChainMember]

    @property
    def unpaid_leaves_fen(self) -> int:
        """Face of the leaves the issuer still owes (equal to the root's face until maturity)."""
        return sum(node.face_fen for node, leaf in self.nodes
                   if leaf and node.status in UNPAID_CERTIFICATE_STATES)


def lineage(session: Session, tenant_id: str, cert_id: str) -> LineageView:
    """The whole tree of a certificate from its root (穿透): every node, holder, amount, state."""
    cert = repository.get_certificate(session, tenant_id, cert_id)
    nodes = repository.tree(session, tenant_id, cert.root_id)
    children: dict[str | None, list[PayablesCertificate]] = {}
    for node in nodes:
        children.setdefault(node.parent_id, []).append(node)
    root = next(n for n in nodes if n.id == cert.root_id)
    ordered: list[tuple[PayablesCertificate, bool]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        kids = children.get(node.id, [])
        ordered.append((node, not kids))
        stack.extend(reversed(kids))
    members = repository.members(session, tenant_id,
                                 {n.holder_member_id for n in nodes if n.holder_member_id})
    return LineageView(root=root, nodes=ordered, members=members)


# --- financing (discounting a certificate at the bank) ------------------------------------


def _close_quote(session: Session, quote: FinancingQuote, target: str, now: datetime) -> None:
    check(QUOTE_TRANSITIONS, "financing quote", quote.status, target)
    quote.status = target
    quote.closed_at = now
    if target == "accepted":
        quote.accepted_at = now
    publish(session, tenant_id=quote.tenant_id, type=f"financing_quote.{target}",
            resource_type="financing_quote", resource_id=quote.id,
            data=views.data(views.quote_out(quote)), actor=quote.holder_member_id, at=now)


def _check_financeable(session: Session, cert: PayablesCertificate, today: date) -> CreditFacility:
    """What the bank relies on to finance a certificate, checked when it quotes and again when
    the quote is accepted (a freeze, the facility's expiry or the partner's suspension may come
    in between): the partner is in service, the certificate has not reached maturity, and its
    facility is neither expired nor frozen."""
    require_partner_in_service(session, cert.tenant_id)
    _require_before_maturity(cert, today)
    return _require_usable_facility(
        repository.get_facility(session, cert.tenant_id, cert.facility_id), today,
        core_id=cert.issuer_id,
        refused="The bank does not finance its certificates until it is active again.")


def request_financing_quote(session: Session, tenant_id: str, cert_id: str, *,
                            acting_member_id: str) -> FinancingQuote:
    """The bank prices financing the certificate now: face x rate x days / 360. The certificate
    is reserved (`financing`) until the quote is accepted, declined or lapses. Refused unless
    the bank would finance it now (`_check_financeable`, checked again at acceptance)."""
    member = acting_member(session, tenant_id, acting_member_id)
    cert = repository.get_certificate(session, tenant_id, cert_id, lock=True)
    _require_holder(cert, member)
    now = _now(session, tenant_id)
    today = _today(now)
    _release_lapsed_quote(session, cert, now)
    if cert.status == "financing":
        raise CertificateStateConflict(
            f"Certificate {cert.id} already has an open financing quote.",
            extra={"current_status": cert.status, "requested_status": "financing"})
    check_certificate(cert.id, cert.status, "financing")
    facility = _check_financeable(session, cert, today)
    days, discount, net = discount_quote(cert.face_fen, facility.discount_rate, today, cert.maturity_date)
    if net <= 0:
        raise NotFinanceable("The discount would consume the whole face value.")
    settings = chain_credit_settings()
    valid_until = min(now + timedelta(seconds=settings.quote_validity_seconds),
                      start_of_business_day(cert.maturity_date))
    quote = FinancingQuote(
        id=new_id("fquote"), tenant_id=tenant_id, certificate_id=cert.id, holder_member_id=member.id,
        face_fen=cert.face_fen, annual_rate=facility.discount_rate, days=days, discount_fen=discount,
        net_fen=net, valid_until=valid_until, status="open", created_at=now)
    cert.status = "financing"
    cert.updated_at = now
    session.add(quote)
    session.flush()
    publish(session, tenant_id=tenant_id, type="financing_quote.created", resource_type="financing_quote",
            resource_id=quote.id, data=views.data(views.quote_out(quote)), actor=member.id, at=now)
    return quote


def accept_financing_quote(session: Session, tenant_id: str, quote_id: str, *,
                           acting_member_id: str) -> tuple[FinancingQuote, PayablesCertificate]:
    """The holder takes the quote while it is valid: the ledger pays the net proceeds from the
    bank's financing account to the holder, and the bank becomes the holder.

    What the quote relied on is checked again, with the codes quoting gives (`_check_financeable`:
    a freeze or expiry of the facility, or the partner's suspension, since the quote was made
    refuses it and moves nothing). A quote is a price: within its validity it pays exactly its
    own discount and net amount, even if the business date has changed since (a quote made at
    23:55 and accepted at 00:05 keeps its days); it never runs past the start of the maturity
    date, so at least one day of discount is always owed."""
    member = acting_member(session, tenant_id, acting_member_id)
    quote = repository.get_quote(session, tenant_id, quote_id)
    cert = repository.get_certificate(session, tenant_id, quote.certificate_id, lock=True)
    quote = repository.get_quote(session, tenant_id, quote_id, lock=True)
    if quote.holder_member_id != member.id:
        raise NotHolder(f"Quote {quote.id} was made for member {quote.holder_member_id}.")
    now = _now(session, tenant_id)
    # Lapsed, whether or not the quote job has marked it yet.
    if quote.status == "expired" or (quote.status == "open" and now >= quote.valid_until):
        raise QuoteExpired(f"Quote {quote.id} was valid until {views._ts(quote.valid_until)}; "
                           "ask for a new one.")
    if quote.status != "open":
        check(QUOTE_TRANSITIONS, "financing quote", quote.status, "accepted")
    _require_holder(cert, member)
    check_certificate(cert.id, cert.status, "financed")
    _check_financeable(session, cert, _today(now))
    holder_account = repository.get_member(session, tenant_id, member.id).settlement_account_id
    ledger.pay(session, tenant_id, from_account=ledger.bank_financing_account(session, tenant_id),
               to_account=holder_account, amount_fen=quote.net_fen,
               journal_ref=f"chain-credit:finance:{quote.id}", reference_type="financing_quote",
               reference_id=quote.id, purpose="chain_credit_financing",
               memo=f"Financing of payables certificate {cert.id}")
    quote.journal_ref = f"chain-credit:finance:{quote.id}"
    _close_quote(session, quote, "accepted", now)
    cert.status = "financed"
    cert.holder_type = "bank"
    cert.holder_member_id = None
    cert.financed_at = now
    cert.updated_at = now
    cert.holder_history = list(cert.holder_history) + [
        _history_entry(cert.id, "bank", None, "financed", now)]
    session.flush()
    _cert_event(session, cert, "financed", member.id, now,
                {"quote_id": quote.id, "net_amount": views.data(views.quote_out(quote))["net_amount"]})
    return quote, cert


def decline_financing_quote(session: Session, tenant_id: str, quote_id: str, *,
                            acting_member_id: str) -> FinancingQuote:
    """The holder declines an open quote; the certificate is free again."""
    member = acting_member(session, tenant_id, acting_member_id)
    quote = repository.get_quote(session, tenant_id, quote_id)
    cert = repository.get_certificate(session, tenant_id, quote.certificate_id, lock=True)
    quote = repository.get_quote(session, tenant_id, quote_id, lock=True)
    if quote.holder_member_id != member.id:
        raise NotHolder(f"Quote {quote.id} was made for member {quote.holder_member_id}.")
    now = _now(session, tenant_id)
    _close_quote(session, quote, "declined", now)
    if cert.status == "financing":
        check_certificate(cert.id, cert.status, "accepted")
        cert.status = "accepted"
        cert.updated_at = now
    session.flush()
    return quote


def get_quote(session: Session, tenant_id: str, quote_id: str) -> FinancingQuote:
    """One financing quote of the tenant (404 otherwise)."""
    return repository.get_quote(session, tenant_id, quote_id)


def expire_quote(session: Session, tenant_id: str, quote_id: str, now: datetime) -> bool:
    """Close a lapsed open quote and free its certificate (the quote job)."""
    quote = repository.get_quote(session, tenant_id, quote_id)
    cert = repository.get_certificate(session, tenant_id, quote.certificate_id, lock=True)
    quote = repository.get_quote(session, tenant_id, quote_id, lock=True)
    if quote.status != "open" or quote.valid_until > now:
        return False
    _close_quote(session, quote, "expired", now)
    if cert.status == "financing":
        cert.status = "accepted"
        cert.updated_at = now
    session.flush()
    return True


# --- maturity ----------------------------------------------------------------------------


def mature_root(session: Session, tenant_id: str, root_id: str, now: datetime) -> str:
    """Settle one certificate tree on or after its maturity date.

    The issuer's settlement account pays every unpaid leaf's current holder (the bank's
    financing account for leaves the bank holds); the leaves sum to the root's face. If the
    account cannot pay it all, nothing is paid: the leaves go overdue, a risk event is
    recorded and the facility is frozen; a later run pays them once the money is there.
    Returns "settled", "overdue", "cancelled" or "" (nothing to do).
    """
    root = repository.get_certificate(session, tenant_id, root_id, lock=True)
    if root.maturity_date > _today(now):
        return ""
    if root.status == "issued":
        _void_issued(session, root, "cancelled", "system", now, "matured without acceptance")
        return "cancelled"
    leaves = repository.tree(session, tenant_id, root_id, statuses=MATURING_STATES, lock=True)
    if not leaves:
        return ""
    facility = repository.get_facility(session, tenant_id, root.facility_id, lock=True)
    issuer = repository.get_member(session, tenant_id, root.issuer_id)
    due = sum(leaf.face_fen for leaf in leaves)
    holders = repository.members(session, tenant_id,
                                 {leaf.holder_member_id for leaf in leaves if leaf.holder_member_id})
    credits: dict[str, int] = {}
    for leaf in leaves:
        target = (ledger.bank_financing_account(session, tenant_id) if leaf.holder_type == "bank"
                  else holders[leaf.holder_member_id or ""].settlement_account_id)
        credits[target] = credits.get(target, 0) + leaf.face_fen
    paid = False
    if ledger.available_fen(session, tenant_id, issuer.settlement_account_id) >= due:
        try:
            # One journal entry for the whole tree: every account is locked at once, in the
            # ledger's order, and the tree is paid entirely or not at all.
            with session.begin_nested():
                ledger.pay_many(session, tenant_id, from_account=issuer.settlement_account_id,
                                credits=credits, journal_ref=f"chain-credit:mature:{root.id}",
                                reference_type="payables_certificate", reference_id=root.id,
                                purpose="chain_credit_maturity",
                                memo=f"Payables certificate {root.id} matured")
            paid = True
        except ledger.InsufficientFunds:
            paid = False
    if paid:
        for leaf in leaves:
            if leaf.status == "financing":
                quote = repository.open_quote(session, tenant_id, leaf.id, lock=True)
                if quote is not None:
                    _close_quote(session, quote, "expired", now)
            check_certificate(leaf.id, leaf.status, "settled")
            leaf.status = "settled"
            leaf.settled_at = now
            leaf.updated_at = now
        facility.outstanding_fen -= due
        facility.updated_at = now
        session.flush()
        for leaf in leaves:
            _cert_event(session, leaf, "settled", "system", now)
        return "settled"
    newly = [leaf for leaf in leaves if leaf.status != "overdue"]
    if not newly:
        return ""
    for leaf in newly:
        if leaf.status == "financing":
            quote = repository.open_quote(session, tenant_id, leaf.id, lock=True)
            if quote is not None:
                _close_quote(session, quote, "expired", now)
        check_certificate(leaf.id, leaf.status, "overdue")
        leaf.status = "overdue"
        leaf.overdue_at = now
        leaf.updated_at = now
    session.flush()
    for leaf in newly:
        _cert_event(session, leaf, "overdue", "system", now)
    from gateway.money import format_fen

    record_risk_event(session, tenant_id, core_enterprise_id=issuer.id, member_id=None,
                      type="overdue", source="rule", actor="system", related_resource_id=root.id,
                      description=f"Payables certificate {root.id} matured on "
                                  f"{root.maturity_date.isoformat()} and {format_fen(due)} CNY "
                                  "could not be paid from the core enterprise's settlement account.")
    return "overdue"


# --- factoring and order financing -------------------------------------------------------


def _application_event(session: Session, app: FinancingApplication, action: str, actor: str,
                       at: datetime) -> None:
    publish(session, tenant_id=app.tenant_id, type=f"financing_application.{action}",
            resource_type="financing_application", resource_id=app.id,
            data=views.data(views.application_out(app)), actor=actor, at=at)


def _refuse_financed_references(session: Session, tenant_id: str, kind: str, references: list[str], *,
                                application_statuses: frozenset[str], exclude_id: str | None = None,
                                certificates: bool = True) -> None:
    """One invoice (purchase order) finances once: refuse `references` already cited by another
    application of `kind` in `application_statuses` or (invoices, if `certificates`) backing a
    certificate of the tenant, whatever their case. The references' locks (on their canonical
    form, so `INV-1` and `inv-1` queue on one lock) are taken first and held to the commit, so
    of two concurrent financings of one reference the second sees the first."""
    references = _canonical_references(references)
    repository.advisory_locks(session, [f"chain-credit-reference:{tenant_id}:{kind}:{reference}"
                                        for reference in references])
    taken = repository.references_of_applications(session, tenant_id, kind, references,
                                                  application_statuses, exclude_id=exclude_id)
    if certificates and kind == FACTORING:
        taken |= repository.invoices_backing_certificates(session, tenant_id, references)
    if taken:
        field, noun, problem = _REFERENCES[kind]
        backing = "a payables certificate or a" if kind == FACTORING else "a"
        raise problem(f"{noun} {', '.join(sorted(taken))} already back {backing} financing "
                      "application of this tenant.", extra={field: sorted(taken)})


def create_application(session: Session, tenant_id: str, *, acting_member_id: str, kind: str,
                       amount_fen: int, references: list[str], counterparty_member_id: str | None
                       ) -> FinancingApplication:
    """A member applies for receivables factoring (with invoices) or order financing (with
    purchase orders) that no certificate or other application of the tenant cites, unless that
    application was declined."""
    member = acting_member(session, tenant_id, acting_member_id)
    if member.role == CORE:
        raise InvalidApplicant("A core enterprise does not apply for chain financing: its "
                               "suppliers and distributors do.",
                               errors=[{"field": "body.acting_member_id", "message": "is a core enterprise"}])
    references = _canonical_references(references)
    counterparty = None
    if counterparty_member_id is not None:
        counterparty = acting_member(session, tenant_id, counterparty_member_id, "counterparty_member_id")
        if counterparty.chain_id != member.chain_id or counterparty.id == member.id:
            raise NotSameChain("The counterparty must be another member of the applicant's chain.",
                               errors=[{"field": "body.counterparty_member_id",
                                        "message": "not another member of the chain"}])
    _refuse_financed_references(session, tenant_id, kind, references,
                                application_statuses=CLAIMING_APPLICATION_STATES)
    now = _now(session, tenant_id)
    app = FinancingApplication(
        id=new_id("cfapp"), tenant_id=tenant_id, kind=kind, applicant_id=member.id,
        chain_id=member.chain_id, references=list(references),
        counterparty_id=counterparty.id if counterparty else None, requested_fen=amount_fen,
        status="submitted", created_by=member.id, created_at=now, updated_at=now)
    session.add(app)
    session.flush()
    _application_event(session, app, "submitted", member.id, now)
    return app


def approve_application(session: Session, tenant_id: str, app_id: str, *, amount_fen: int,
                        annual_rate: str, due_date: date, actor: str) -> FinancingApplication:
    """Operations approve an amount and rate; the ledger disburses it to the applicant at once.

    Factoring and order financing are credit given under the chain's core enterprise's facility
    (链式授信): approval needs that facility unexpired and not frozen, and the amount within its
    available limit; the principal counts in its `outstanding` until repaid. Refused too if,
    since filing, a certificate has come to back one of its invoices or another application
    citing them has been financed (the first financed wins)."""
    require_partner_in_service(session, tenant_id)
    rate = parse_rate(annual_rate)
    app = repository.get_application(session, tenant_id, app_id, lock=True)
    check(APPLICATION_TRANSITIONS, "financing application", app.status, "disbursed")
    if amount_fen > app.requested_fen:
        raise ApprovalExceedsRequest("The approved amount cannot exceed the requested amount.",
                                     errors=[{"field": "body.amount", "message": "more than requested"}])
    now = _now(session, tenant_id)
    today = _today(now)
    if not today < due_date <= today + timedelta(days=MAX_REPAYMENT_DAYS):
        raise InvalidDueDate(f"The due date must be after {today.isoformat()} and within three years.",
                             errors=[{"field": "body.due_date", "message": "out of range"}])
    # The facility's row lock (taken before the references' locks, as issuance takes them)
    # serializes everything that uses its limit, so the check below is exact.
    facility = _require_usable_facility(
        repository.facility_of(session, tenant_id, app.chain_id, lock=True), today,
        core_id=app.chain_id, refused="No financing can be approved under it.")
    _refuse_financed_references(session, tenant_id, app.kind, list(app.references),
                                application_statuses=FINANCED_APPLICATION_STATES, exclude_id=app.id)
    _recount_outstanding(session, facility, now)
    if amount_fen > facility.limit_fen - facility.outstanding_fen:
        raise _limit_exceeded(facility)
    applicant = repository.get_member(session, tenant_id, app.applicant_id)
    app.approved_fen = amount_fen
    app.annual_rate = rate
    app.due_date = due_date
    app.interest_fen = interest_fen(amount_fen, rate, (due_date - today).days)
    app.decided_by = actor
    ledger.pay(session, tenant_id, from_account=ledger.bank_financing_account(session, tenant_id),
               to_account=applicant.settlement_account_id, amount_fen=amount_fen,
               journal_ref=f"chain-credit:disburse:{app.id}", reference_type="financing_application",
               reference_id=app.id, purpose="chain_credit_disbursement",
               memo=f"{app.kind.replace('_', ' ').capitalize()} {app.id}")
    app.status = "disbursed"
    app.disbursed_at = now
    app.updated_at = now
    facility.outstanding_fen += amount_fen
    facility.updated_at = now
    session.flush()
    _application_event(session, app, "disbursed", actor, now)
    return app


def decline_application(session: Session, tenant_id: str, app_id: str, *, reason: str,
                        actor: str) -> FinancingApplication:
    """Operations decline an application."""
    get_tenant(session, tenant_id)
    app = repository.get_application(session, tenant_id, app_id, lock=True)
    check(APPLICATION_TRANSITIONS, "financing application", app.status, "declined")
    now = _now(session, tenant_id)
    app.status = "declined"
    app.decline_reason = reason
    app.decided_by = actor
    app.updated_at = now
    session.flush()
    _application_event(session, app, "declined", actor, now)
    return app


def collect_repayment(session: Session, tenant_id: str, app_id: str, now: datetime) -> str:
    """On the due date, debit principal and interest from the applicant to the bank; if the
    money is not there the application goes overdue and a risk event is recorded (a later run
    collects it). Returns "repaid", "overdue" or ""."""
    app = repository.get_application(session, tenant_id, app_id, lock=True)
    if app.status not in ("disbursed", "overdue") or app.due_date is None or app.due_date > _today(now):
        return ""
    applicant = repository.get_member(session, tenant_id, app.applicant_id)
    # Locked before the ledger's accounts, in the order approval and maturity take them.
    facility = repository.facility_of(session, tenant_id, app.chain_id, lock=True)
    due = (app.approved_fen or 0) + (app.interest_fen or 0)
    paid = False
    if ledger.available_fen(session, tenant_id, applicant.settlement_account_id) >= due:
        try:
            with session.begin_nested():
                ledger.pay(session, tenant_id, from_account=applicant.settlement_account_id,
                           to_account=ledger.bank_financing_account(session, tenant_id), amount_fen=due,
                           journal_ref=f"chain-credit:repay:{app.id}",
                           reference_type="financing_application", reference_id=app.id,
                           purpose="chain_credit_repayment", memo=f"Repayment of {app.id}")
            paid = True
        except ledger.InsufficientFunds:
            paid = False
    if paid:
        check(APPLICATION_TRANSITIONS, "financing application", app.status, "repaid")
        app.status = "repaid"
        app.repaid_at = now
        app.updated_at = now
        session.flush()
        # The principal is back: the facility's limit is free again.
        if facility is not None:
            _recount_outstanding(session, facility, now)
            session.flush()
        _application_event(session, app, "repaid", "system", now)
        return "repaid"
    if app.status == "overdue":
        return ""
    check(APPLICATION_TRANSITIONS, "financing application", app.status, "overdue")
    app.status = "overdue"
    app.overdue_at = now
    app.updated_at = now
    session.flush()
    _application_event(session, app, "overdue", "system", now)
    from gateway.money import format_fen

    record_risk_event(session, tenant_id, core_enterprise_id=app.chain_id, member_id=app.applicant_id,
                      type="overdue", source="rule", actor="system", related_resource_id=app.id,
                      description=f"{app.kind.replace('_', ' ').capitalize()} {app.id} was due on "
                                  f"{app.due_date.isoformat()}; {format_fen(due)} CNY could not be "
                                  "collected from the applicant.")
    return "overdue"


def get_application(session: Session, tenant_id: str, app_id: str,
                    member_id: str | None = None) -> FinancingApplication:
    """One financing application of the tenant (404 otherwise)."""
    app = repository.get_application(session, tenant_id, app_id)
    if member_id is not None and app.applicant_id != member_id:
        raise NotApplicant("This application belongs to another member.")
    return app


def list_applications(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                      kind: str | None = None, status: str | None = None,
                      applicant_id: str | None = None) -> tuple[list[FinancingApplication], str | None]:
    """A page of the tenant's factoring and order-financing applications, newest first."""
    a = FinancingApplication
    query = select(a).where(a.tenant_id == tenant_id)
    if kind is not None:
        query = query.where(a.kind == kind)
    if status is not None:
        query = query.where(a.status == status)
    if applicant_id is not None:
        query = query.where(a.applicant_id == applicant_id)
    return repository.page(session, query, a.id, limit=limit, cursor=cursor)


# --- risk --------------------------------------------------------------------------------


def record_risk_event(session: Session, tenant_id: str, *, core_enterprise_id: str,
                      member_id: str | None, type: str, description: str, source: str, actor: str,
                      related_resource_id: str | None = None) -> RiskEvent:
    """Record a risk event about a core enterprise (or one member of its chain). An event about
    the core enterprise itself freezes its facility: no new issuance, while existing
    certificates still move and mature."""
    get_tenant(session, tenant_id)
    core = repository.member(session, tenant_id, core_enterprise_id)
    if core is None or core.role != CORE:
        raise UnknownMember(f"No core enterprise {core_enterprise_id} in tenant {tenant_id}.",
                            errors=[{"field": "body.core_enterprise_id", "message": "unknown core enterprise"}])
    if member_id is not None:
        member = repository.member(session, tenant_id, member_id)
        if member is None:
            raise UnknownMember(f"No chain member {member_id} in tenant {tenant_id}.",
                                errors=[{"field": "body.member_id", "message": "unknown chain member"}])
        if member.chain_id != core.id:
            raise NotSameChain(f"Member {member_id} is not in {core.id}'s chain.",
                               errors=[{"field": "body.member_id", "message": "not in the chain"}])
    now = _now(session, tenant_id)
    facility = repository.facility_of(session, tenant_id, core.id, lock=True)
    event = RiskEvent(id=new_id("crisk"), tenant_id=tenant_id, core_enterprise_id=core.id,
                      member_id=member_id, facility_id=facility.id if facility else None, type=type,
                      source=source, description=description, related_resource_id=related_resource_id,
                      froze_facility=False, recorded_by=actor, created_at=now)
    about_core = member_id is None or member_id == core.id
    if facility is not None and about_core and effective_status(facility, _today(now)) == "active":
        _set_facility_status(session, facility, "frozen", reason=f"{type}: {description}"[:500],
                             actor=actor, now=now)
        event.froze_facility = True
    session.add(event)
    session.flush()
    publish(session, tenant_id=tenant_id, type="chain_risk_event.recorded", resource_type="chain_risk_event",
            resource_id=event.id, data=views.data(views.risk_event_out(event)), actor=actor, at=now)
    return event


def list_risk_events(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                     core_enterprise_id: str | None = None, type: str | None = None
                     ) -> tuple[list[RiskEvent], str | None]:
    """A page of the tenant's risk events, newest first."""
    query = select(RiskEvent).where(RiskEvent.tenant_id == tenant_id)
    if core_enterprise_id is not None:
        query = query.where(RiskEvent.core_enterprise_id == core_enterprise_id)
    if type is not None:
        query = query.where(RiskEvent.type == type)
    return repository.page(session, query, RiskEvent.id, limit=limit, cursor=cursor)
