"""The console's chain-credit pages: one tenant's (a partner in one environment) facilities,
financing applications and risk events, as `/v1/operations/chain-credit/...` offers them.

Thin on purpose: each form is checked by the operations API's own request model and each action
is the service call the operations router makes, so the rules, the evidence entry and the event
are the API's. What is decided here is only which operators may press the buttons.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.db import get_session
from gateway.errors import Problem, ValidationFailed, validation_message
from gateway.routing import Router
from gateway.tenancy import Partner, Tenant, clock_for, get_tenant, partner_states
from partners.console import forms
from partners.console.paging import page_number, paginate
from partners.console.session import Console, check_csrf, console_user, error_page, render
from partners.models import Operator
from partners.operators import can, require
from products.chain_credit import repository, schemas, service, views
from products.chain_credit.models import ChainMember, CreditFacility

router = Router(include_in_schema=False)

# Granting credit, approving financing and recording risk are credit decisions
# (`partners.operators.PERMISSIONS`): approvers and admins decide, reviewers and auditors read.
DECIDE = "chain_credit.decide"
PAGE_SIZE = 50
RISK_TYPES = get_args(schemas.RiskType)
# The forms' labels, to name the field a validation message is about.
LABELS = {"core_enterprise_id": "Core enterprise", "limit": "Limit", "expires_on": "Expiry date",
          "guarantee_circle": "Guarantee circle", "discount_rate": "Discount rate",
          "amount": "Amount", "annual_rate": "Annual rate", "due_date": "Due date",
          "reason": "Reason", "member_id": "Member", "type": "Type", "description": "Description"}

DONE_MESSAGES = {
    "granted": "Facility granted.",
    "freeze": "Facility frozen: the core enterprise can issue no new certificates.",
    "unfreeze": "Freeze lifted.",
    "approve": "Application approved: the amount is disbursed to the applicant's settlement account.",
    "decline": "Application declined.",
    "risk": "Risk event recorded.",
}


def may_decide(operator: Operator) -> bool:
    return can(operator, DECIDE)


def _require_credit_role(console: Console) -> None:
    require(console.operator, DECIDE)


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """The form as the operations API's request body: the same checks, the same messages."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        messages = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            messages.append(f"{LABELS.get(field, field or 'Form')}: {validation_message(error)}")
        raise ValidationFailed("; ".join(messages)) from None


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount.strip(), "currency": "CNY"}


def _all_core_enterprises(session: Session, tenant_id: str) -> list[ChainMember]:
    cores: list[ChainMember] = []
    cursor = None
    for _ in range(20):  # 2,000 core enterprises in one tenant is far beyond any platform's
        rows, cursor = service.list_members(session, tenant_id, limit=100, cursor=cursor,
                                            role=service.CORE)
        cores.extend(rows)
        if cursor is None:
            break
    return sorted(cores, key=lambda m: m.name)


def _scope(request: Request, session: Session, console: Console, tenant_id: str,
           tab: str) -> dict[str, Any]:
    """What every page of a tenant shows: whose tenant, which environment, its business date."""
    tenant = get_tenant(session, tenant_id)
    partner = session.get(Partner, tenant.partner_id)
    done = request.query_params.get("done")
    if done in DONE_MESSAGES:
        console.flashes.append(("ok", DONE_MESSAGES[done]))
    return {"tenant": tenant, "partner": partner, "tab": tab,
            "in_service": _in_service(partner, tenant),
            "today": clock_for(session, tenant.id).today(), "may_decide": may_decide(console.operator)}


def _in_service(partner: Partner | None, tenant: Tenant) -> bool:
    """Whether the partner may use this tenant at all: the states in which the gateway accepts
    its tokens there (gateway.tenancy.partner_states; production: active only)."""
    return partner is not None and partner.status in partner_states(tenant.environment)


def _refused(session: Session, console: Console, exc: Problem) -> None:
    # The refused action may have flushed part of its work: the page is drawn from what is
    # committed (the middleware rolls back again for the error status).
    session.rollback()
    console.flashes.append(("error", exc.detail or exc.title))


# --- tenants ------------------------------------------------------------------------------

