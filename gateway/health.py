"""Liveness, readiness and metrics."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from gateway import metrics
from gateway.errors import ServiceUnavailable, Unauthorized, error_responses
from gateway.migrate import current_revision, head_revision, schema_problem
from gateway.redis import ping
from gateway.routing import Router

router = Router(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migration: str
    redis: str = Field(description="`ok`, or `not configured` (no QUANLIAN_REDIS_URL)")


@router.get("/healthz", summary="Process is alive", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Database reachable, migrations current, Redis reachable",
            description="Ready when the database answers, its schema is this release's and, "
                        "when the platform is configured with Redis (`QUANLIAN_REDIS_URL`), Redis "
                        "answers a ping within half a second; otherwise a 503 problem "
                        "(`database_unreachable`, `migrations_pending` when the database is "
                        "behind the code, `schema_newer_than_code` when a newer release migrated "
                        "it, `redis_unreachable`).",
            response_model=Readiness, responses=error_responses(503))
def readyz(request: Request) -> Readiness:
    database = request.app.state.database
    try:
        current = current_revision(database.engine)
    except Exception:
        raise ServiceUnavailable("The database cannot be reached.", code="database_unreachable") from None
    problem = schema_problem(current)
    if problem is not None:
        code, sentence = problem
        raise ServiceUnavailable(sentence, code=code)
    redis_url = request.app.state.settings.redis_url
    if redis_url and not ping(redis_url):
        # Calls that count a rate limit or a single-use value answer 503 meanwhile.
        raise ServiceUnavailable("Redis (QUANLIAN_REDIS_URL) cannot be reached.",
                                 code="redis_unreachable", headers={"Retry-After": "1"})
    return Readiness(status="ready", database="ok", migration=head_revision(),
                     redis="ok" if redis_url else "not configured")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            description="Request counts and latencies by route template and status. When the "
                        "platform is configured with a metrics token (`QUANLIAN_METRICS_TOKEN`), "
                        "only a scraper presenting it as a bearer token may read them.",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text"},
                       **error_responses(401)})
def prometheus_metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), token.encode()):
            raise Unauthorized("The metrics are read with the metrics token as a bearer token.",
                               code="metrics_token_required",
                               headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


__all__ = ["router", "JSONResponse"]
