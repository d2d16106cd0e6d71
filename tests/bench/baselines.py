"""Baseline apps measured beside the platform: a bare FastAPI JSON endpoint, and the same
endpoint verifying one ES256 JWT per request with no cache. Both are `async def`, the way a
lean FastAPI endpoint is written: a plain `def` would run in the thread pool, whose hand-off
costs more than the JWT verification and would make the two baselines look alike."""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.jose import PLATFORM_REGISTRY


def bare() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/me")
    async def me() -> dict[str, str]:
        return {"client_id": "cli_bare", "environment": "sandbox"}

    return app


def verify_es256() -> FastAPI:
    key = ECKey.import_key(json.loads(os.environ["BENCH_ES256_PUBLIC_JWK"]))
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/me")
    async def me(request: Request) -> JSONResponse:
        token = request.headers["authorization"].split(" ", 1)[1]
        claims = jwt.decode(token, key, registry=PLATFORM_REGISTRY).claims
        return JSONResponse({"client_id": claims["client_id"], "environment": "sandbox"})

    return app
