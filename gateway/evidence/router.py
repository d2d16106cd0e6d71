"""The evidence API. Checkpoints, the public key, proofs and leaf hashes are public; an
entry's contents and bundles are for the partner the entry is about (scope evidence:read)."""

from __future__ import annotations

import base64
import json
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth import authenticate, require_scope
from gateway.db import get_session
from gateway.errors import NotFound, ServiceUnavailable, ValidationFailed, error_responses
from gateway.evidence import service
from gateway.evidence.models import EvidenceCheckpoint, EvidenceEntry
from gateway.evidence.recorder import CallRecorder
from gateway.evidence.service import MAX_LOG_INDEX
from gateway.jobs import register_job
from gateway.routing import Router
from gateway.tenancy import Principal

router = Router(prefix="/v1/evidence", tags=["evidence"],
                   responses=error_responses(400, 404, 422, 429))


def setup(app: FastAPI) -> None:
    settings = app.state.settings
    app.state.evidence_log = service.Log(settings.evidence_origin, app.state.keys.evidence_key)
    app.state.call_recorder = CallRecorder(app.state.database)
    log = app.state.evidence_log
    register_job("evidence.integrate", lambda db: service.integrate(db, log),
                 interval=settings.evidence_integrate_interval)


async def integrate_now(request: Request) -> None:
    """On-demand integration, before the request's own session is opened."""
    await anyio.to_thread.run_sync(service.integrate, request.app.state.database,
                                   request.app.state.evidence_log)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class EntryOut(BaseModel):
    id: str
    index: int | None = Field(description="Log index, once integrated")
    kind: str
    leaf_hash: str = Field(description="base64 SHA-256(0x00 || canonical)")
    canonical: str | None = Field(None, description="base64 canonical bytes (own entries only)")
    entry: dict[str, Any] | None = Field(None, description="The entry's fields (own entries only)")


class ProofOut(BaseModel):
    index: int | None = None
    tree_size: int | None = None
    first: int | None = None
    second: int | None = None
    hashes: list[str]


class LeavesOut(BaseModel):
    start: int
    leaf_hashes: list[str]


class BundleEntryOut(BaseModel):
    id: str
    index: int
    canonical: str = Field(description="base64 canonical bytes: the entry's fields")
    leaf_hash: str = Field(description="base64 SHA-256(0x00 || canonical)")
    inclusion_proof: list[str] = Field(description="base64 hashes, leaf to root (RFC 9162) "
                                                   "against the bundle's checkpoint")


class BundleOut(BaseModel):
    """Everything needed to verify, offline, every entry about one business object."""

    format: str = Field(examples=["quanlian-evidence-bundle/1"])
    resource_id: str
    resources: list[str] = Field(description="The object and those it consists of")
    verifier_key: str = Field(description="The log's verifier key as the log names it: check "
                                          "it against the key the bank publishes")
    checkpoint: str = Field(description="The signed checkpoint (C2SP signed note)")
    tree_size: int
    entries: list[BundleEntryOut]


class CheckpointsOut(BaseModel):
    data: list[str] = Field(description="Signed checkpoint notes, oldest first")
    next_after: int | None


@router.get("/checkpoint", summary="The latest signed checkpoint (C2SP signed note)",
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}, "description": "Signed note"}},
            dependencies=[Depends(integrate_now)])
def evidence_checkpoint(session: Session = Depends(get_session)) -> PlainTextResponse:
    cp = service.latest_checkpoint(session)
    if cp is None:
        raise ServiceUnavailable("The log has no checkpoint yet.", code="no_checkpoint")
    return PlainTextResponse(cp.note)


@router.get("/checkpoints", summary="Signed checkpoints in order (for verifiers)",
            response_model=CheckpointsOut)