@router.get("/console/chain-credit", response_class=HTMLResponse)
def console_chain_credit(request: Request, environment: str = "production", q: str = "",
                         page: str = "1", console: Console = Depends(console_user),
                         session: Session = Depends(get_session)) -> Response:
    cores = (select(ChainMember.tenant_id, func.count().label("n"))
             .where(ChainMember.role == service.CORE).group_by(ChainMember.tenant_id).subquery())
    facilities = (select(CreditFacility.tenant_id, func.count().label("n"))
                  .group_by(CreditFacility.tenant_id).subquery())
    query = (select(Tenant, Partner, cores.c.n, func.coalesce(facilities.c.n, 0))
             .join(Partner, Partner.id == Tenant.partner_id)
             .join(cores, cores.c.tenant_id == Tenant.id)
             .outerjoin(facilities, facilities.c.tenant_id == Tenant.id))
    if environment in ("production", "sandbox"):
        query = query.where(Tenant.environment == environment)
    q = q.strip()[:200]
    if q:
        query = query.where(func.lower(Partner.name).contains(q.lower()) | (Partner.id == q)
                            | (Tenant.id == q))
    rows = paginate(session, query.order_by(Partner.name, Tenant.environment, Tenant.id),
                    page_number(page), params={"environment": environment, "q": q})
    return render(request, "chain_credit_tenants.html", {
        "page": rows, "environment": environment, "q": q}, console=console)


@router.get("/console/chain-credit/{tenant_id}")
def console_chain_credit_tenant(tenant_id: str,
                                console: Console = Depends(console_user)) -> Response:
    return RedirectResponse(f"/console/chain-credit/{tenant_id}/facilities", status_code=303)


# --- facilities ---------------------------------------------------------------------------

def _facilities_page(request: Request, session: Session, console: Console, tenant_id: str, *,
                     cursor: str | None = None, form: dict[str, Any] | None = None,
                     status: int = 200) -> Response:
    context = _scope(request, session, console, tenant_id, "facilities")
    facilities, next_cursor = service.list_facilities(session, tenant_id, limit=PAGE_SIZE,
                                                      cursor=cursor or None)
    cores = _all_core_enterprises(session, tenant_id)
    today = context["today"]
    rows = [(views.facility_out(f), service.effective_status(f, today)) for f in facilities]
    return render(request, "chain_credit_facilities.html", {
        **context, "rows": rows, "next_cursor": next_cursor, "cores": cores,
        "names": {m.id: m.name for m in cores},
        "form": form or {"expires_on": (today + timedelta(days=365)).isoformat()},
    }, console=console, status=status)


@router.get("/console/chain-credit/{tenant_id}/facilities", response_class=HTMLResponse)
def console_facilities(request: Request, tenant_id: str, cursor: str = "",
                       console: Console = Depends(console_user),
                       session: Session = Depends(get_session)) -> Response:
    try:
        return _facilities_page(request, session, console, tenant_id, cursor=cursor[:200])
    except Problem as exc:
        return error_page(request, exc, console, back="/console/chain-credit")


@router.post("/console/chain-credit/{tenant_id}/facilities", response_class=HTMLResponse)
def console_grant_facility(request: Request, tenant_id: str,
                           core_enterprise_id: str = Form("", max_length=40),
                           limit: str = Form("", max_length=30),
                           expires_on: str = Form("", max_length=10),
                           guarantee_circle: str = Form("", max_length=64),
                           discount_rate: str = Form("", max_length=20),
                           csrf_token: str = Form("", max_length=100),
                           console: Console = Depends(console_user),
                           session: Session = Depends(get_session)) -> Response:
    back = f"/console/chain-credit/{tenant_id}/facilities"
    form = {"core_enterprise_id": core_enterprise_id, "limit": limit, "expires_on": expires_on,
            "guarantee_circle": guarantee_circle, "discount_rate": discount_rate}
    try:
        check_csrf(request, console.csrf, csrf_token)
        _require_credit_role(console)
        tenant = get_tenant(session, tenant_id)
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    try:
        body = _validated(schemas.FacilityGrant, {
            "tenant_id": tenant.id, "core_enterprise_id": core_enterprise_id, "limit": _money(limit),
            "expires_on": expires_on, "guarantee_circle": guarantee_circle,
            "discount_rate": discount_rate.strip()})
        service.grant_facility(
            session, tenant_id=tenant.id, core_enterprise_id=body.core_enterprise_id,
            limit_fen=body.limit.fen, expires_on=body.expires_on,
            guarantee_circle=body.guarantee_circle, discount_rate=body.discount_rate,
            actor=console.operator.id)
    except Problem as exc:
        _refused(session, console, exc)
        return _facilities_page(request, session, console, tenant_id, form=form,
                                status=exc.status)
    return RedirectResponse(back + "?done=granted", status_code=303)


