"""Payables certificate splits and transfers per second on PostgreSQL: through the service layer
(one transaction per operation, as the API does it) and through HTTP (a real uvicorn worker,
32 keep-alive connections, real tokens, Idempotency-Key, evidence), beside the raw-insert
baseline measured in the same run (one committed INSERT of a certificate row per operation).

Run: `python -m tests.bench.bench_chain_credit`. The database is a fresh one created next to
QUANLIAN_BENCH_DATABASE_URL (default: the local PostgreSQL, postgresql+psycopg://postgres@127.0.0.1:5432/test).
BENCH_SECONDS (default 5) sets the length of the HTTP run. Target: at least 300 ops/s over HTTP.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import insert

from gateway.app import create_app, import_models
from gateway.db import Base, Database
from gateway.identifiers import generate_uscc
from gateway.oauth.clients import create_client
from gateway.tenancy import clock_for, create_partner, ensure_tenant
from products.accounts import service as accounts
from products.chain_credit import service
from products.chain_credit.models import PayablesCertificate
from tests.bench.load import Result, env_for, http_request, report, run_load, server
from tests.tools.api import make_settings
from tests.tools.databases import empty_database_url, stamp_head
from tests.tools.live import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = 32
SERVICE_OPS = int(os.environ.get("BENCH_SERVICE_OPS", "2000"))
HTTP_LEAVES = int(os.environ.get("BENCH_HTTP_LEAVES", "12000"))
PARTS_PER_ROOT = 100
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Timing:
    def __init__(self, name: str, latencies: list[float], seconds: float, *,
                 count: int | None = None, percentiles: dict[float, float] | None = None) -> None:
        self.name, self.latencies, self.seconds = name, latencies, seconds
        self.count = len(latencies) if count is None else count
        self.percentiles = percentiles  # from wrk, which keeps no raw samples

    @classmethod
    def of(cls, name: str, result: Result) -> Timing:
        return cls(name, result.latencies, result.seconds, count=result.requests,
                   percentiles=result.percentiles_ms)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if self.percentiles is not None:
            return self.percentiles[q]
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else 0.0

    def line(self, baseline: Timing | None = None) -> str:
        ratio = f"  ratio {self.rps / baseline.rps:.2f} of {baseline.name}" if baseline else ""
        return (f"{self.name:<40} {self.rps:8.0f} ops/s  p50 {self.pct(0.5):6.2f} ms  "
                f"p99 {self.pct(0.99):6.2f} ms{ratio}")


def _setup_chain(database: Database) -> dict[str, object]:
    import random

    rng = random.Random(7)
    with database.transaction() as session:
        partner = create_partner(session, name="Bench chain", status="active")
        tenant_id = ensure_tenant(session, partner.id, "sandbox").id
        issued = create_client(session, partner=partner, environment="sandbox", name="bench",
                               scopes=["chain_credit:read", "chain_credit:write"], with_secret=True,
                               require_dpop=False, rate_plan="unlimited")
        ids: dict[str, str] = {}

        def member(key: str, role: str, upstream: str | None) -> str:
            uscc = generate_uscc(rng)
            account = accounts.create_account(session, tenant_id, kind="settlement",
                                              owner_type="enterprise", owner_name=f"{key} 有限公司",
                                              owner_uscc=uscc)
            ids[key] = service.create_member(session, tenant_id, name=f"{key} 有限公司", uscc=uscc,
                                             settlement_account_id=account.id, role=role,
                                             upstream_member_id=upstream, tier=None, actor="bench").id
            return ids[key]

        core = member("core", "core_enterprise", None)
        t1 = member("t1", "supplier", core)
        member("t2", "supplier", t1)
        service.grant_facility(session, tenant_id=tenant_id, core_enterprise_id=core,
                               limit_fen=100_000_000_00, expires_on=clock_for(session, tenant_id).today()
                               + timedelta(days=700), guarantee_circle="GC-BENCH",
                               discount_rate="0.04", actor="bench")
        return {"tenant_id": tenant_id, "client_id": issued.client.id, "secret": issued.secret,
                **ids}


def _leaves(database: Database, tenant_id: str, core: str, holder: str, count: int) -> list[str]:
    """`count` accepted certificates of 1.00 each... held by `holder` (roots split in 100 parts)."""
    out: list[str] = []
    while len(out) < count:
        with database.transaction() as session:
            maturity = clock_for(session, tenant_id).today() + timedelta(days=180)
            root = service.issue_certificate(session, tenant_id, acting_member_id=core, to_member_id=holder,
                                             amount_fen=PARTS_PER_ROOT * 10_000, maturity_date=maturity,
                                             invoice_numbers=[f"INV-{uuid.uuid4().hex[:20]}"],
                                             contract_number="C-BENCH")
            service.accept_certificate(session, tenant_id, root.id, acting_member_id=holder)
            _, parts = service.split_certificate(session, tenant_id, root.id, acting_member_id=holder,
                                                 parts_fen=[10_000] * PARTS_PER_ROOT)
            out.extend(p.id for p in parts)
    return out[:count]


def _raw_inserts(database: Database, tenant_id: str, template_id: str, n: int) -> Timing:
    """The floor: one committed INSERT of a certificate row per operation, nothing else."""
    with database.transaction() as session:
        template = session.get(PayablesCertificate, template_id)
        assert template is not None
        row = {c.key: getattr(template, c.key) for c in PayablesCertificate.__table__.columns}
    stmt = insert(PayablesCertificate.__table__)
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        values = dict(row, id=f"pcert_raw{i:020d}", parent_id=template_id)
        t0 = time.perf_counter()
        with database.engine.begin() as conn:
            conn.execute(stmt, values)
        latencies.append(time.perf_counter() - t0)
    return Timing("raw INSERT, 1 connection", latencies, time.perf_counter() - start)


def _service_ops(database: Database, setup: dict[str, object], leaves: list[str]) -> Timing:
    tenant_id, holder, to = str(setup["tenant_id"]), str(setup["t1"]), str(setup["t2"])
    latencies = []
    start = time.perf_counter()
    for i, leaf in enumerate(leaves):
        t0 = time.perf_counter()
        with database.transaction() as session:
            if i % 2:
                service.transfer_certificate(session, tenant_id, leaf, acting_member_id=holder, to_member_id=to)
            else:
                service.split_certificate(session, tenant_id, leaf, acting_member_id=holder,
                                          parts_fen=[4_000, 6_000])
        latencies.append(time.perf_counter() - t0)
    return Timing("service layer split/transfer, 1 thread", latencies, time.perf_counter() - start)


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL") or DEFAULT_PG
    import_models()
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        data = Path(tmp)
        database = Database(url)
        Base.metadata.create_all(database.engine)
        stamp_head(database)  # the server checks the schema's revision
        port = free_port()
        # The app factory sets up the personal-data vault on the data directory's keys, shared
        # with the server process below.
        create_app(make_settings(data, url, issuer=f"http://127.0.0.1:{port}"), database=database,
                   start_background=False)
        setup = _setup_chain(database)
        tenant_id = str(setup["tenant_id"])
        service_leaves = _leaves(database, tenant_id, str(setup["core"]), str(setup["t1"]), SERVICE_OPS)
        http_leaves = _leaves(database, tenant_id, str(setup["core"]), str(setup["t1"]), HTTP_LEAVES)

        raw = _raw_inserts(database, tenant_id, service_leaves[0], SERVICE_OPS)
        svc = _service_ops(database, setup, service_leaves)
        database.dispose()

        env = env_for(data, url, port)
        with server("gateway.asgi:app", env=env, port=port):
            issuer = f"http://127.0.0.1:{port}"
            token = httpx.post(issuer + "/oauth/token",
                               content=urlencode({"grant_type": "client_credentials"}),
                               headers={"content-type": "application/x-www-form-urlencoded"},
                               auth=(str(setup["client_id"]), str(setup["secret"]))).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
            counter = itertools.count()
            split_body = {"acting_member_id": setup["t1"],
                          "parts": [{"amount": "40.00", "currency": "CNY"},
                                    {"amount": "60.00", "currency": "CNY"}]}
            transfer_body = {"acting_member_id": setup["t1"], "to_member_id": setup["t2"]}

            def make(_: int) -> bytes:
                i = next(counter)
                leaf = http_leaves[i % len(http_leaves)]  # past the end: 409s, counted as errors
                action, body = ("transfer", transfer_body) if i % 2 else ("split", split_body)
                return http_request("POST", f"/v1/chain-credit/payables-certificates/{leaf}/{action}",
                                    dict(auth, **{"Idempotency-Key": uuid.uuid4().hex}),
                                    json.dumps(body).encode())

            result = run_load("HTTP split/transfer, 1 worker", port, make, connections=CONNECTIONS,
                              seconds=SECONDS, max_requests=HTTP_LEAVES - 1, warmup=1.0)
            # The gateway's own floor for a POST: auth, Idempotency-Key claim, one locked read,
            # a refused transition (409), evidence; no business write.
            accept_body = json.dumps({"acting_member_id": setup["t1"]}).encode()
            floor = run_load("HTTP POST refused 409 (gateway floor)", port, lambda i: http_request(
                "POST", f"/v1/chain-credit/payables-certificates/{service_leaves[i % len(service_leaves)]}/accept",
                dict(auth, **{"Idempotency-Key": uuid.uuid4().hex}), accept_body),
                connections=CONNECTIONS, seconds=max(2.0, SECONDS / 2), ok={409}, warmup=0.5)
        http = Timing.of(f"HTTP split/transfer, 1 worker, {CONNECTIONS} conns", result)
        gateway_floor = Timing.of(f"HTTP POST refused (409), {CONNECTIONS} conns", floor)
        lines = [raw.line(), svc.line(raw), http.line(raw) + f"  errors {result.errors}",
                 gateway_floor.line(raw) + f"  errors {floor.errors}",
                 f"split/transfer over HTTP at {http.rps / gateway_floor.rps:.2f} of the gateway's POST floor"]
        lines.append(f"target >= 300 ops/s over HTTP: {'met' if http.rps >= 300 else 'NOT met'}"
                     f" (p50 latency service {statistics.median(svc.latencies) * 1000:.2f} ms)")
        report(f"chain credit on PostgreSQL, {time.strftime('%Y-%m-%d')}", lines)


if __name__ == "__main__":
    main()