def evidence_checkpoints(after: int = Query(0, ge=0, le=MAX_LOG_INDEX), limit: int = Query(1000, ge=1, le=5000),
                         session: Session = Depends(get_session)) -> CheckpointsOut:
    rows = list(session.scalars(select(EvidenceCheckpoint).where(EvidenceCheckpoint.tree_size > after)
                                .order_by(EvidenceCheckpoint.tree_size).limit(limit)))
    return CheckpointsOut(data=[r.note for r in rows],
                          next_after=rows[-1].tree_size if len(rows) == limit else None)


@router.get("/public-key", summary="The verifier key: <name>+<hex key id>+<base64 key>",
            response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}}, "description": "Verifier key"}})
def evidence_public_key(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.app.state.evidence_log.verifier_key + "\n")


async def _optional_principal(request: Request) -> Principal | None:
    if not request.headers.get("authorization"):
        return None
    return await authenticate(request)


@router.get("/entries/{ref}", summary="An entry by id or log index", response_model=EntryOut,
            dependencies=[Depends(integrate_now)])
def evidence_entry(ref: str, principal: Principal | None = Depends(_optional_principal),
                   session: Session = Depends(get_session)) -> EntryOut:
    entry = service.find_entry(session, ref)
    own = (principal is not None and "evidence:read" in principal.scopes
           and entry.tenant_id is not None and entry.tenant_id == principal.tenant_id)
    return EntryOut(id=entry.id, index=entry.idx, kind=entry.kind, leaf_hash=_b64(entry.leaf_hash),
                    canonical=_b64(entry.canonical) if own else None,
                    entry=json.loads(entry.canonical) if own else None)


@router.get("/leaves", summary="Leaf hashes by log index (public)", response_model=LeavesOut)
def evidence_leaves(start: int = Query(0, ge=0, le=MAX_LOG_INDEX), count: int = Query(1000, ge=1, le=10000),
                    session: Session = Depends(get_session)) -> LeavesOut:
    rows = session.execute(select(EvidenceEntry.idx, EvidenceEntry.leaf_hash)
                           .where(EvidenceEntry.idx >= start, EvidenceEntry.idx < start + count)
                           .order_by(EvidenceEntry.idx)).all()
    return LeavesOut(start=start, leaf_hashes=[_b64(h) for _, h in rows])


@router.get("/proofs/inclusion", summary="RFC 9162 inclusion proof", response_model=ProofOut)
def evidence_inclusion_proof(index: int = Query(ge=0, le=MAX_LOG_INDEX),
                             tree_size: int = Query(ge=1, le=MAX_LOG_INDEX),
                             session: Session = Depends(get_session)) -> ProofOut:
    hashes = service.inclusion(session, index, tree_size)
    return ProofOut(index=index, tree_size=tree_size, hashes=[_b64(h) for h in hashes])


@router.get("/proofs/consistency", summary="RFC 9162 consistency proof", response_model=ProofOut)
def evidence_consistency_proof(first: int = Query(ge=1, le=MAX_LOG_INDEX),
                               second: int = Query(ge=1, le=MAX_LOG_INDEX),
                               session: Session = Depends(get_session)) -> ProofOut:
    hashes = service.consistency(session, first, second)
    return ProofOut(first=first, second=second, hashes=[_b64(h) for h in hashes])


@router.get("/bundles/{resource_id}", summary="Offline-verifiable bundle about one resource",
            response_model=BundleOut, dependencies=[Depends(integrate_now)],
            responses=error_responses(401, 403, 409))
def evidence_bundle(resource_id: str, request: Request,
                    principal: Principal = Depends(require_scope("evidence:read")),
                    session: Session = Depends(get_session)) -> Response:
    if len(resource_id) > 60:
        raise ValidationFailed("resource_id is too long.", code="invalid_resource_id")
    data = service.bundle(session, principal.tenant_id, resource_id, request.app.state.evidence_log)
    return Response(json.dumps(data, ensure_ascii=False), media_type="application/json")


__all__ = ["router", "NotFound"]
