"""CPU per call of the gateway's hottest calls, in one process with no network: `GET /v1/me`
(Bearer), the token endpoint (private_key_jwt), and the keyed POSTs whose HTTP rates have
targets: `POST /v1/transfers` (moves money), `POST /v1/collection/orders` (a mandate debit
split between a sub-merchant and the platform), `POST /v1/egov/payment-orders` and payables
certificate splits and transfers (alternately), beside a
bare FastAPI endpoint driven the same way in the same run.

Over HTTP these figures drown in the load generator and in the machine's variation (on this
project's 2-core machine the same commit measured 61 and 83 collection orders/s an hour apart);
here each call is an ASGI call from an asyncio loop, and the process's CPU time (every thread:
the event loop, the worker threads, the group commits) is divided by the number of calls. Each
figure is measured ROUNDS times; the lowest and highest are printed.

Run: `python -m tests.bench.bench_call_cpu` (SQLite, or PostgreSQL when
QUANLIAN_BENCH_DATABASE_URL is set; BENCH_CALLS, BENCH_ROUNDS tune it; BENCH_CASES, a
comma-separated list of words, keeps only the calls whose names contain one of them, beside the
bare endpoint: `BENCH_CASES=transfers` to profile one call with py-spy). It also views the
e-government checkout page (`checkout`), whose p99 under load has a target.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from gateway import migrate, pii
from gateway.db import Database
from gateway.identifiers import generate_resident_id, generate_uscc
from gateway.keys import PlatformKeys
from gateway.oauth.clients import create_client
from gateway.tenancy import clock_for, create_partner, ensure_tenant
from products.accounts import service
from products.collection import schemas as collection_schemas
from products.collection import service as collection_service
from products.egov import service as egov_service
from products.egov.schemas import PortalIn
from tests.bench import bench_chain_credit
from tests.bench.load import env_for, report
from tests.tools.api import client_assertion, new_ec_key, public_jwks
from tests.tools.databases import empty_database_url

CALLS = int(os.environ.get("BENCH_CALLS", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CASES = [w for w in os.environ.get("BENCH_CASES", "").split(",") if w]
ISSUER = "http://127.0.0.1:9"
EGOV_ORIGIN = "https://portal.example.gov.cn"

App = Callable[..., Awaitable[None]]


async def call(app: App, method: str, path: str, headers: dict[str, str],
               body: bytes = b"") -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 9),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
             + [(b"host", b"127.0.0.1:9")], "state": {}}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["body"]


async def cpu_per_call(make: Callable[[int], Awaitable[tuple[int, bytes]]], ok: int,
                       concurrency: int) -> float:
    """Microseconds of process CPU per call, `CALLS` calls made by `concurrency` tasks."""
    numbers = iter(range(CALLS))

    async def worker() -> None:
        for i in numbers:
            status, body = await make(i)
            if status != ok:
                raise RuntimeError(f"status {status}: {body[:300]!r}")

    start = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - start) / CALLS * 1e6


def _collection_setup(session: Any, tenant: str, rng: random.Random) -> tuple[list[str], str]:
    """Eight payers' mandates (one per concurrent caller) and a sub-merchant with a fee rule."""
    def account(name: str, funds: int = 0) -> str:
        row = service.create_account(session, tenant, kind="settlement", owner_type="enterprise",
                                     owner_name=name, owner_uscc=generate_uscc(rng))
        if funds:
            service.deposit(session, tenant, row.id, funds, journal_ref=f"bench-{row.id}")
        return row.id

    merchant = collection_service.create_sub_merchant(
        session, tenant, "bench", collection_schemas.SubMerchantCreate(
            name="食堂一号窗口", uscc=generate_uscc(rng), settlement_account_id=account("商户公司"),
            fee_rule=collection_schemas.FeeRuleIn(type="percentage", rate="0.006"))).id
    limit = collection_schemas.MoneyIn(amount="100000000.00", currency="CNY")
    mandates = [collection_service.create_mandate(
        session, tenant, "bench", collection_schemas.MandateCreate(
            reference=f"MD-{i}", payer_name="张伟", payer_account_id=account(f"付款人{i}", 10**12),
            per_debit_limit=limit, monthly_limit=limit,
            expires_on=clock_for(session, tenant).today() + timedelta(days=30))).id
        for i in range(8)]
    return mandates, merchant


async def lifespan(app: App) -> Callable[[], Awaitable[None]]:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    await queue.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                      "state": {}}, queue.get, send))
    await started.wait()

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await task

    return stop


def spread(values: list[float]) -> str:
    return f"{min(values):7.0f} - {max(values):5.0f} us"


