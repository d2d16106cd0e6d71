"""Per-request context kept in the ASGI scope's state (one place to read it from)."""

from __future__ import annotations

from collections.abc import Callable
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
