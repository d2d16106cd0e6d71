"""Chain credit HTTP routes: thin (auth and scope, one service call, shape the response).

- `/v1/chain-credit/...`: the core enterprise's supply-chain platform, acting for the members
  of its chain (`chain_credit:read` / `chain_credit:write`).
- `/v1/operations/chain-credit/...`: the bank's operations staff (an operations credential with
  `operations:read` / `operations:write`), naming the target tenant explicitly.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Query
from sqlalchemy.orm import Session

from gateway import patterns
from gateway.auth import require_operations, require_scope
from gateway.clock import IsoDate
from gateway.db import get_session
from gateway.errors import error_responses
from gateway.idempotency import idempotency
from gateway.money import Money
from gateway.pagination import MAX_CURSOR_LENGTH
from gateway.routing import Router
from gateway.tenancy import Principal, get_tenant
from products.chain_credit import schemas, service, views
from products.chain_credit.schemas import CertificateStatus

READ = require_scope("chain_credit:read")
WRITE = require_scope("chain_credit:write")
OPS_READ = require_operations(write=False)
OPS_WRITE = require_operations(write=True)
MONEY_MOVES = [Depends(idempotency(required=True))]
ONCE = [Depends(idempotency())]

LIMIT = Query(20, ge=1, le=100, description="Page size (1-100)")
CURSOR = Query(None, max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page")

partner = Router(prefix="/chain-credit", tags=["chain-credit"])
operations = Router(prefix="/operations/chain-credit", tags=["chain-credit-operations"])
router = Router(prefix="/v1", responses=error_responses(400, 401, 403, 422, 429))


def setup(app: FastAPI) -> None:
    """Register the product's scheduled work (maturity, quotes, facility expiry, repayments)."""
    from products.chain_credit import jobs

    jobs.register()


def _target_tenant(session: Session, principal: Principal, tenant_id: str) -> str:
    """Operations act on a tenant of their own environment only (sandbox never meets production)."""
    tenant = get_tenant(session, tenant_id)
    if tenant.environment != principal.environment:
        from gateway.errors import NotFound

        raise NotFound("No such tenant.", code="tenant_not_found")
    return tenant.id


# --- facilities (partner) -----------------------------------------------------------------


@partner.get("/facilities", summary="List the credit facilities of the chain's core enterprises",
             response_model=schemas.FacilityPage)
def list_credit_facilities(status: str | None = Query(None, pattern=patterns.choices("active", "frozen", "expired")),
                           limit: int = LIMIT, cursor: str | None = CURSOR,
                           principal: Principal = Depends(READ),
                           session: Session = Depends(get_session)) -> schemas.FacilityPage:
    rows, nxt = service.list_facilities(session, principal.tenant_id, limit=limit, cursor=cursor,
                                        status=status)
    return schemas.FacilityPage(data=[views.facility_out(f) for f in rows], next_cursor=nxt)


@partner.get("/facilities/{facility_id}", summary="Get a credit facility",
             response_model=schemas.FacilityOut, responses=error_responses(404))
def get_credit_facility(facility_id: str, principal: Principal = Depends(READ),
                        session: Session = Depends(get_session)) -> schemas.FacilityOut:
    from products.chain_credit import repository

    return views.facility_out(repository.get_facility(session, principal.tenant_id, facility_id))


def _utilisation_out(u: service.Utilisation) -> schemas.FacilityUtilisation:
    f = u.facility
    return schemas.FacilityUtilisation(
        facility_id=f.id, limit=Money.of(f.limit_fen), outstanding=Money.of(f.outstanding_fen),
        available=Money.of(max(0, f.limit_fen - f.outstanding_fen)),
        awaiting_acceptance=Money.of(u.awaiting_acceptance_fen), overdue=Money.of(u.overdue_fen),
        financing_applications=Money.of(u.applications_fen),
        by_tier=[schemas.TierUtilisation(tier=e["tier"], holder_type=e["holder_type"],
                                         holders=e["holders"], certificates=e["certificates"],
                                         amount=Money.of(e["amount_fen"])) for e in u.by_tier])


@partner.get("/facilities/{facility_id}/utilisation",
             summary="Facility utilisation: unpaid certificates by their holders' tier",
             response_model=schemas.FacilityUtilisation, responses=error_responses(404))
def get_facility_utilisation(facility_id: str, principal: Principal = Depends(READ),
                             session: Session = Depends(get_session)) -> schemas.FacilityUtilisation:
    return _utilisation_out(service.facility_utilisation(session, principal.tenant_id, facility_id))


