"""E-government: payment orders created per second through HTTP on one worker, and the hosted
checkout page's render latency under load, each beside a bare FastAPI endpoint driven by the
same load generator in the same run.

1. create: POST /v1/egov/payment-orders with a Bearer token, a fresh Idempotency-Key and portal
   reference per request (payer ID validated, encrypted and digested, payment code, checkout
   token, event + evidence entry, idempotency record: one transaction each). Target >= 300/s.
2. render: GET /checkout/{token} over the open orders (order and portal read, the page
   rendered with its nonce'd CSP, the call's evidence entry written by group commit).
   Target: p99 < 50 ms.

Run: `python -m tests.bench.bench_egov` (SQLite in a temp dir; PostgreSQL when
QUANLIAN_BENCH_DATABASE_URL is set). BENCH_SECONDS (default 5) per phase; BENCH_CONNECTIONS
(default 16) concurrent keep-alive connections for the create phase, BENCH_RENDER_CONNECTIONS
(default "2,8") the render phase's levels of concurrency (one run each).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx

from gateway.app import import_models
from gateway.db import Base, Database
from gateway.identifiers import generate_resident_id, generate_uscc
from gateway.oauth.clients import create_client
from gateway.tenancy import create_partner, ensure_tenant
from products.accounts import service as accounts
from tests.bench.load import Result, env_for, http_request, report, run_load, server
from tests.tools.api import make_app
from tests.tools.databases import empty_database_url, stamp_head
from tests.tools.live import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
RENDER_CONNECTIONS = [int(n) for n in os.environ.get("BENCH_RENDER_CONNECTIONS", "2,8").split(",")]
ORIGIN = "https://portal.example.gov.cn"
CREATE_TARGET = 300.0
RENDER_P99_TARGET_MS = 50.0


def _server_pid(port: int) -> int | None:
    """The uvicorn process listening on `port` (to read its CPU time)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in b" ".join(cmdline) and str(port).encode() in cmdline:
            return int(entry.name)
    return None


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (0 when unknown)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_line(name: str, seconds: float, requests: int) -> str:
    per = seconds / requests * 1000 if requests else 0.0
    return (f"{name:<34} server CPU {per:5.2f} ms/request "
            f"(one core's ceiling {1000 / per if per else 0:5.0f} req/s)")


def _render_phase(port: int, paths: list[str], connections: int,
                  pid: int | None) -> tuple[Result, tuple[float, int]]:
    """GET the checkout pages round-robin; returns the result and (server CPU s, requests)."""
    cpu = _cpu_seconds(pid)

    def page(i: int) -> bytes:
        return http_request("GET", paths[i % len(paths)])

    result = run_load(f"GET /checkout/{{token}} ({connections} conns)", port, page,
                      connections=connections, seconds=SECONDS)
    return result, (_cpu_seconds(pid) - cpu, result.requests)


def _setup(url: str, data: Path) -> tuple[str, str, str]:
    database = Database(url)
    Base.metadata.create_all(database.engine)
    stamp_head(database)  # the server checks the schema's revision
    make_app(database, data)  # the keys and the personal-data vault, as the server has them
    with database.transaction() as session:
        partner = create_partner(session, name="Bench egov portal", status="active")
        tenant_id = ensure_tenant(session, partner.id, "sandbox").id
        issued = create_client(session, partner=partner, environment="sandbox", name="bench",
                               scopes=["egov:read", "egov:write"], with_secret=True,
                               require_dpop=False, rate_plan="unlimited")
        payee = accounts.create_account(session, tenant_id, kind="settlement", owner_type="enterprise",
                                        owner_name="上海市财政局非税收入专户",
                                        owner_uscc=generate_uscc(random.Random(7)))
        out = (issued.client.id, issued.secret or "", payee.id)
    database.dispose()
    return out