@router.post("/console/chain-credit/{tenant_id}/facilities/{facility_id}/{change}",
             response_class=HTMLResponse)
def console_change_facility(request: Request, tenant_id: str, facility_id: str, change: str,
                            reason: str = Form("", max_length=500),
                            csrf_token: str = Form("", max_length=100),
                            console: Console = Depends(console_user),
                            session: Session = Depends(get_session)) -> Response:
    back = f"/console/chain-credit/{tenant_id}/facilities"
    try:
        check_csrf(request, console.csrf, csrf_token)
        _require_credit_role(console)
        tenant = get_tenant(session, tenant_id)
        if change not in ("freeze", "unfreeze"):
            raise ValidationFailed(f"Unknown change {change!r}.", code="unknown_action")
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    action = service.freeze_facility if change == "freeze" else service.unfreeze_facility
    try:
        body = _validated(schemas.FacilityStatusChange, {"tenant_id": tenant.id,
                                                          "reason": reason.strip()})
        action(session, tenant.id, facility_id, reason=body.reason, actor=console.operator.id)
    except Problem as exc:
        _refused(session, console, exc)
        return _facilities_page(request, session, console, tenant_id, status=exc.status)
    return RedirectResponse(f"{back}?done={change}", status_code=303)


# --- financing applications ---------------------------------------------------------------

APPLICATION_STATUSES = ("submitted", "disbursed", "declined", "repaid", "overdue")


def _applications_page(request: Request, session: Session, console: Console, tenant_id: str, *,
                       status: str = "submitted", cursor: str | None = None,
                       code: int = 200) -> Response:
    context = _scope(request, session, console, tenant_id, "applications")
    status = status if status in APPLICATION_STATUSES else ""
    applications, next_cursor = service.list_applications(
        session, tenant_id, limit=PAGE_SIZE, cursor=cursor or None, status=status or None)
    names = {m.id: m.name for m in repository.members(
        session, tenant_id, {a.applicant_id for a in applications}
        | {a.counterparty_id for a in applications if a.counterparty_id}).values()}
    return render(request, "chain_credit_applications.html", {
        **context, "rows": [views.application_out(a) for a in applications],
        "next_cursor": next_cursor, "status": status, "statuses": APPLICATION_STATUSES,
        "names": names, "default_due": (context["today"] + timedelta(days=90)).isoformat(),
    }, console=console, status=code)


@router.get("/console/chain-credit/{tenant_id}/applications", response_class=HTMLResponse)
def console_financing_applications(request: Request, tenant_id: str, status: str = "submitted",
                                   cursor: str = "", console: Console = Depends(console_user),
                                   session: Session = Depends(get_session)) -> Response:
    try:
        return _applications_page(request, session, console, tenant_id, status=status,
                                  cursor=cursor[:200])
    except Problem as exc:
        return error_page(request, exc, console, back="/console/chain-credit")


@router.post("/console/chain-credit/{tenant_id}/applications/{application_id}/{decision}",
             response_class=HTMLResponse)