# --- members ------------------------------------------------------------------------------


@partner.post("/members", summary="Register a chain member (core enterprise, supplier, distributor)",
              response_model=schemas.MemberOut, status_code=201, dependencies=ONCE,
              responses=error_responses(409))
def create_chain_member(body: schemas.MemberCreate, principal: Principal = Depends(WRITE),
                        session: Session = Depends(get_session)) -> schemas.MemberOut:
    member = service.create_member(
        session, principal.tenant_id, name=body.name, uscc=body.uscc,
        settlement_account_id=body.settlement_account_id, role=body.role,
        upstream_member_id=body.upstream_member_id, tier=body.tier, actor=principal.client_id)
    return views.member_out(member)


@partner.get("/members", summary="List chain members", response_model=schemas.MemberPage)
def list_chain_members(role: schemas.MemberRole | None = None,
                       tier: int | None = Query(None, ge=0, le=20),
                       core_enterprise_id: str | None = Query(None, max_length=40),
                       upstream_member_id: str | None = Query(None, max_length=40),
                       limit: int = LIMIT, cursor: str | None = CURSOR,
                       principal: Principal = Depends(READ),
                       session: Session = Depends(get_session)) -> schemas.MemberPage:
    rows, nxt = service.list_members(session, principal.tenant_id, limit=limit, cursor=cursor, role=role,
                                     tier=tier, core_enterprise_id=core_enterprise_id,
                                     upstream_member_id=upstream_member_id)
    return schemas.MemberPage(data=[views.member_out(m) for m in rows], next_cursor=nxt)


@partner.get("/members/{member_id}", summary="Get a chain member", response_model=schemas.MemberOut,
             responses=error_responses(404))
def get_chain_member(member_id: str, principal: Principal = Depends(READ),
                     session: Session = Depends(get_session)) -> schemas.MemberOut:
    from products.chain_credit import repository

    return views.member_out(repository.get_member(session, principal.tenant_id, member_id))


# --- payables certificates ----------------------------------------------------------------


def _change(cert: Any, children: list[Any]) -> schemas.CertificateChange:
    return schemas.CertificateChange(certificate=views.certificate_out(cert),
                                     children=[views.certificate_out(c) for c in children])


@partner.post("/payables-certificates", summary="Issue a payables certificate to a tier-1 member",
              description="Within the facility's available limit; the maturity date from tomorrow "
                          "to 365 days ahead and on or before the facility's expiry. Refusals: 422 "
                          "`invalid_maturity_date` (`errors` points at `body.maturity_date`); 409 "
                          "`no_credit_facility`, `credit_facility_expired`, "
                          "`credit_facility_frozen`, `facility_limit_exceeded` (with `available`), "
                          "`invoice_already_used`, `invoice_already_financed`; 403 "
                          "`not_core_enterprise`.",
              response_model=schemas.CertificateOut, status_code=201, dependencies=MONEY_MOVES,
              responses=error_responses(409))
def issue_payables_certificate(body: schemas.CertificateIssue, principal: Principal = Depends(WRITE),
                               session: Session = Depends(get_session)) -> schemas.CertificateOut:
    cert = service.issue_certificate(
        session, principal.tenant_id, acting_member_id=body.acting_member_id,
        to_member_id=body.to_member_id, amount_fen=body.amount.fen, maturity_date=body.maturity_date,
        invoice_numbers=body.invoice_numbers, contract_number=body.contract_number,
        actor=principal.client_id)
    return views.certificate_out(cert)


@partner.get("/payables-certificates", summary="List payables certificates",
             response_model=schemas.CertificatePage)
def list_payables_certificates(
        status: CertificateStatus | None = None,
        holder_member_id: str | None = Query(None, max_length=40),
        root_id: str | None = Query(None, max_length=40),
        facility_id: str | None = Query(None, max_length=40),
        held_by_bank: bool | None = None,
        maturity_from: IsoDate | None = None, maturity_to: IsoDate | None = None,
        limit: int = LIMIT, cursor: str | None = CURSOR,
        principal: Principal = Depends(READ),
        session: Session = Depends(get_session)) -> schemas.CertificatePage:
    rows, nxt = service.list_certificates(
        session, principal.tenant_id, limit=limit, cursor=cursor, status=status,
        holder_member_id=holder_member_id, root_id=root_id, facility_id=facility_id,
        held_by_bank=held_by_bank, maturity_from=maturity_from, maturity_to=maturity_to)
    return schemas.CertificatePage(data=[views.certificate_out(c) for c in rows], next_cursor=nxt)


