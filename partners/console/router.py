"""The operations console at /console: server-rendered pages and plain HTML forms.

Every page needs a logged-in operator; every form posts a CSRF token. What an operator may do
is decided by the services (workflow roles, partners.operators.PERMISSIONS), so an auditor's
forged POST is refused exactly like a button it never saw. Errors render as HTML pages with
the problem's status, and the request's transaction rolls back.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.clock import business_date
from gateway.db import get_session
from gateway.errors import Problem, ValidationFailed
from gateway.events import Event
from gateway.oauth.clients import partner_clients
from gateway.oauth.models import OAuthClient
from gateway.ratelimit import rate_limit_public
from gateway.routing import Router
from partners import applications, credentials, operators, workflow
from partners.api import application_body
from partners.console import chain_credit, forms
from partners.console.paging import page_number, paginate
from partners.console.session import (
    APPLY_CSRF_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Console,
    check_csrf,
    clear_cookie,
    console_user,
    error_page,
    new_csrf,
    render,
    set_cookie,
)
from partners.errors import ClientNotFound, RoleRequired
from partners.models import Operator
from partners.operations import publish_operations_event
from partners.schemas import PARTNER_TYPES, PRODUCTS, ApplicationIn
from partners.settings import get_partner_settings
from partners.usage import usage_rows
from partners.webhooks import service as webhooks
from partners.webhooks.models import WebhookDelivery, WebhookEndpoint

router = Router(include_in_schema=False)

DONE_MESSAGES = {
    "review": "Review recorded: the application now waits for an approver.",
    "approve": "Approved. Issue a production client to activate the partner.",
    "reject": "Application rejected.",
    "activate": "Partner activated for production.",
    "suspend": "Partner suspended: its tokens are refused from now on.",
    "reactivate": "Partner reactivated.",
    "offboard": "Partner offboarded: every client is revoked.",
    "revoke": "Client revoked.",
    "retry": "Delivery scheduled for an immediate attempt.",
}


def _names(session: Session) -> dict[str, str]:
    return {o.id: o.display_name for o in operators.list_operators(session)}


def _safe_next(value: str | None) -> str:
    if not value:
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or "\\" in value:
        return "/console"
    return value


# --- login ----------------------------------------------------------------------------------

@router.get("/console/login", response_class=HTMLResponse)
def console_login_page(request: Request, next: str = "/console",
                       session: Session = Depends(get_session)) -> Response:
    if operators.load_session(session, request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_page(request, next, "", status=200, error=None)


# One answer for a wrong password, an unknown user name and a locked account: telling "locked"
# apart would tell which user names exist (partners.operators). It still tells an operator who
# locked themselves out what to do.
LOGIN_FAILED = ("The user name, password or authenticator code is wrong, or the account is "
                "locked after too many failed attempts. Check them and try again; a locked "
                "account opens again after {minutes:g} minutes, or ask an administrator.")
LOGIN_FAILURES = {"bad_credentials": LOGIN_FAILED, "locked": LOGIN_FAILED,
                  "disabled": "This account is disabled."}  # only said after the right password


def _login_page(request: Request, next: str, username: str, *, status: int, error: str | None,
                headers: dict[str, str] | None = None) -> Response:
    """The login form again, with a fresh CSRF token and what went wrong."""
    fresh = new_csrf()
    response = render(request, "login.html", {
        "login_csrf": fresh, "next": _safe_next(next), "username": username, "error": error},
        status=status)
    response.headers.update(headers or {})
    set_cookie(request, response, LOGIN_CSRF_COOKIE, fresh, path="/console")
    return response


@router.post("/console/login", response_class=HTMLResponse)
def console_login(request: Request, username: str = Form("", max_length=64),
                  password: str = Form("", max_length=256), totp: str = Form("", max_length=6),
                  csrf_token: str = Form("", max_length=100),
                  next: str = Form("/console", max_length=500)) -> Response:
    try:
        check_csrf(request, request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token)
    except Problem as exc:
        return error_page(request, exc, None, back="/console/login")
    limiter = request.app.state.rate_limiter
    refused_for = limiter.login_refused_for(request)
    if refused_for is not None:
        # Guessing across many user names from one address: no attempt is even made.
        return _login_page(request, next, username, status=429, headers={
            "Retry-After": str(refused_for)}, error=(
            "Too many failed logins from this address: try again in "
            f"{max(1, math.ceil(refused_for / 60))} minute(s)."))
    database = request.app.state.database
    # Its own transaction: failed attempts must count even though the answer is an error.
    with database.transaction() as session:
        result = operators.attempt_login(session, username, password, totp or None)
        token = None
        if result.operator is not None:
            token, _ = operators.start_session(session, result.operator)
    if token is None:
        limiter.count_login_failure(request)
        minutes = get_partner_settings().login_lockout_minutes
        return _login_page(request, next, username, status=401, error=LOGIN_FAILURES.get(
            result.failure or "", LOGIN_FAILED).format(minutes=minutes))
    response = RedirectResponse(_safe_next(next), status_code=303)
    settings = get_partner_settings()
    set_cookie(request, response, SESSION_COOKIE, token, path="/console",
               max_age=int(settings.console_session_hours * 3600))
    clear_cookie(request, response, LOGIN_CSRF_COOKIE, path="/console")
    return response


@router.post("/console/logout")
def console_logout(request: Request, csrf_token: str = Form("", max_length=100),
                   console: Console = Depends(console_user),
                   session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
    except Problem as exc:
        return error_page(request, exc, console)
    operators.end_session(session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/console/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE, path="/console")
    return response


@router.get("/console")
def console_home(console: Console = Depends(console_user)) -> Response:
    return RedirectResponse("/console/applications", status_code=303)


# --- applications and partners --------------------------------------------------------------

@router.get("/console/applications", response_class=HTMLResponse)
def console_applications(request: Request, status: str = "open", order: str = "oldest",
                         page: str = "1", console: Console = Depends(console_user),
                         session: Session = Depends(get_session)) -> Response:
    statuses = {"open": ["submitted", "in_review"], "all": None}.get(
        status, [status] if status in workflow.STATUSES else ["submitted", "in_review"])
    order = "newest" if order == "newest" else "oldest"
    rows = paginate(session, applications.applications_query(
        statuses=statuses, newest_first=order == "newest"), page_number(page),
        params={"status": status, "order": order})
    return render(request, "applications.html", {"page": rows, "status": status, "order": order,
                                                 "names": _names(session)}, console=console)


@router.get("/console/partners", response_class=HTMLResponse)
def console_partners(request: Request, status: str = "", q: str = "", page: str = "1",
                     console: Console = Depends(console_user),
                     session: Session = Depends(get_session)) -> Response:
    q = q.strip()[:200]
    partners = paginate(session, applications.partners_query(status=status or None,
                                                             query_text=q or None),
                        page_number(page), params={"status": status, "q": q}, scalars=True)
    return render(request, "partners.html", {
        "page": partners, "status": status, "q": q, "statuses": workflow.STATUSES,
        "counts": applications.status_counts(session)}, console=console)


def _partner_page(request: Request, session: Session, console: Console, partner_id: str, *,
                  revealed: bool = False, status: int = 200) -> Response:
    partner = workflow.get_partner(session, partner_id)
    application = applications.application_of(session, partner.id)
    actions = workflow.allowed_actions(partner.status, console.actor)
    if partner.status == "in_review" and workflow.reviewer_of(session, partner.id) == console.operator.id:
        actions = [a for a in actions if a.action != "approve"]
        console.flashes.append(("warn", "You reviewed this application: another operator "
                                        "must approve it (maker-checker)."))
    done = request.query_params.get("done")
    if done in DONE_MESSAGES:
        console.flashes.append(("ok", DONE_MESSAGES[done]))
    contacts: list[dict[str, Any]] = []
    if application is not None:
        contacts = (applications.contacts_of(application) if revealed
                    else applications.masked_contacts(application))
    endpoints = list(session.scalars(select(WebhookEndpoint).where(
        WebhookEndpoint.partner_id == partner.id, WebhookEndpoint.status != "deleted")
        .order_by(WebhookEndpoint.id)))
    today = business_date(clock_module.utcnow())
    return render(request, "partner.html", {
        "partner": partner, "application": application, "contacts": contacts,
        "revealed": revealed, "actions": actions,
        "clients": partner_clients(session, partner.id), "endpoints": endpoints,
        "usage": usage_rows(session, partner_id=partner.id, since=today - timedelta(days=13)),
        "transitions": workflow.history(session, partner.id), "names": _names(session),
        "duplicates": applications.same_uscc(session, application) if application else [],
    }, console=console, status=status)


@router.get("/console/partners/{partner_id}", response_class=HTMLResponse)
def console_partner(request: Request, partner_id: str, console: Console = Depends(console_user),
                    session: Session = Depends(get_session)) -> Response:
    try:
        return _partner_page(request, session, console, partner_id)
    except Problem as exc:
        return error_page(request, exc, console, back="/console/partners")


@router.post("/console/partners/{partner_id}/contacts/reveal", response_class=HTMLResponse)
def console_reveal_contacts(request: Request, partner_id: str,
                            csrf_token: str = Form("", max_length=100),
                            console: Console = Depends(console_user),
                            session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
        partner = workflow.get_partner(session, partner_id)
        # Reading personal data in clear is itself recorded.
        publish_operations_event(session, type="partner_application.contacts_viewed",
                                 resource_type="partner", resource_id=partner.id,
                                 data={"partner_id": partner.id}, actor=console.operator.id)
        return _partner_page(request, session, console, partner_id, revealed=True)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")


@router.post("/console/partners/{partner_id}/transitions")
def console_transition(request: Request, partner_id: str,
                       action: str = Form("", max_length=20),
                       reason: str = Form("", max_length=1000),
                       csrf_token: str = Form("", max_length=100),
                       console: Console = Depends(console_user),
                       session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
        workflow.transition(session, partner_id, action, actor=console.actor, reason=reason)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    return RedirectResponse(f"/console/partners/{partner_id}?done={action}", status_code=303)


# --- credentials ----------------------------------------------------------------------------

def _client_form(partner_name: str) -> dict[str, Any]:
    return {"name": f"{partner_name} production", "environment": "production",
            "scopes": [], "jwks": "", "jwks_uri": "", "rate_plan": "standard",
            "require_dpop": True}


@router.get("/console/partners/{partner_id}/clients/new", response_class=HTMLResponse)
def console_new_client(request: Request, partner_id: str, console: Console = Depends(console_user),
                       session: Session = Depends(get_session)) -> Response:
    try:
        operators.require(console.operator, "clients.manage")
        partner = workflow.get_partner(session, partner_id)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    return render(request, "client_new.html", {
        "partner": partner, "form": _client_form(partner.name), "form_token": forms.new_token(),
        "scopes": credentials.grantable_scopes(partner.partner_type),
        "plans": request.app.state.settings.rate_plans}, console=console)


def _parse_jwks(text: str) -> dict[str, Any] | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise ValidationFailed("The JWKS is not valid JSON.", code="invalid_jwks") from None
    if not isinstance(value, dict):
        raise ValidationFailed("The JWKS must be a JSON object with `keys`.", code="invalid_jwks")
    return value


@router.post("/console/partners/{partner_id}/clients", response_class=HTMLResponse)
def console_issue_client(request: Request, partner_id: str,
                         name: str = Form("", max_length=200),
                         environment: str = Form("production", max_length=12),
                         scopes: list[str] = Form([]),
                         jwks: str = Form("", max_length=20000),
                         jwks_uri: str = Form("", max_length=2000),
                         rate_plan: str = Form("standard", max_length=20),
                         require_dpop: str = Form("", max_length=5),
                         form_token: str = Form("", max_length=100),
                         csrf_token: str = Form("", max_length=100),
                         console: Console = Depends(console_user),
                         session: Session = Depends(get_session)) -> Response:
    form = {"name": name, "environment": environment, "scopes": scopes, "jwks": jwks,
            "jwks_uri": jwks_uri, "rate_plan": rate_plan, "require_dpop": require_dpop == "true"}
    try:
        check_csrf(request, console.csrf, csrf_token)
        operators.require(console.operator, "clients.manage")
        partner = workflow.get_partner(session, partner_id)
        # The same form again (reload, double click, back and resubmit): the first result.
        earlier = forms.earlier_result(session, console.operator, form_token)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    if earlier is not None:
        return RedirectResponse(earlier, status_code=303)
    try:
        issued = credentials.issue_client(
            session, partner_id, actor=console.actor, environment=environment, name=name,
            scopes=scopes, jwks=_parse_jwks(jwks), jwks_uri=jwks_uri.strip() or None,
            rate_plan=rate_plan, require_dpop=require_dpop == "true")
    except Problem as exc:
        if exc.status == 403:
            return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
        console.flashes.append(("error", exc.detail or exc.title))
        return render(request, "client_new.html", {
            "partner": partner, "form": form, "form_token": form_token,
            "scopes": credentials.grantable_scopes(partner.partner_type),
            "plans": request.app.state.settings.rate_plans}, console=console,
            status=exc.status)
    return _client_result(session, console, partner_id, issued.client.id, "issued", form_token,
                          issued.secret)


# The page after issuing or rotating: its heading.
CLIENT_RESULTS = {"issued": "Client issued", "rotated": "Credentials rotated"}


def _client_result(session: Session, console: Console, partner_id: str, client_id: str,
                   done: str, form_token: str, secret: str | None) -> Response:
    """Post/Redirect/Get: the result page is a GET, which shows the secret once."""
    base = f"/console/partners/{partner_id}/clients/{client_id}/{done}"
    submission = forms.record(session, console.operator, form_token, base, secret=secret)
    submission.result_url = f"{base}/{submission.id}"
    session.flush()
    return RedirectResponse(submission.result_url, status_code=303)


@router.get("/console/partners/{partner_id}/clients/{client_id}/{done}/{submission_id}",
            response_class=HTMLResponse)
def console_client_result(request: Request, partner_id: str, client_id: str, done: str,
                          submission_id: str, console: Console = Depends(console_user),
                          session: Session = Depends(get_session)) -> Response:
    try:
        operators.require(console.operator, "clients.manage")
        if done not in CLIENT_RESULTS:
            raise ClientNotFound("No such page.")
        partner = workflow.get_partner(session, partner_id)
        client = _partner_client(session, partner_id, client_id)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    return render(request, "client_issued.html", {
        "heading": CLIENT_RESULTS[done], "partner": partner, "client": client,
        "secret": forms.take_secret(session, console.operator, submission_id)}, console=console)


def _partner_client(session: Session, partner_id: str, client_id: str) -> OAuthClient:
    client = session.get(OAuthClient, client_id)
    if client is None or client.partner_id != partner_id:
        raise ClientNotFound(f"No client {client_id} for this partner.")
    return client


@router.get("/console/partners/{partner_id}/clients/{client_id}/rotate",
            response_class=HTMLResponse)
def console_rotate_form(request: Request, partner_id: str, client_id: str,
                        console: Console = Depends(console_user),
                        session: Session = Depends(get_session)) -> Response:
    try:
        operators.require(console.operator, "clients.manage")
        partner = workflow.get_partner(session, partner_id)
        client = _partner_client(session, partner_id, client_id)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    return render(request, "client_rotate.html", {"partner": partner, "client": client,
                                                  "form_token": forms.new_token()},
                  console=console)


@router.post("/console/partners/{partner_id}/clients/{client_id}/rotate",
             response_class=HTMLResponse)
def console_rotate_client(request: Request, partner_id: str, client_id: str,
                          jwks: str = Form("", max_length=20000),
                          jwks_uri: str = Form("", max_length=2000),
                          form_token: str = Form("", max_length=100),
                          csrf_token: str = Form("", max_length=100),
                          console: Console = Depends(console_user),
                          session: Session = Depends(get_session)) -> Response:
    back = f"/console/partners/{partner_id}"
    try:
        check_csrf(request, console.csrf, csrf_token)
        operators.require(console.operator, "clients.manage")
        workflow.get_partner(session, partner_id)
        # Rotating twice would invalidate the secret just shown: a repeat gets the first result.
        earlier = forms.earlier_result(session, console.operator, form_token)
        if earlier is not None:
            return RedirectResponse(earlier, status_code=303)
        secret = credentials.rotate(session, partner_id, client_id, actor=console.actor,
                                    jwks=_parse_jwks(jwks), jwks_uri=jwks_uri.strip() or None)
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    return _client_result(session, console, partner_id, client_id, "rotated", form_token, secret)


@router.post("/console/partners/{partner_id}/clients/{client_id}/revoke")
def console_revoke_client(request: Request, partner_id: str, client_id: str,
                          csrf_token: str = Form("", max_length=100),
                          console: Console = Depends(console_user),
                          session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
        credentials.revoke(session, partner_id, client_id, actor=console.actor)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    return RedirectResponse(f"/console/partners/{partner_id}?done=revoke", status_code=303)


# --- webhooks -------------------------------------------------------------------------------

def _partner_endpoint(session: Session, partner_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.partner_id != partner_id:
        from partners.errors import EndpointNotFound

        raise EndpointNotFound(f"No webhook endpoint {endpoint_id} for this partner.")
    return endpoint


@router.get("/console/partners/{partner_id}/webhooks/{endpoint_id}", response_class=HTMLResponse)
def console_endpoint(request: Request, partner_id: str, endpoint_id: str,
                     console: Console = Depends(console_user),
                     session: Session = Depends(get_session)) -> Response:
    try:
        partner = workflow.get_partner(session, partner_id)
        endpoint = _partner_endpoint(session, partner_id, endpoint_id)
    except Problem as exc:
        return error_page(request, exc, console, back=f"/console/partners/{partner_id}")
    if request.query_params.get("done") == "retry":
        console.flashes.append(("ok", DONE_MESSAGES["retry"]))
    deliveries = list(session.scalars(select(WebhookDelivery)
                                      .where(WebhookDelivery.endpoint_id == endpoint.id)
                                      .order_by(WebhookDelivery.id.desc()).limit(100)))
    rows = [(d, webhooks.attempts_of(session, d.id)) for d in deliveries]
    return render(request, "endpoint.html", {"partner": partner, "endpoint": endpoint,
                                             "deliveries": rows}, console=console)


@router.post("/console/partners/{partner_id}/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry")
def console_retry_delivery(request: Request, partner_id: str, endpoint_id: str,
                           delivery_id: str, csrf_token: str = Form("", max_length=100),
                           console: Console = Depends(console_user),
                           session: Session = Depends(get_session)) -> Response:
    back = f"/console/partners/{partner_id}/webhooks/{endpoint_id}"
    try:
        check_csrf(request, console.csrf, csrf_token)
        operators.require(console.operator, "webhooks.manage")
        endpoint = _partner_endpoint(session, partner_id, endpoint_id)
        owner = webhooks.Owner(tenant_id=endpoint.tenant_id, partner_id=partner_id,
                               environment=endpoint.environment, actor=console.operator.id)
        webhooks.retry_delivery(session, owner, endpoint.id, delivery_id)
    except Problem as exc:
        return error_page(request, exc, console, back=back)
    return RedirectResponse(back + "?done=retry", status_code=303)


# --- usage and evidence ---------------------------------------------------------------------

@router.get("/console/usage", response_class=HTMLResponse)
def console_usage(request: Request, partner: str = "", days: int = 14,
                  console: Console = Depends(console_user),
                  session: Session = Depends(get_session)) -> Response:
    days = max(1, min(days, 366))
    today = business_date(clock_module.utcnow())
    rows = usage_rows(session, partner_id=partner.strip() or None,
                      since=today - timedelta(days=days - 1))
    return render(request, "usage.html", {"usage": rows, "partner": partner, "days": days},
                  console=console)


@router.get("/console/evidence", response_class=HTMLResponse)
def console_evidence(request: Request, q: str = "", request_id: str = "",
                     console: Console = Depends(console_user),
                     session: Session = Depends(get_session)) -> Response:
    q = (q or request_id).strip()[:128]
    entries: list[Any] = []
    events: list[Event] = []
    available = True
    try:
        from gateway.evidence.models import EvidenceEntry
    except ImportError:
        available = False
        EvidenceEntry = None  # type: ignore[assignment,misc]  # noqa: N806
    if q:
        if EvidenceEntry is not None:
            entries = list(session.scalars(select(EvidenceEntry).where(or_(
                EvidenceEntry.request_id == q, EvidenceEntry.id == q,
                EvidenceEntry.resource_id == q)).order_by(EvidenceEntry.created_at).limit(100)))
        events = list(session.scalars(select(Event).where(or_(
            Event.id == q, Event.resource_id == q)).order_by(Event.created_at).limit(100)))
        if EvidenceEntry is not None and events:
            known = {e.id for e in entries}
            for entry in session.scalars(select(EvidenceEntry).where(
                    EvidenceEntry.resource_id.in_({ev.resource_id for ev in events}))):
                if entry.id not in known and any(ev.id.encode() in entry.canonical
                                                 for ev in events):
                    entries.append(entry)
    return render(request, "evidence.html", {"q": q, "entries": entries, "events": events,
                                             "available": available, "names": _names(session)},
                  console=console)


# --- operators and account ------------------------------------------------------------------

@router.get("/console/operators", response_class=HTMLResponse)
def console_operators(request: Request, console: Console = Depends(console_user),
                      session: Session = Depends(get_session)) -> Response:
    try:
        operators.require(console.operator, "operators.manage")
    except Problem as exc:
        return error_page(request, exc, console)
    done = request.query_params.get("done")
    if done in OPERATOR_DONE:
        console.flashes.append(("ok", OPERATOR_DONE[done]))
    return _operators_page(request, session, console)


OPERATOR_DONE = {"created": "Operator added.", "unlock": "Operator unlocked.",
                 "disable": "Operator disabled: its sessions are ended.",
                 "enable": "Operator enabled.",
                 "reset-totp": "TOTP removed: the operator logs in with the password and sets "
                               "TOTP up again. Its sessions are ended."}


def _operators_page(request: Request, session: Session, console: Console, *,
                    form: dict[str, Any] | None = None, status: int = 200) -> Response:
    return render(request, "operators.html", {
        "operators": operators.list_operators(session), "roles": workflow.ROLES,
        "now": clock_module.utcnow(), "form": form or {"roles": []}}, console=console,
        status=status)


@router.post("/console/operators")
def console_create_operator(request: Request, username: str = Form("", max_length=64),
                            display_name: str = Form("", max_length=120),
                            roles: list[str] = Form([]),
                            password: str = Form("", max_length=256),
                            csrf_token: str = Form("", max_length=100),
                            console: Console = Depends(console_user),
                            session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
        operators.require(console.operator, "operators.manage")
    except Problem as exc:
        return error_page(request, exc, console, back="/console/operators")
    try:
        operators.create_operator(session, username=username, display_name=display_name,
                                  roles=roles, password=password, actor=console.operator.id)
    except Problem as exc:
        # The form again with what was typed (but the password) and what was wrong.
        session.rollback()
        console.flashes.append(("error", f"{exc.title}: {exc.detail or ''}"))
        return _operators_page(request, session, console, status=exc.status, form={
            "username": username, "display_name": display_name, "roles": roles})
    return RedirectResponse("/console/operators?done=created", status_code=303)


@router.post("/console/operators/{operator_id}/{change}")
def console_change_operator(request: Request, operator_id: str, change: str,
                            csrf_token: str = Form("", max_length=100),
                            console: Console = Depends(console_user),
                            session: Session = Depends(get_session)) -> Response:
    try:
        check_csrf(request, console.csrf, csrf_token)
        operators.require(console.operator, "operators.manage")
        target = operators.get_operator(session, operator_id)
        if change == "unlock":
            operators.unlock(session, target, actor=console.operator.id)
        elif change == "reset-totp":
            operators.reset_totp(session, target, actor=console.operator.id)
        elif change in ("disable", "enable"):
            if target.id == console.operator.id:
                raise RoleRequired("You cannot disable yourself.", code="self_change")
            operators.set_status(session, target, "active" if change == "enable" else "disabled",
                                 actor=console.operator.id)
        else:
            raise ValidationFailed(f"Unknown change {change!r}.", code="unknown_action")
    except Problem as exc:
        return error_page(request, exc, console, back="/console/operators")
    return RedirectResponse(f"/console/operators?done={change}", status_code=303)


def _qr(uri: str) -> str | None:
    try:
        import qrcode
        import qrcode.image.svg
    except ImportError:  # pragma: no cover
        return None
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode()


ACCOUNT_DONE = {"totp_on": "TOTP is on: log-ins now need a code.", "totp_off": "TOTP is off."}


def _account_page(request: Request, console: Console, *, status: int = 200) -> Response:
    # A set-up in progress is shown again (same secret) until it is confirmed or expires.
    pending = operators.pending_totp(console.operator)
    return render(request, "account.html", {
        "pending_secret": pending, "qr": _qr(operators.totp_uri(console.operator)) if pending else None},
        console=console, status=status)


@router.get("/console/account", response_class=HTMLResponse)
def console_account(request: Request, console: Console = Depends(console_user)) -> Response:
    done = request.query_params.get("done")
    if done in ACCOUNT_DONE:
        console.flashes.append(("ok", ACCOUNT_DONE[done]))
    return _account_page(request, console)


@router.post("/console/account/totp/{step}", response_class=HTMLResponse)
def console_totp(request: Request, step: str, code: str = Form("", max_length=6),
                 csrf_token: str = Form("", max_length=100),
                 console: Console = Depends(console_user),
                 session: Session = Depends(get_session)) -> Response:
    """Each step answers with a redirect to the account page (a reload re-posts nothing); a
    wrong code shows the same set-up again, with the secret already scanned."""
    operator: Operator = console.operator
    try:
        check_csrf(request, console.csrf, csrf_token)
        if step not in ("begin", "confirm", "disable"):
            raise ValidationFailed(f"Unknown step {step!r}.", code="unknown_action")
    except Problem as exc:
        return error_page(request, exc, console, back="/console/account")
    done = ""
    try:
        if step == "begin":
            operators.begin_totp(session, operator)
        elif step == "confirm":
            operators.confirm_totp(session, operator, code)
            done = "?done=totp_on"
        else:
            operators.disable_totp(session, operator, actor=operator.id)
            done = "?done=totp_off"
    except Problem as exc:
        console.flashes.append(("error", exc.detail or exc.title))
        return _account_page(request, console, status=exc.status)
    return RedirectResponse("/console/account" + done, status_code=303)


# --- the public application form ------------------------------------------------------------

# What an applicant is told about a field the API's model refuses: its own messages name
# patterns and field paths (`contacts.0.phone: String should match pattern …`).
APPLY_MESSAGES = {
    "legal_name": "Enter the company's legal name, as on its business licence.",
    "uscc": "Enter the 18-character unified social credit code printed on the business "
            "licence; the code entered is not a valid one.",
    "partner_type": "Choose a partner type.",
    "requested_products": "Choose at least one product.",
    "contacts.name": "Enter the contact's name.",
    "contacts.email": "Enter the contact's e-mail address, such as name@company.cn.",
    "contacts.phone": "Enter the contact's phone: an 11-digit mobile number, or a landline "
                      "with its area code, such as 010-12345678.",
    "website": "Enter the website as a full address starting with https://, or leave it empty.",
    "description": "Shorten the description to at most 2,000 characters.",
}
APPLY_EXPIRED = ("This form expired or was already sent. If you saw \"Application received\", "
                 "your application is in: do not apply again. Otherwise check the details and "
                 "press Apply.")


def _apply_errors(exc: ValidationError) -> list[str]:
    messages: list[str] = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = APPLY_MESSAGES.get(field, "Check the form: a field is not filled in correctly.")
        if message not in messages:
            messages.append(message)
    return messages


def _apply_page(request: Request, form: dict[str, Any], errors: list[str],
                status: int = 200) -> Response:
    token = new_csrf()
    response = render(request, "apply.html", {"apply_csrf": token, "form": form, "errors": errors,
                                              "partner_types": PARTNER_TYPES,
                                              "products": PRODUCTS}, status=status)
    set_cookie(request, response, APPLY_CSRF_COOKIE, token, path="/apply")
    return response


@router.get("/apply", response_class=HTMLResponse)
def apply_form(request: Request) -> Response:
    return _apply_page(request, {"partner_type": "software_vendor", "products": []}, [])


@router.post("/apply", response_class=HTMLResponse,
             dependencies=[Depends(rate_limit_public("partner_applications"))])
def apply_submit(request: Request, legal_name: str = Form("", max_length=200),
                 uscc: str = Form("", max_length=18),
                 partner_type: str = Form("", max_length=40),
                 products: list[str] = Form([]),
                 contact_name: str = Form("", max_length=60),
                 contact_email: str = Form("", max_length=254),
                 contact_phone: str = Form("", max_length=20),
                 website: str = Form("", max_length=300),
                 description: str = Form("", max_length=2000),
                 csrf_token: str = Form("", max_length=100),
                 session: Session = Depends(get_session)) -> Response:
    form = {"legal_name": legal_name, "uscc": uscc, "partner_type": partner_type,
            "products": products, "contact_name": contact_name, "contact_email": contact_email,
            "contact_phone": contact_phone, "website": website, "description": description}
    try:
        check_csrf(request, request.cookies.get(APPLY_CSRF_COOKIE), csrf_token)
    except Problem as exc:
        return _apply_page(request, form, [APPLY_EXPIRED], status=exc.status)
    try:
        data = ApplicationIn.model_validate({
            "legal_name": legal_name, "uscc": uscc, "partner_type": partner_type,
            "requested_products": products,
            "contacts": [{"name": contact_name, "email": contact_email, "phone": contact_phone,
                          "role": "business"}],
            "website": website or None, "description": description or None})
    except ValidationError as exc:
        return _apply_page(request, form, _apply_errors(exc), status=422)
    applied = applications.apply(session, data, source="web_form")
    result = application_body(applied, request.app.state.settings.issuer)
    response = render(request, "apply_done.html", {"result": result})
    clear_cookie(request, response, APPLY_CSRF_COOKIE, path="/apply")
    return response


# --- chain credit (its own module: the operations pages of one product) ---------------------

router.include_router(chain_credit.router)