def main() -> None:
    import_models()
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    rng = random.Random(2026)
    ids = [generate_resident_id(rng) for _ in range(500)]
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        data = Path(tmp)
        client_id, secret, payee = _setup(url, data)
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        env = env_for(data, url, port, QUANLIAN_ISSUER=issuer)
        lines: list[str] = []
        with server("tests.bench.baselines:bare()") as bport:
            bare = run_load("bare FastAPI GET", bport, lambda i: http_request("GET", "/v1/me"),
                            connections=CONNECTIONS, seconds=SECONDS)
            bare_render = {n: run_load(f"bare FastAPI GET ({n} conns)", bport,
                                       lambda i: http_request("GET", "/v1/me"), connections=n,
                                       seconds=SECONDS) for n in RENDER_CONNECTIONS}
        lines.append(bare.line())
        with server("gateway.asgi:app", env=env, port=port):
            token = httpx.post(issuer + "/oauth/token",
                               content=urlencode({"grant_type": "client_credentials"}),
                               headers={"content-type": "application/x-www-form-urlencoded"},
                               auth=(client_id, secret)).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            portal = httpx.put(issuer + "/v1/egov/portal", headers=auth, json={
                "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": payee,
                "origins": [ORIGIN]})
            assert portal.status_code == 200, portal.text
            pid = _server_pid(port)
            counter = itertools.count(1)
            run = uuid.uuid4().hex[:6]

            def create(_: int) -> bytes:
                n = next(counter)
                body = json.dumps({
                    "item_code": "103040101", "item_name": "机动车驾驶证工本费",
                    "payer": {"name": "张三", "id_number": ids[n % len(ids)]},
                    "amount": {"amount": f"{25 + n % 100}.00", "currency": "CNY"},
                    "portal_reference": f"B{run}-{n}", "return_url": ORIGIN + "/done",
                }, ensure_ascii=False).encode()
                return http_request("POST", "/v1/egov/payment-orders",
                                    {**auth, "Idempotency-Key": f"{run}-{n}"}, body)

            cpu = _cpu_seconds(pid)
            def who(i: int) -> bytes:
                return http_request("GET", "/v1/me", auth)

            me = run_load("GET /v1/me (platform floor)", port, who, connections=CONNECTIONS,
                          seconds=SECONDS, warmup=0.0)
            me_cpu = (_cpu_seconds(pid) - cpu, me.requests)
            lines.append(me.line(bare))
            cpu = _cpu_seconds(pid)
            created = run_load("POST /v1/egov/payment-orders", port, create, connections=CONNECTIONS,
                               seconds=SECONDS, ok={201})
            create_cpu = (_cpu_seconds(pid) - cpu, created.requests)
            lines.append(created.line(bare))

            listed = httpx.get(issuer + "/v1/egov/payment-orders?limit=100&status=open", headers=auth).json()
            paths = [o["checkout_url"].replace(issuer, "") for o in listed["data"]]
            assert paths, listed
            renders = {}
            for n in RENDER_CONNECTIONS:
                renders[n], render_cpu = _render_phase(port, paths, n, pid)
                lines.append(bare_render[n].line())
                lines.append(renders[n].line(bare_render[n]))
            if pid is not None:
                lines.append(_cpu_line("  /v1/me", *me_cpu))
                lines.append(_cpu_line("  create", *create_cpu))
                lines.append(_cpu_line("  render", *render_cpu))
        report(f"egov ({'PostgreSQL' if base_url else 'SQLite'}, 1 worker, {CONNECTIONS} connections "
               f"for create)", lines)
        verdict = [
            f"create: {created.rps:.0f}/s (target >= {CREATE_TARGET:.0f}/s): "
            + ("met" if created.rps >= CREATE_TARGET and not created.errors else "NOT met"),
        ] + [f"render p99 at {n} connections: {r.pct(0.99):.1f} ms (target < {RENDER_P99_TARGET_MS:.0f} "
             "ms): " + ("met" if r.pct(0.99) < RENDER_P99_TARGET_MS and not r.errors else "NOT met")
             for n, r in renders.items()]
        report("targets", verdict)


if __name__ == "__main__":
    main()