@partner.get("/payables-certificates/financing-quotes/{quote_id}", summary="Get a financing quote",
             response_model=schemas.QuoteOut, responses=error_responses(404))
def get_financing_quote(quote_id: str, principal: Principal = Depends(READ),
                        session: Session = Depends(get_session)) -> schemas.QuoteOut:
    return views.quote_out(service.get_quote(session, principal.tenant_id, quote_id))


@partner.post("/payables-certificates/financing-quotes/{quote_id}/accept",
              summary="Accept a financing quote: the holder is paid, the bank holds the certificate",
              description="A quote is a price: accepted before `valid_until` it pays exactly its "
                          "`net_amount` (its `days` and `discount` stand even if the business date "
                          "has changed since it was made). What the quote relied on is checked "
                          "again, with the codes quoting gives, and a refusal moves no money. "
                          "Refusals: 409 `financing_quote_expired` (past `valid_until`, whether or "
                          "not the quote shows `expired` yet), `credit_facility_frozen`, "
                          "`credit_facility_expired`, `partner_not_active`, "
                          "`certificate_state_conflict`, `certificate_matured`, `invalid_state` "
                          "(the quote was accepted or declined); 403 `not_certificate_holder`; 404 "
                          "`financing_quote_not_found`.",
              response_model=schemas.QuoteAccepted, dependencies=MONEY_MOVES,
              responses=error_responses(404, 409))
def accept_financing_quote(quote_id: str, body: schemas.Acting, principal: Principal = Depends(WRITE),
                           session: Session = Depends(get_session)) -> schemas.QuoteAccepted:
    quote, cert = service.accept_financing_quote(session, principal.tenant_id, quote_id,
                                                 acting_member_id=body.acting_member_id)
    return schemas.QuoteAccepted(quote=views.quote_out(quote), certificate=views.certificate_out(cert))


@partner.post("/payables-certificates/financing-quotes/{quote_id}/decline",
              summary="Decline a financing quote", response_model=schemas.QuoteOut, dependencies=ONCE,
              responses=error_responses(404, 409))
def decline_financing_quote(quote_id: str, body: schemas.Acting, principal: Principal = Depends(WRITE),
                            session: Session = Depends(get_session)) -> schemas.QuoteOut:
    return views.quote_out(service.decline_financing_quote(
        session, principal.tenant_id, quote_id, acting_member_id=body.acting_member_id))


@partner.get("/payables-certificates/{certificate_id}", summary="Get a payables certificate",
             response_model=schemas.CertificateOut, responses=error_responses(404))
def get_payables_certificate(certificate_id: str, principal: Principal = Depends(READ),
                             session: Session = Depends(get_session)) -> schemas.CertificateOut:
    return views.certificate_out(service.get_certificate(session, principal.tenant_id, certificate_id))


@partner.post("/payables-certificates/{certificate_id}/accept", summary="Accept (sign for) a certificate",
              response_model=schemas.CertificateOut, dependencies=ONCE,
              responses=error_responses(404, 409))
def accept_payables_certificate(certificate_id: str, body: schemas.Acting,
                                principal: Principal = Depends(WRITE),
                                session: Session = Depends(get_session)) -> schemas.CertificateOut:
    return views.certificate_out(service.accept_certificate(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id))


@partner.post("/payables-certificates/{certificate_id}/reject", summary="Reject an issued certificate",
              response_model=schemas.CertificateOut, dependencies=ONCE,
              responses=error_responses(404, 409))
def reject_payables_certificate(certificate_id: str, body: schemas.CertificateReject,
                                principal: Principal = Depends(WRITE),
                                session: Session = Depends(get_session)) -> schemas.CertificateOut:
    return views.certificate_out(service.reject_certificate(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id,
        reason=body.reason))


@partner.post("/payables-certificates/{certificate_id}/cancel",
              summary="Cancel a certificate not yet accepted (issuer only)",
              response_model=schemas.CertificateOut, dependencies=ONCE,
              responses=error_responses(404, 409))
def cancel_payables_certificate(certificate_id: str, body: schemas.Acting,
                                principal: Principal = Depends(WRITE),
                                session: Session = Depends(get_session)) -> schemas.CertificateOut:
    return views.certificate_out(service.cancel_certificate(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id))


@partner.post("/payables-certificates/{certificate_id}/split",
              summary="Split a certificate into parts that sum exactly to it",
              response_model=schemas.CertificateChange, dependencies=MONEY_MOVES,
              responses=error_responses(404, 409))
