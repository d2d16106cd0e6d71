"""Per-request context kept in the ASGI scope's state (one place to read it from)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

# A finalizer runs inside the request transaction after the route returned successfully,
# with the final status and body: it may add rows (evidence, idempotency records).
Finalizer = Callable[[Session, int, bytes], None]


@dataclass
class CallRecord:
    """What the edge knows about a call when it is over."""

    request_id: str
    method: str
    path: str
    route: str
    status: int
    request_sha256: str
    response_sha256: str
    started_at: Any
    latency_ms: float
    client_id: str | None = None
    partner_id: str | None = None
    tenant_id: str | None = None
    environment: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def state(scope_or_request: Any) -> dict[str, Any]:
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return scope.setdefault("state", {})


def add_finalizer(request: Any, fn: Finalizer) -> None:
    state(request).setdefault("finalizers", []).append(fn)


# The state of the request being served, bound by the edge middleware for the request's task
# (and, being a context variable, seen by the worker thread its endpoint runs on).
_CURRENT: ContextVar[dict[str, Any] | None] = ContextVar("quanlian_request_state", default=None)
_BEFORE = "before_endpoint"
# In a request's state: `close_in_thread(status, body) -> bool`, set by the edge middleware for
# the route's thread to commit the request's transaction with the response it will send.
CLOSE_IN_THREAD = "close_in_thread"


def bind(st: dict[str, Any]) -> Token[dict[str, Any] | None]:
    return _CURRENT.set(st)


def unbind(token: Token[dict[str, Any] | None]) -> None:
    _CURRENT.reset(token)


def current_state() -> dict[str, Any] | None:
    return _CURRENT.get()


def before_endpoint(request: Any, fn: Callable[[], None]) -> bool:
    """Have `fn` (blocking work a dependency needs done before the route runs) called on the
    worker thread of the route's endpoint, just before it: True when the route runs its
    endpoint so (`gateway.routing.OneHopRoute`), False when the caller must call it itself."""
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if not getattr(endpoint, "runs_before_endpoint", False):
        return False
    state(request).setdefault(_BEFORE, []).append(fn)
    return True


def run_before_endpoint(st: dict[str, Any] | None) -> None:
    """Call what dependencies left for the endpoint's thread (`before_endpoint`), in order."""
    for fn in (st or {}).pop(_BEFORE, ()):
        fn()
