"""Console authentication: session cookie, CSRF tokens, HTML rendering with security headers.

The session cookie is HttpOnly, SameSite=Strict, and Secure whenever the issuer is https.
State-changing forms carry a CSRF token: the session's own after login, a double-submit
cookie before it (login and the public application form). A POST whose Origin header names
another origin is refused as well.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI
from gateway.db import get_session
from gateway.errors import Problem
from partners.models import Operator, OperatorSession
from partners.operators import actor_of, can, load_session
from partners.workflow import Actor

SESSION_COOKIE = "quanlian_console"
LOGIN_CSRF_COOKIE = "quanlian_login_csrf"
APPLY_CSRF_COOKIE = "quanlian_apply_csrf"

CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True)


def _local(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S +08:00")


_env.filters["local"] = _local
_env.globals["can"] = can
templates = Jinja2Templates(env=_env)


class LoginRequired(Exception):
    """Raised by `console_user` when there is no live session: answered by a redirect."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class CSRFFailed(Problem):
    status, code, title = 403, "csrf_failed", "The form expired"


@dataclass
class Console:
    operator: Operator
    session_row: OperatorSession
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        return self.session_row.csrf_token

    @property
    def actor(self) -> Actor:
        return actor_of(self.operator)


def secure_cookies(request: Request) -> bool:
    return str(request.app.state.settings.issuer).lower().startswith("https://")


def set_cookie(request: Request, response: Any, name: str, value: str, *, path: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                        samesite="strict", secure=secure_cookies(request))


def clear_cookie(request: Request, response: Any, name: str, *, path: str) -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict",
                           secure=secure_cookies(request))


def check_origin(request: Request) -> None:
    """Refuse a cross-origin form post (SameSite=Strict already keeps the cookie away)."""
    origin = request.headers.get("origin")
    if not origin:
        return
    issuer = urlsplit(str(request.app.state.settings.issuer))
    allowed = {f"{issuer.scheme}://{issuer.netloc}", f"{request.url.scheme}://{request.url.netloc}"}
    if origin not in allowed:
        raise CSRFFailed("This form was posted from another site.")


def check_csrf(request: Request, expected: str | None, supplied: str | None) -> None:
    check_origin(request)
    if not expected or not supplied or not hmac.compare_digest(expected, supplied):
        raise CSRFFailed("The form expired or did not come from this console; reload and retry.")


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def console_user(request: Request, session: Session = Depends(get_session)) -> Console:
    """The logged-in operator, or a redirect to the login page."""
    loaded = load_session(session, request.cookies.get(SESSION_COOKIE))
    if loaded is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path if request.method == "GET" else "/console")
    row, operator = loaded
    return Console(operator=operator, session_row=row)


def login_redirect(request: Request, exc: Exception) -> RedirectResponse:
    next_path = getattr(exc, "next_path", "/console")
    return RedirectResponse("/console/login?next=" + quote(next_path, safe=""), status_code=303)


def render(request: Request, name: str, context: dict[str, Any], *, status: int = 200,
           console: Console | None = None) -> HTMLResponse:
    """A console page with its security headers (no caching: pages may hold one-time secrets)."""
    context = dict(context)
    context.setdefault("me", console.operator if console else None)
    context.setdefault("csrf", console.csrf if console else "")
    context.setdefault("flashes", console.flashes if console else [])
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    # With `no-referrer` browsers send `Origin: null` on form posts; same-origin keeps the
    # real origin for the CSRF check and still sends nothing to other sites.
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(request: Request, problem: Problem, console: Console | None,
               back: str | None = None) -> HTMLResponse:
    """A domain error as an HTML page with the problem's status (the transaction rolls back)."""
    request_id = request.scope.get("state", {}).get("request_id")
    return render(request, "error.html", {
        "title": problem.title, "detail": problem.detail or problem.title, "code": problem.code,
        "request_id": request_id, "back": back}, status=problem.status, console=console)