def split_payables_certificate(certificate_id: str, body: schemas.CertificateSplit,
                               principal: Principal = Depends(WRITE),
                               session: Session = Depends(get_session)) -> schemas.CertificateChange:
    cert, children = service.split_certificate(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id,
        parts_fen=[p.fen for p in body.parts])
    return _change(cert, children)


@partner.post("/payables-certificates/{certificate_id}/transfer",
              summary="Transfer a whole certificate to another member of the chain",
              response_model=schemas.CertificateChange, dependencies=MONEY_MOVES,
              responses=error_responses(404, 409))
def transfer_payables_certificate(certificate_id: str, body: schemas.CertificateTransfer,
                                  principal: Principal = Depends(WRITE),
                                  session: Session = Depends(get_session)) -> schemas.CertificateChange:
    cert, child = service.transfer_certificate(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id,
        to_member_id=body.to_member_id)
    return _change(cert, [child])


@partner.post("/payables-certificates/{certificate_id}/financing-quotes",
              summary="Ask the bank for a financing (discount) quote",
              description="discount = face x rate x days / 360 (days from today to maturity); the "
                          "certificate is reserved until the quote is accepted, declined or lapses "
                          "(`valid_until`: 15 minutes, never past the start of the maturity date). "
                          "Refusals: 409 `credit_facility_frozen`, `credit_facility_expired`, "
                          "`partner_not_active`, `certificate_state_conflict` (an open quote "
                          "exists, or the certificate cannot be financed in its state), "
                          "`certificate_matured`, `certificate_not_financeable`; 403 "
                          "`not_certificate_holder`.",
              response_model=schemas.QuoteOut, status_code=201, dependencies=ONCE,
              responses=error_responses(404, 409))
def request_financing_quote(certificate_id: str, body: schemas.Acting,
                            principal: Principal = Depends(WRITE),
                            session: Session = Depends(get_session)) -> schemas.QuoteOut:
    return views.quote_out(service.request_financing_quote(
        session, principal.tenant_id, certificate_id, acting_member_id=body.acting_member_id))


@partner.get("/payables-certificates/{certificate_id}/lineage",
             summary="The certificate's whole tree from its root (see-through view)",
             response_model=schemas.Lineage, responses=error_responses(404))
def get_certificate_lineage(certificate_id: str, principal: Principal = Depends(READ),
                            session: Session = Depends(get_session)) -> schemas.Lineage:
    view = service.lineage(session, principal.tenant_id, certificate_id)
    nodes = []
    for node, is_leaf in view.nodes:
        holder = view.members.get(node.holder_member_id or "")
        nodes.append(schemas.LineageNode(
            id=node.id, parent_id=node.parent_id, depth=node.depth,
            holder_type=node.holder_type,  # type: ignore[arg-type]
            holder_member_id=node.holder_member_id, holder_name=holder.name if holder else None,
            holder_tier=holder.tier if holder else None, amount=Money.of(node.face_fen),
            status=node.status, is_leaf=is_leaf))
    return schemas.Lineage(root_id=view.root.id, amount=Money.of(view.root.face_fen),
                           live_leaves_total=Money.of(view.unpaid_leaves_fen), nodes=nodes)


# --- factoring and order financing --------------------------------------------------------


@partner.post("/financing-applications",
              summary="Apply for receivables factoring or order financing",
              response_model=schemas.FinancingApplicationOut, status_code=201, dependencies=ONCE,
              responses=error_responses(409))
def create_financing_application(body: schemas.ApplicationCreate, principal: Principal = Depends(WRITE),
                                 session: Session = Depends(get_session)) -> schemas.FinancingApplicationOut:
    app = service.create_application(
        session, principal.tenant_id, acting_member_id=body.acting_member_id, kind=body.kind,
        amount_fen=body.amount.fen,
        references=body.invoice_numbers or body.purchase_order_numbers or [],
        counterparty_member_id=body.counterparty_member_id)
    return views.application_out(app)


@partner.get("/financing-applications", summary="List factoring and order-financing applications",
             response_model=schemas.ApplicationPage)
def list_financing_applications(
        kind: schemas.ApplicationKind | None = None,
        status: str | None = Query(None, pattern=patterns.choices("submitted", "disbursed", "declined", "repaid", "overdue")),
        applicant_id: str | None = Query(None, max_length=40),
        limit: int = LIMIT, cursor: str | None = CURSOR, principal: Principal = Depends(READ),
        session: Session = Depends(get_session)) -> schemas.ApplicationPage:
    rows, nxt = service.list_applications(session, principal.tenant_id, limit=limit, cursor=cursor,
                                          kind=kind, status=status, applicant_id=applicant_id)
    return schemas.ApplicationPage(data=[views.application_out(a) for a in rows], next_cursor=nxt)