async def main() -> None:
    import gc

    from tests.bench.baselines import bare

    backend = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(backend) as url:
        migrate.upgrade(url)
        pii.set_vault(pii.Vault(PlatformKeys(Path(tmp))))
        database = Database(url)
        key = new_ec_key()
        with database.transaction() as s:
            partner = create_partner(s, name="Bench", status="active")
            bearer = create_client(s, partner=partner, environment="sandbox", name="bearer",
                                   scopes=["accounts:read", "accounts:write", "collection:write",
                                           "egov:write"], with_secret=True,
                                   require_dpop=False, rate_plan="unlimited")
            tenant = ensure_tenant(s, partner.id, "sandbox").id
            rng = random.Random(1)
            pairs = []  # one pair of accounts per concurrent payer: no payer waits for another
            for i in range(8):
                payer = service.create_account(
                    s, tenant, kind="settlement", owner_type="enterprise",
                    owner_name=f"付款{i}公司", owner_uscc=generate_uscc(rng)).id
                payee = service.create_account(
                    s, tenant, kind="settlement", owner_type="enterprise",
                    owner_name=f"收款{i}公司", owner_uscc=generate_uscc(rng)).id
                service.deposit(s, tenant, payer, 10**12, journal_ref=f"bench-{i}")
                pairs.append((payer, payee))
            collection = _collection_setup(s, tenant, rng)
            egov_service.set_portal(s, tenant_id=tenant, environment="sandbox", actor="bench",
                                    body=PortalIn(name="一网通办", payee_name="上海市财政局",
                                                  payee_account_id=pairs[0][1],
                                                  origins=[EGOV_ORIGIN]))
            pkj = create_client(s, partner=partner, environment="sandbox", name="pkj",
                                scopes=["accounts:read"], jwks=public_jwks(key),
                                require_dpop=False, rate_plan="unlimited")
            basic = base64.b64encode(f"{bearer.client.id}:{bearer.secret}".encode()).decode()
            pkj_id = pkj.client.id
        chain = bench_chain_credit._setup_chain(database)
        leaves = iter(bench_chain_credit._leaves(
            database, str(chain["tenant_id"]), str(chain["core"]), str(chain["t1"]),
            2 * CALLS * ROUNDS + 200))  # each call takes a fresh leaf; 100 warm the path
        chain_basic = base64.b64encode(f"{chain['client_id']}:{chain['secret']}".encode()).decode()
        database.dispose()
        os.environ.update(env_for(Path(tmp), url, 9, QUANLIAN_ISSUER=ISSUER))
        from gateway.app import create_app
        from gateway.settings import get_settings
        get_settings.cache_clear()

        base_app, app = bare(), create_app()
        stop = await lifespan(app)
        form = {"content-type": "application/x-www-form-urlencoded"}
        status, body = await call(app, "POST", "/oauth/token",
                                  {**form, "authorization": f"Basic {basic}"},
                                  b"grant_type=client_credentials")
        token = json.loads(body)["access_token"]
        me = {"authorization": f"Bearer {token}"}
        status, body = await call(app, "POST", "/oauth/token",
                                  {**form, "authorization": f"Basic {chain_basic}"},
                                  b"grant_type=client_credentials")
        chain_auth = {"authorization": f"Bearer {json.loads(body)['access_token']}",
                      "content-type": "application/json"}
        split_body = json.dumps({"acting_member_id": chain["t1"], "parts": [
            {"amount": "40.00", "currency": "CNY"}, {"amount": "60.00", "currency": "CNY"}]}).encode()
        transfer_body = json.dumps({"acting_member_id": chain["t1"],
                                    "to_member_id": chain["t2"]}).encode()

        def certificate_move(i: int) -> Awaitable[tuple[int, bytes]]:
            action, body = ("transfer", transfer_body) if i % 2 else ("split", split_body)
            return call(app, "POST", f"/v1/chain-credit/payables-certificates/{next(leaves)}/{action}",
                        {**chain_auth, "idempotency-key": uuid.uuid4().hex}, body)
        n_assertions = ROUNDS * 2 * CALLS + 300  # one unused assertion per token call
        assertions = [urlencode({
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(pkj_id, key, aud=ISSUER)}).encode()
            for _ in range(n_assertions)]
        unused = itertools.count()

        def transfer(i: int) -> Awaitable[tuple[int, bytes]]:
            payer, payee = pairs[i % len(pairs)]
            body = json.dumps({"from_account_id": payer, "to_account_id": payee,
                               "amount": {"amount": "0.01", "currency": "CNY"}}).encode()
            return call(app, "POST", "/v1/transfers",
                        {**me, "content-type": "application/json",
                         "idempotency-key": uuid.uuid4().hex}, body)

        run, serial = uuid.uuid4().hex[:8], itertools.count()  # order numbers never repeat

        def collection_order(i: int) -> Awaitable[tuple[int, bytes]]:
            mandates, merchant = collection
            body = json.dumps({
                "merchant_order_no": f"B{run}-{next(serial)}",
                "amount": {"amount": "10.00", "currency": "CNY"},
                "payer": {"method": "mandate", "mandate_id": mandates[i % len(mandates)]},
                "splits": [{"sub_merchant_id": merchant,
                            "amount": {"amount": "9.90", "currency": "CNY"}}],
                "platform_fee": {"amount": "0.10", "currency": "CNY"}}).encode()
            return call(app, "POST", "/v1/collection/orders",
                        {**me, "content-type": "application/json",
                         "idempotency-key": uuid.uuid4().hex}, body)

        def egov_order(i: int) -> Awaitable[tuple[int, bytes]]:
            body = json.dumps({
                "item_code": "103040101", "item_name": "机动车驾驶证工本费",
                "payer": {"name": "张三", "id_number": ids[i % len(ids)]},
                "amount": {"amount": "25.00", "currency": "CNY"},
                "portal_reference": f"B{run}-{next(serial)}",
                "return_url": EGOV_ORIGIN + "/done"}, ensure_ascii=False).encode()
            return call(app, "POST", "/v1/egov/payment-orders",
                        {**me, "content-type": "application/json",
                         "idempotency-key": uuid.uuid4().hex}, body)

        ids = [generate_resident_id(rng) for _ in range(200)]
        pages = []  # open orders' checkout pages, viewed round-robin
        for i in range(100):
            status, body = await egov_order(i)
            pages.append(json.loads(body)["checkout_url"].removeprefix(ISSUER))

        def checkout_page(i: int) -> Awaitable[tuple[int, bytes]]:
            return call(app, "GET", pages[i % len(pages)], {})

        cases: list[tuple[str, Callable[[int], Awaitable[tuple[int, bytes]]], int]] = [
            ("bare FastAPI GET", lambda i: call(base_app, "GET", "/v1/me", {}), 1),
            ("GET /v1/me Bearer", lambda i: call(app, "GET", "/v1/me", me), 1),
            ("POST /oauth/token private_key_jwt",
             lambda i: call(app, "POST", "/oauth/token", form, assertions[next(unused)]), 1),
            ("bare FastAPI GET", lambda i: call(base_app, "GET", "/v1/me", {}), 32),
            ("GET /v1/me Bearer", lambda i: call(app, "GET", "/v1/me", me), 32),
            ("POST /oauth/token private_key_jwt",
             lambda i: call(app, "POST", "/oauth/token", form, assertions[next(unused)]), 8),
            ("POST /v1/transfers", transfer, 1),
            ("POST /v1/transfers", transfer, 8),
            ("POST /v1/collection/orders", collection_order, 1),
            ("POST /v1/collection/orders", collection_order, 8),
            ("POST /v1/egov/payment-orders", egov_order, 1),
            ("POST /v1/egov/payment-orders", egov_order, 8),
            ("GET /checkout/{token}", checkout_page, 1),
            ("GET /checkout/{token}", checkout_page, 8),
            ("POST certificate split/transfer", certificate_move, 1),
            ("POST certificate split/transfer", certificate_move, 8),
        ]
        cases = [case for case in cases if case[0].startswith("bare")
                 or not CASES or any(word in case[0] for word in CASES)]
        # Warm every path (first-request route set-up, caches), then keep the heap out of the
        # collector's way as the server does (gateway/asgi.py).
        for _, make, _ in cases:
            for i in range(50):
                await make(i)
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 50, 100)
        figures: dict[tuple[str, int], list[float]] = {}
        for _ in range(ROUNDS):  # rounds interleave the cases, so drift falls on all alike
            for name, make, concurrency in cases:
                figures.setdefault((name, concurrency), []).append(
                    await cpu_per_call(make, 201 if name.startswith("POST /v1/") else 200,
                                       concurrency))
        await stop()

    lines = []
    for (name, concurrency), values in figures.items():
        base = figures[("bare FastAPI GET", 32 if concurrency > 1 else 1)]
        ratio = min(base) / min(values)
        lines.append(f"{name:<36} {concurrency:3d} at once  CPU per call {spread(values)}"
                     f"   bare/this {ratio:5.2f}")
    report(f"CPU per call in one process on {'PostgreSQL' if backend else 'SQLite'}, "
           f"{CALLS} calls x {ROUNDS} rounds, "
           f"{time.strftime('%Y-%m-%d')}", lines)


if __name__ == "__main__":
    asyncio.run(main())
