"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from gateway import metrics
from gateway.errors import ServiceUnavailable, error_responses
from gateway.migrate import current_revision, head_revision
from gateway.routing import Router

router = Router(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migration: str


@router.get("/healthz", summary="Process is alive", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Database reachable and migrations current",
            response_model=Readiness, responses=error_responses(503))
def readyz(request: Request) -> Readiness:
    database = request.app.state.database
    try:
        current = current_revision(database.engine)
    except Exception:
        raise ServiceUnavailable("The database cannot be reached.", code="database_unreachable") from None
    head = head_revision()
    if current != head:
        raise ServiceUnavailable(f"The database is at migration {current}, the code needs {head}.",
                                 code="migrations_pending")
    return Readiness(status="ready", database="ok", migration=head)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"}})
def prometheus_metrics() -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


__all__ = ["router", "JSONResponse"]