@partner.get("/financing-applications/{application_id}", summary="Get a financing application",
             response_model=schemas.FinancingApplicationOut, responses=error_responses(404))
def get_financing_application(application_id: str, principal: Principal = Depends(READ),
                              session: Session = Depends(get_session)) -> schemas.FinancingApplicationOut:
    return views.application_out(service.get_application(session, principal.tenant_id, application_id))


# --- risk events --------------------------------------------------------------------------


@partner.get("/risk-events", summary="List risk events on the chain's core enterprises",
             response_model=schemas.RiskEventPage)
def list_chain_risk_events(core_enterprise_id: str | None = Query(None, max_length=40),
                           type: schemas.RiskType | None = None,
                           limit: int = LIMIT, cursor: str | None = CURSOR,
                           principal: Principal = Depends(READ),
                           session: Session = Depends(get_session)) -> schemas.RiskEventPage:
    rows, nxt = service.list_risk_events(session, principal.tenant_id, limit=limit, cursor=cursor,
                                         core_enterprise_id=core_enterprise_id, type=type)
    return schemas.RiskEventPage(data=[views.risk_event_out(e) for e in rows], next_cursor=nxt)


# --- operations (bank staff) --------------------------------------------------------------


@operations.post("/facilities", summary="Grant a core enterprise a credit facility, or renew an expired one",
                 response_model=schemas.FacilityOut, status_code=201, dependencies=MONEY_MOVES,
                 responses=error_responses(404, 409))
def grant_credit_facility(body: schemas.FacilityGrant, principal: Principal = Depends(OPS_WRITE),
                          session: Session = Depends(get_session)) -> schemas.FacilityOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    facility = service.grant_facility(
        session, tenant_id=tenant_id, core_enterprise_id=body.core_enterprise_id,
        limit_fen=body.limit.fen, expires_on=body.expires_on, guarantee_circle=body.guarantee_circle,
        discount_rate=body.discount_rate, actor=principal.client_id)
    return views.facility_out(facility)


@operations.get("/facilities", summary="List a tenant's credit facilities",
                response_model=schemas.FacilityPage, responses=error_responses(404))
def list_tenant_credit_facilities(tenant_id: str = Query(..., max_length=40),
                                  status: str | None = Query(None, pattern=patterns.choices("active", "frozen", "expired")),
                                  limit: int = LIMIT, cursor: str | None = CURSOR,
                                  principal: Principal = Depends(OPS_READ),
                                  session: Session = Depends(get_session)) -> schemas.FacilityPage:
    tenant_id = _target_tenant(session, principal, tenant_id)
    rows, nxt = service.list_facilities(session, tenant_id, limit=limit, cursor=cursor, status=status)
    return schemas.FacilityPage(data=[views.facility_out(f) for f in rows], next_cursor=nxt)


@operations.post("/facilities/{facility_id}/freeze", summary="Freeze a credit facility",
                 response_model=schemas.FacilityOut, dependencies=ONCE,
                 responses=error_responses(404, 409))
def freeze_credit_facility(facility_id: str, body: schemas.FacilityStatusChange,
                           principal: Principal = Depends(OPS_WRITE),
                           session: Session = Depends(get_session)) -> schemas.FacilityOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    return views.facility_out(service.freeze_facility(session, tenant_id, facility_id, reason=body.reason,
                                                      actor=principal.client_id))


@operations.post("/facilities/{facility_id}/unfreeze", summary="Lift a facility's freeze",
                 response_model=schemas.FacilityOut, dependencies=ONCE,
                 responses=error_responses(404, 409))
def unfreeze_credit_facility(facility_id: str, body: schemas.FacilityStatusChange,
                             principal: Principal = Depends(OPS_WRITE),
                             session: Session = Depends(get_session)) -> schemas.FacilityOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    return views.facility_out(service.unfreeze_facility(session, tenant_id, facility_id,
                                                        reason=body.reason, actor=principal.client_id))


@operations.get("/members", summary="List a tenant's chain members",
                response_model=schemas.MemberPage, responses=error_responses(404))