def console_decide_application(request: Request, tenant_id: str, application_id: str,
                               decision: str, amount: str = Form("", max_length=30),
                               annual_rate: str = Form("", max_length=20),
                               due_date: str = Form("", max_length=10),
                               reason: str = Form("", max_length=500),
                               csrf_token: str = Form("", max_length=100),
                               console: Console = Depends(console_user),
                               session: Session = Depends(get_session)) -> Response:
    back = f"/console/chain-credit/{tenant_id}/applications"
    try:
        check_csrf(request, console.csrf, csrf_token)
        _require_credit_role(console)
        tenant = get_tenant(session, tenant_id)
        if decision not in ("approve", "decline"):
            raise ValidationFailed(f"Unknown decision {decision!r}.", code="unknown_action")
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    try:
        if decision == "approve":
            body = _validated(schemas.ApplicationApprove, {
                "tenant_id": tenant.id, "amount": _money(amount),
                "annual_rate": annual_rate.strip(), "due_date": due_date})
            service.approve_application(
                session, tenant.id, application_id, amount_fen=body.amount.fen,
                annual_rate=body.annual_rate, due_date=body.due_date, actor=console.operator.id)
        else:
            declined = _validated(schemas.ApplicationDecline, {"tenant_id": tenant.id,
                                                               "reason": reason.strip()})
            service.decline_application(session, tenant.id, application_id,
                                        reason=declined.reason, actor=console.operator.id)
    except Problem as exc:
        _refused(session, console, exc)
        return _applications_page(request, session, console, tenant_id, code=exc.status)
    return RedirectResponse(f"{back}?done={decision}", status_code=303)


# --- risk events --------------------------------------------------------------------------

def _risk_page(request: Request, session: Session, console: Console, tenant_id: str, *,
               cursor: str | None = None, form: dict[str, Any] | None = None,
               form_token: str | None = None, status: int = 200) -> Response:
    context = _scope(request, session, console, tenant_id, "risk")
    events, next_cursor = service.list_risk_events(session, tenant_id, limit=PAGE_SIZE,
                                                   cursor=cursor or None)
    cores = _all_core_enterprises(session, tenant_id)
    return render(request, "chain_credit_risk.html", {
        **context, "rows": [views.risk_event_out(e) for e in events], "next_cursor": next_cursor,
        "cores": cores, "names": {m.id: m.name for m in cores}, "types": RISK_TYPES,
        "form": form or {}, "form_token": form_token or forms.new_token(),
    }, console=console, status=status)


@router.get("/console/chain-credit/{tenant_id}/risk-events", response_class=HTMLResponse)
def console_risk_events(request: Request, tenant_id: str, cursor: str = "",
                        console: Console = Depends(console_user),
                        session: Session = Depends(get_session)) -> Response:
    try:
        return _risk_page(request, session, console, tenant_id, cursor=cursor[:200])
    except Problem as exc:
        return error_page(request, exc, console, back="/console/chain-credit")


@router.post("/console/chain-credit/{tenant_id}/risk-events", response_class=HTMLResponse)
def console_record_risk_event(request: Request, tenant_id: str,
                              core_enterprise_id: str = Form("", max_length=40),
                              member_id: str = Form("", max_length=40),
                              type: str = Form("", max_length=40),
                              description: str = Form("", max_length=1000),
                              form_token: str = Form("", max_length=100),
                              csrf_token: str = Form("", max_length=100),
                              console: Console = Depends(console_user),
                              session: Session = Depends(get_session)) -> Response:
    back = f"/console/chain-credit/{tenant_id}/risk-events"
    form = {"core_enterprise_id": core_enterprise_id, "member_id": member_id, "type": type,
            "description": description}
    try:
        check_csrf(request, console.csrf, csrf_token)
        _require_credit_role(console)
        tenant = get_tenant(session, tenant_id)
        # The same form posted again (a retry, a second tab): its first result, nothing new.
        earlier = forms.earlier_result(session, console.operator, form_token)
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    if earlier is not None:
        return RedirectResponse(earlier, status_code=303)
    try:
        body = _validated(schemas.RiskEventCreate, {
            "tenant_id": tenant.id, "core_enterprise_id": core_enterprise_id,
            "member_id": member_id.strip() or None, "type": type,
            "description": description.strip()})
        service.record_risk_event(
            session, tenant.id, core_enterprise_id=body.core_enterprise_id,
            member_id=body.member_id, type=body.type, description=body.description,
            source="operations", actor=console.operator.id)
    except Problem as exc:
        _refused(session, console, exc)
        return _risk_page(request, session, console, tenant_id, form=form,
                          form_token=form_token, status=exc.status)
    forms.record(session, console.operator, form_token, f"{back}?done=risk")
    return RedirectResponse(f"{back}?done=risk", status_code=303)
