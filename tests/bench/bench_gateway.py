"""GET /v1/me throughput and latency with a valid token (rate limits and evidence receipts
on), beside a bare FastAPI endpoint and one verifying an ES256 JWT per request; and the token
endpoint with private_key_jwt. Run: `python -m tests.bench.bench_gateway` (PostgreSQL when
QUANLIAN_BENCH_DATABASE_URL is set, Redis when QUANLIAN_BENCH_REDIS_URL is set)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

from gateway import migrate
from gateway.db import Database
from gateway.keys import PlatformKeys
from gateway.oauth.clients import create_client
from gateway.tenancy import create_partner
from tests.bench.load import env_for, http_request, report, run_load, server
from tests.tools.api import client_assertion, dpop_proof, new_ec_key, public_jwks
from tests.tools.databases import empty_database_url
from tests.tools.live import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = 32


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    redis_url = os.environ.get("QUANLIAN_BENCH_REDIS_URL")
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        data = Path(tmp)
        migrate.upgrade(url)
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        keys = PlatformKeys(data)
        database = Database(url)
        pkj_key, dpop_key = new_ec_key(), new_ec_key()
        with database.transaction() as s:
            partner = create_partner(s, name="Bench", status="active")
            bearer = create_client(s, partner=partner, environment="sandbox", name="bearer",
                                   scopes=["accounts:read"], with_secret=True, require_dpop=False,
                                   rate_plan="unlimited")
            pkj = create_client(s, partner=partner, environment="sandbox", name="pkj",
                                scopes=["accounts:read"], jwks=public_jwks(pkj_key),
                                require_dpop=False, rate_plan="unlimited")
            dpop = create_client(s, partner=partner, environment="sandbox", name="dpop",
                                 scopes=["accounts:read"], jwks=public_jwks(dpop_key),
                                 require_dpop=True, rate_plan="unlimited")
            ids = (bearer.client.id, bearer.secret, pkj.client.id, dpop.client.id)
        database.dispose()
        env = env_for(data, url, port, QUANLIAN_ISSUER=issuer)
        if redis_url:
            env["QUANLIAN_REDIS_URL"] = redis_url
        results = []
        with server("tests.bench.baselines:bare()") as bport:
            bare = run_load("bare FastAPI", bport, lambda i: http_request("GET", "/v1/me"),
                            connections=CONNECTIONS, seconds=SECONDS)
        results.append(bare.line())
        with server("gateway.asgi:app", env=env, port=port):
            form = urlencode({"grant_type": "client_credentials"})
            token = httpx.post(issuer + "/oauth/token", content=form,
                               headers={"content-type": "application/x-www-form-urlencoded"},
                               auth=(ids[0], ids[1])).json()["access_token"]
            dtoken = httpx.post(issuer + "/oauth/token", content=urlencode({
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion(ids[3], dpop_key, aud=issuer)}),
                headers={"content-type": "application/x-www-form-urlencoded",
                         "DPoP": dpop_proof(dpop_key, "POST", issuer + "/oauth/token")}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            platform = run_load("GET /v1/me Bearer", port,
                                lambda i: http_request("GET", "/v1/me", auth),
                                connections=CONNECTIONS, seconds=SECONDS)
            results.append(platform.line(bare))
            n_proofs = int(os.environ.get("BENCH_DPOP_PROOFS", "20000"))
            proofs = [dpop_proof(dpop_key, "GET", issuer + "/v1/me", access_token=dtoken)
                      for _ in range(n_proofs)]
            dpop_res = run_load("GET /v1/me DPoP", port, lambda i: http_request(
                "GET", "/v1/me", {"Authorization": f"DPoP {dtoken}", "DPoP": proofs[i - 1]}),
                connections=CONNECTIONS, seconds=SECONDS, max_requests=n_proofs, warmup=0.0)
            results.append(dpop_res.line(bare))
            n_assert = int(os.environ.get("BENCH_ASSERTIONS", "10000"))
            bodies = [urlencode({
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion(ids[2], pkj_key, aud=issuer)}).encode()
                for _ in range(n_assert)]
            tokens = run_load("POST /oauth/token private_key_jwt", port, lambda i: http_request(
                "POST", "/oauth/token", {"content-type": "application/x-www-form-urlencoded"},
                bodies[i - 1]), connections=8, seconds=SECONDS, max_requests=n_assert, warmup=0.0)
            results.append(tokens.line())
        public = json.dumps(keys.active_signing_key.as_dict(private=False))
        with server("tests.bench.baselines:verify_es256()",
                    env={"BENCH_ES256_PUBLIC_JWK": public}) as vport:
            es = run_load("ES256 verify per request", vport,
                          lambda i: http_request("GET", "/v1/me", auth),
                          connections=CONNECTIONS, seconds=SECONDS)
        results.insert(1, es.line(bare))
        backend = "PostgreSQL" if base_url else "SQLite"
        report(f"gateway on {backend}{' + Redis' if redis_url else ''}, {CONNECTIONS} connections, "
               f"{SECONDS:.0f} s each, {time.strftime('%Y-%m-%d')}", results)


if __name__ == "__main__":
    main()