def list_tenant_chain_members(tenant_id: str = Query(..., max_length=40),
                              role: schemas.MemberRole | None = None,
                              limit: int = LIMIT, cursor: str | None = CURSOR,
                              principal: Principal = Depends(OPS_READ),
                              session: Session = Depends(get_session)) -> schemas.MemberPage:
    tenant_id = _target_tenant(session, principal, tenant_id)
    rows, nxt = service.list_members(session, tenant_id, limit=limit, cursor=cursor, role=role)
    return schemas.MemberPage(data=[views.member_out(m) for m in rows], next_cursor=nxt)


@operations.get("/financing-applications", summary="List a tenant's financing applications",
                response_model=schemas.ApplicationPage, responses=error_responses(404))
def list_tenant_financing_applications(
        tenant_id: str = Query(..., max_length=40),
        status: str | None = Query(None, pattern=patterns.choices("submitted", "disbursed", "declined", "repaid", "overdue")),
        limit: int = LIMIT, cursor: str | None = CURSOR, principal: Principal = Depends(OPS_READ),
        session: Session = Depends(get_session)) -> schemas.ApplicationPage:
    tenant_id = _target_tenant(session, principal, tenant_id)
    rows, nxt = service.list_applications(session, tenant_id, limit=limit, cursor=cursor, status=status)
    return schemas.ApplicationPage(data=[views.application_out(a) for a in rows], next_cursor=nxt)


@operations.post("/financing-applications/{application_id}/approve",
                 summary="Approve an application; the ledger disburses at once",
                 description="Factoring and order financing are credit under the chain's core "
                             "enterprise's facility: the approved principal must be within its "
                             "available limit and counts in its `outstanding` until repaid. "
                             "Refusals: 409 `facility_limit_exceeded` (with `available`), "
                             "`no_credit_facility`, `credit_facility_expired`, "
                             "`credit_facility_frozen`, `partner_not_active`, "
                             "`invoice_already_financed`, `purchase_order_already_financed`, "
                             "`invalid_state`; 422 `approval_exceeds_request`, `invalid_due_date`.",
                 response_model=schemas.FinancingApplicationOut, dependencies=MONEY_MOVES,
                 responses=error_responses(404, 409))
def approve_financing_application(application_id: str, body: schemas.ApplicationApprove,
                                  principal: Principal = Depends(OPS_WRITE),
                                  session: Session = Depends(get_session)) -> schemas.FinancingApplicationOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    return views.application_out(service.approve_application(
        session, tenant_id, application_id, amount_fen=body.amount.fen, annual_rate=body.annual_rate,
        due_date=body.due_date, actor=principal.client_id))


@operations.post("/financing-applications/{application_id}/decline",
                 summary="Decline a financing application",
                 response_model=schemas.FinancingApplicationOut, dependencies=ONCE,
                 responses=error_responses(404, 409))
def decline_financing_application(application_id: str, body: schemas.ApplicationDecline,
                                  principal: Principal = Depends(OPS_WRITE),
                                  session: Session = Depends(get_session)) -> schemas.FinancingApplicationOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    return views.application_out(service.decline_application(
        session, tenant_id, application_id, reason=body.reason, actor=principal.client_id))


@operations.post("/risk-events", summary="Record a risk event on a core enterprise",
                 response_model=schemas.RiskEventOut, status_code=201, dependencies=ONCE,
                 responses=error_responses(404, 409))
def record_chain_risk_event(body: schemas.RiskEventCreate, principal: Principal = Depends(OPS_WRITE),
                            session: Session = Depends(get_session)) -> schemas.RiskEventOut:
    tenant_id = _target_tenant(session, principal, body.tenant_id)
    event = service.record_risk_event(
        session, tenant_id, core_enterprise_id=body.core_enterprise_id, member_id=body.member_id,
        type=body.type, description=body.description, source="operations", actor=principal.client_id)
    return views.risk_event_out(event)


@operations.get("/risk-events", summary="List a tenant's risk events",
                response_model=schemas.RiskEventPage, responses=error_responses(404))
def list_tenant_risk_events(tenant_id: str = Query(..., max_length=40),
                            limit: int = LIMIT, cursor: str | None = CURSOR,
                            principal: Principal = Depends(OPS_READ),
                            session: Session = Depends(get_session)) -> schemas.RiskEventPage:
    tenant_id = _target_tenant(session, principal, tenant_id)
    rows, nxt = service.list_risk_events(session, tenant_id, limit=limit, cursor=cursor)
    return schemas.RiskEventPage(data=[views.risk_event_out(e) for e in rows], next_cursor=nxt)


router.include_router(partner)
router.include_router(operations)
