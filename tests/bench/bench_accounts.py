"""Transfers per second with 16 concurrent clients on disjoint accounts, through the service
layer and through HTTP (one worker), beside a raw INSERT of the same rows by the same 16
clients; then 32 clients draining one account (overdrafts must be zero).

The service layer is measured twice: 16 threads of one process, where the interpreter's lock
bounds the rate at one core of Python, and 16 processes (forked, each with its own pool), as
several workers would call it; each beside the raw INSERT made the same way.
Run: `python -m tests.bench.bench_accounts` (PostgreSQL when QUANLIAN_BENCH_DATABASE_URL is set)."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from gateway import migrate, pii
from gateway.db import Database
from gateway.identifiers import generate_uscc
from gateway.keys import PlatformKeys
from gateway.oauth.clients import create_client
from gateway.tenancy import create_partner, ensure_tenant
from products.accounts import service
from tests.bench.load import env_for, http_request, report, run_load, server
from tests.tools.databases import empty_database_url
from tests.tools.live import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
THREADS = 16


def _threads(fn, n: int, seconds: float) -> int:
    counts = [0] * n
    deadline = time.perf_counter() + seconds

    def run(i: int) -> None:
        while time.perf_counter() < deadline:
            fn(i)
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts)


def _processes(fn, make_database, n: int, seconds: float) -> int:
    """Like `_threads`, with each client a forked process. `fn(database, i)` is one call;
    every process makes its own `Database` (a pool is never shared across a fork)."""
    context = multiprocessing.get_context("fork")
    counts = context.Queue()
    start = context.Event()

    def run(i: int) -> None:
        database = make_database()
        done = 0
        start.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            fn(database, i)
            done += 1
        database.dispose()
        counts.put(done)

    workers = [context.Process(target=run, args=(i,)) for i in range(n)]
    for w in workers:
        w.start()
    start.set()
    total = sum(counts.get(timeout=seconds + 120) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    return total


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    backend = "PostgreSQL" if base_url else "SQLite"
    lines = []
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        data = Path(tmp)
        migrate.upgrade(url)
        pii.set_vault(pii.Vault(PlatformKeys(data)))
        database = Database(url)
        with database.transaction() as s:
            partner = create_partner(s, name="Bench", status="active")
            tenant = ensure_tenant(s, partner.id, "sandbox").id
            issued = create_client(s, partner=partner, environment="sandbox", name="bench",
                                   scopes=["accounts:read", "accounts:write"], with_secret=True,
                                   require_dpop=False, rate_plan="unlimited")
            client_id, secret = issued.client.id, issued.secret
            rng = random.Random(1)

            def uscc() -> str:
                return generate_uscc(rng)

            pairs = []
            for i in range(THREADS * 2):
                a = service.create_account(s, tenant, kind="settlement", owner_type="enterprise",
                                           owner_name=f"甲{i}公司", owner_uscc=uscc()).id
                b = service.create_account(s, tenant, kind="settlement", owner_type="enterprise",
                                           owner_name=f"乙{i}公司", owner_uscc=uscc()).id
                service.deposit(s, tenant, a, 10**12, journal_ref=f"seed-{i}")
                pairs.append((a, b))
            drain = service.create_account(s, tenant, kind="settlement", owner_type="enterprise",
                                           owner_name="被扣账户", owner_uscc=uscc()).id
            sink = service.create_account(s, tenant, kind="settlement", owner_type="enterprise",
                                          owner_name="收款账户", owner_uscc=uscc()).id
            service.deposit(s, tenant, drain, 100_000, journal_ref="drain-seed")

        def transfer_on(db: Database, i: int) -> None:
            a, b = pairs[i]
            with db.transaction() as s:
                service.create_transfer(s, tenant, from_account_id=a, to_account_id=b,
                                        amount_fen=1, actor="bench")

        md = MetaData()
        raw = Table("raw_transfers", md, Column("id", String(40), primary_key=True),
                    Column("a", String(40)), Column("b", String(40)), Column("amount", Integer))
        md.create_all(database.engine)

        def raw_insert_on(db: Database, i: int) -> None:
            with db.engine.begin() as conn:
                conn.execute(insert(raw).values(id=uuid.uuid4().hex, a=pairs[i][0], b=pairs[i][1],
                                                amount=1))

        svc_rate = _threads(lambda i: transfer_on(database, i), THREADS, SECONDS) / SECONDS
        raw_rate = _threads(lambda i: raw_insert_on(database, i), THREADS, SECONDS) / SECONDS
        lines.append(f"raw INSERT, {THREADS} threads            {raw_rate:8.0f} rows/s")
        lines.append(f"transfers via service, {THREADS} threads   {svc_rate:8.0f} /s  "
                     f"ratio {svc_rate / raw_rate:.2f} of raw insert")
        database.dispose()
        svc_rate = _processes(transfer_on, lambda: Database(url), THREADS, SECONDS) / SECONDS
        raw_rate = _processes(raw_insert_on, lambda: Database(url), THREADS, SECONDS) / SECONDS
        lines.append(f"raw INSERT, {THREADS} processes          {raw_rate:8.0f} rows/s")
        lines.append(f"transfers via service, {THREADS} processes {svc_rate:8.0f} /s  "
                     f"ratio {svc_rate / raw_rate:.2f} of raw insert")
        port = free_port()
        env = env_for(data, url, port)
        with server("gateway.asgi:app", env=env, port=port):
            token = httpx.post(f"http://127.0.0.1:{port}/oauth/token",
                               content=urlencode({"grant_type": "client_credentials"}),
                               headers={"content-type": "application/x-www-form-urlencoded"},
                               auth=(client_id, secret)).json()["access_token"]

            def make(i: int) -> bytes:
                a, b = pairs[THREADS + (i % THREADS)]
                body = json.dumps({"from_account_id": a, "to_account_id": b,
                                   "amount": {"amount": "0.01", "currency": "CNY"}}).encode()
                return http_request("POST", "/v1/transfers", {
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Idempotency-Key": uuid.uuid4().hex}, body)

            http_res = run_load("POST /v1/transfers (HTTP)", port, make, connections=THREADS,
                                seconds=SECONDS, ok={201}, warmup=0.5)
            lines.append(http_res.line())

        def drain_once(i: int) -> None:
            with database.transaction() as s:
                service.create_transfer(s, tenant, from_account_id=drain, to_account_id=sink,
                                        amount_fen=700, actor="drainer")

        _threads(drain_once, 32, min(SECONDS, 3))
        with database.transaction() as s:
            left = service.balance(s, tenant, drain)
            problems = service.audit(s, tenant)
        overdrafts = 1 if left.ledger_fen < 0 else 0
        lines.append(f"32 clients draining one account: final balance {left.ledger_fen} fen "
                     f"(100000 mod 700 = {100_000 % 700}), overdrafts {overdrafts}, "
                     f"ledger audit {'sound' if not problems else problems[:3]}")
        database.dispose()
    report(f"accounts on {backend}, {SECONDS:.0f} s each", lines)


if __name__ == "__main__":
    main()
