"""Collection: orders through HTTP on one worker, and the settlement and reconciliation of a day
of 100,000 orders beside a raw bulk INSERT of the same rows.

Run: `python -m tests.bench.bench_collection` (PostgreSQL when QUANLIAN_BENCH_DATABASE_URL is
set; BENCH_SECONDS, BENCH_COLLECTION_ORDERS (100000) and BENCH_CONNECTIONS tune it).

1. `POST /v1/collection/orders` by mandate (token check, Idempotency-Key, split plan, mandate
   limits, one ledger entry payer -> clearing, event + evidence) against a uvicorn server with
   one worker, beside a bare FastAPI endpoint measured by the same load generator. Payers are
   spread over 64 mandates (the clearing account is the one hot row, as in production).
2. A business date with N orders (1-3 splits each) and N/100 refunds written straight into
   the tables (and one ledger entry per kind, so the clearing account agrees with the lines).
   Baseline: a raw batched INSERT of the same order and split rows into bare tables. Measured:
   the settlement run of the date (`settlement.settle_due`) plus the statement (built from the
   ledger and the lines) rendered as JSON and as CSV.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import Column, MetaData, Table, func, insert, select

from gateway import pii
from gateway.app import import_models
from gateway.db import Base, Database
from gateway.identifiers import generate_resident_id, generate_uscc
from gateway.keys import PlatformKeys
from gateway.oauth.clients import create_client
from gateway.tenancy import Partner, Tenant, clock_for, create_partner, ensure_tenant
from products.accounts import reconciliation
from products.accounts import service as accounts
from products.accounts.reconciliation import accounting_date, day_window
from products.collection import ledger, schemas, service, settlement, statements
from products.collection.models import Order, OrderSplit, Refund, RefundSplit
from tests.bench.load import env_for, http_request, report, run_load, server
from tests.tools.databases import empty_database_url, stamp_head
from tests.tools.live import free_port

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
N_ORDERS = int(os.environ.get("BENCH_COLLECTION_ORDERS", "100000"))
CHUNK = 5000
MANDATES = 64
rng = random.Random(20261102)


def server_cpu_seconds(port: int) -> float:
    """User + system CPU of the uvicorn process serving `port` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"uvicorn" in b" ".join(cmdline) and str(port).encode() in cmdline:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return float("nan")


def money(fen: int) -> schemas.MoneyIn:
    return schemas.MoneyIn(amount=f"{fen // 100}.{fen % 100:02d}", currency="CNY")


def account(session: Any, tenant_id: str, funds: int = 0, person: bool = False) -> str:
    if person:
        row = accounts.create_account(session, tenant_id, kind="settlement", owner_type="person",
                                      owner_name="张伟", owner_id_number=generate_resident_id(rng))
    else:
        row = accounts.create_account(session, tenant_id, kind="settlement",
                                      owner_type="enterprise", owner_name="苏州恒达餐饮管理有限公司",
                                      owner_uscc=generate_uscc(rng))
    if funds:
        accounts.deposit(session, tenant_id, row.id, funds, journal_ref=f"bench:{row.id}")
    return row.id


def platform(session: Any, merchants: int) -> tuple[str, list[str]]:
    """A sandbox tenant set up for collection with `merchants` sub-merchants."""
    partner = create_partner(session, name="Bench", status="active")
    tenant_id = ensure_tenant(session, partner.id, "sandbox").id
    fee_account = account(session, tenant_id)
    service.update_settings(session, tenant_id, "bench",
                            schemas.SettingsUpdate(fee_account_id=fee_account))
    ids = []
    for i in range(merchants):
        rule = (schemas.FeeRuleIn(type="percentage", rate="0.006") if i % 2 == 0
                else schemas.FeeRuleIn(type="fixed", amount=money(50)))
        ids.append(service.create_sub_merchant(session, tenant_id, "bench", schemas.SubMerchantCreate(
            name=f"商户{i}", uscc=generate_uscc(rng), settlement_account_id=account(session, tenant_id),
            fee_rule=rule)).id)
    return tenant_id, ids


# --- 1. orders through HTTP ---------------------------------------------------------------

def bench_http(base_url: str | None) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        data = Path(tmp)
        import_models()
        database = Database(url)
        Base.metadata.create_all(database.engine)
        stamp_head(database)  # the server checks the schema's revision
        pii.set_vault(pii.Vault(PlatformKeys(data)))
        with database.transaction() as s:
            tenant_id, merchants = platform(s, 4)
            partner = s.get(Partner, s.get(Tenant, tenant_id).partner_id)  # type: ignore[union-attr]
            issued = create_client(s, partner=partner, environment="sandbox",
                                   name="bench", scopes=["collection:read", "collection:write"],
                                   with_secret=True, require_dpop=False, rate_plan="unlimited")
            client = (issued.client.id, issued.secret)
            today = clock_for(s, tenant_id).today()
            mandates = []
            for i in range(MANDATES):
                payer = account(s, tenant_id, 10**12, person=True)
                mandates.append(service.create_mandate(s, tenant_id, "bench", schemas.MandateCreate(
                    reference=f"MD-{i}", payer_name="张伟", payer_account_id=payer,
                    per_debit_limit=money(10**7), monthly_limit=money(10**13),
                    expires_on=today + timedelta(days=30))).id)
        database.dispose()
        port = free_port()
        env = env_for(data, url, port)
        with server("tests.bench.baselines:bare()") as bport:
            bare = run_load("bare FastAPI", bport, lambda i: http_request("GET", "/v1/me"),
                            connections=CONNECTIONS, seconds=min(SECONDS, 5))
        lines.append(bare.line())
        with server("gateway.asgi:app", env=env, port=port):
            token = httpx.post(f"http://127.0.0.1:{port}/oauth/token",
                               content=urlencode({"grant_type": "client_credentials"}),
                               headers={"content-type": "application/x-www-form-urlencoded"},
                               auth=client).json()["access_token"]
            run = uuid.uuid4().hex[:6]

            def make(i: int) -> bytes:
                amount = 1000 + i % 9000
                body = json.dumps({
                    "merchant_order_no": f"B{run}-{i}",
                    "amount": {"amount": f"{amount // 100}.{amount % 100:02d}", "currency": "CNY"},
                    "payer": {"method": "mandate", "mandate_id": mandates[i % MANDATES]},
                    "splits": [{"sub_merchant_id": merchants[i % 4],
                                "amount": {"amount": f"{(amount - 10) // 100}."
                                                     f"{(amount - 10) % 100:02d}",
                                           "currency": "CNY"}}],
                    "platform_fee": {"amount": "0.10", "currency": "CNY"}}).encode()
                return http_request("POST", "/v1/collection/orders", {
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Idempotency-Key": f"{run}-{i}"}, body)

            me = run_load("GET /v1/me (platform baseline)", port,
                          lambda i: http_request("GET", "/v1/me",
                                                 {"Authorization": f"Bearer {token}"}),
                          connections=CONNECTIONS, seconds=min(SECONDS, 5))
            cpu_before = server_cpu_seconds(port)
            result = run_load("POST /v1/collection/orders", port, make, connections=CONNECTIONS,
                              seconds=SECONDS, ok={201}, warmup=0.0)
            cpu = server_cpu_seconds(port) - cpu_before
        lines.append(me.line(bare))
        lines.append(result.line(me))
        lines.append(f"{'server CPU per order':<34} {cpu / max(1, result.requests) * 1000:8.2f} ms "
                     f"   (so {result.requests / cpu if cpu else 0:.0f} orders/s per busy core)")
        verify = Database(url)
        with verify.transaction() as s:
            made = s.scalar(select(func.count()).select_from(Order).where(
                Order.status == "succeeded"))
            problems = accounts.audit(s, tenant_id)
        verify.dispose()
        lines.append(f"{'orders succeeded in the database':<34} {made:8d}       ledger audit: "
                     f"{'clean' if not problems else problems[:3]}")
    return lines


# --- 2. settlement and reconciliation of a day ------------------------------------------------

def _rows(tenant_id: str, merchants: list[str], day: Any, start: datetime, n: int
          ) -> tuple[list[dict], list[dict], list[dict], list[dict], int, int]:
    orders, splits, refunds, refund_splits = [], [], [], []
    span = 20 * 3600
    total = refunded = 0
    for i in range(n):
        oid = f"cord_bench{i:017d}"
        at = start + timedelta(seconds=1 + (i * span) // n)
        amount = 500 + rng.randrange(50_000)
        fee = amount // 100
        parts = 1 + i % 3
        shares = [(amount - fee) // parts] * parts
        shares[0] += amount - fee - sum(shares)
        orders.append({
            "id": oid, "tenant_id": tenant_id, "merchant_order_no": f"MO{i:012d}",
            "scene": "general", "payer_method": "mandate", "mandate_id": "cmd_bench",
            "virtual_account_id": None, "diner_id": None, "bill_id": None, "description": "",
            "amount_fen": amount, "platform_share_fen": fee, "commission_fen": 0,
            "refunded_fen": 0, "refund_count": 0, "subsidy_fen": 0, "personal_fen": 0,
            "status": "succeeded", "failure_code": None, "failure_message": None,
            "journal_ref": f"collection:order:{oid}", "created_by": "bench", "created_at": at,
            "created_date": day, "expires_at": None, "finalized_at": at, "final_date": day})
        for seq, share in enumerate(shares):
            merchant = merchants[(i + seq) % len(merchants)]
            commission = share * 6 // 1000
            splits.append({"order_id": oid, "seq": seq, "tenant_id": tenant_id,
                           "sub_merchant_id": merchant, "amount_fen": share, "fee_fen": commission,
                           "refunded_fen": 0, "fee_refunded_fen": 0})
            orders[-1]["commission_fen"] += commission
        splits.append({"order_id": oid, "seq": parts, "tenant_id": tenant_id,
                       "sub_merchant_id": None, "amount_fen": fee, "fee_fen": 0,
                       "refunded_fen": 0, "fee_refunded_fen": 0})
        total += amount
        if i % 100 == 7:
            rid = f"crf_bench{i:018d}"
            back = shares[0] // 2
            refunds.append({"id": rid, "tenant_id": tenant_id, "order_id": oid,
                            "refund_reference": f"RF{i:012d}", "amount_fen": back, "reason": "",
                            "status": "succeeded", "subsidy_fen": 0, "personal_fen": 0,
                            "employer_fen": 0, "destination_account_id": "acct_bench",
                            "journal_ref": f"collection:refund:{rid}", "created_by": "bench",
                            "created_at": at + timedelta(seconds=30), "refund_date": day})
            refund_splits.append({"refund_id": rid, "seq": 0, "tenant_id": tenant_id,
                                  "sub_merchant_id": merchants[i % len(merchants)],
                                  "amount_fen": back, "fee_refund_fen": 0})
            refunded += back
    return orders, splits, refunds, refund_splits, total, refunded


def _insert(database: Database, table: Any, rows: list[dict]) -> None:
    for i in range(0, len(rows), CHUNK):
        with database.transaction() as s:
            s.execute(insert(table), rows[i:i + CHUNK])


def bench_day(base_url: str | None) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory() as tmp, empty_database_url(base_url) as url:
        import_models()
        database = Database(url)
        Base.metadata.create_all(database.engine)
        pii.set_vault(pii.Vault(PlatformKeys(Path(tmp))))
        with database.transaction() as s:
            tenant_id, merchants = platform(s, 20)
            settings = service.ensure_settings(s, tenant_id)
            clearing, fee_account = settings.clearing_account_id, settings.fee_account_id
            now = clock_for(s, tenant_id).now()
            day = accounting_date(now) - timedelta(days=1)
        start, end = day_window(day)
        orders, splits, refunds, refund_splits, total, refunded = _rows(
            tenant_id, merchants, day, start, N_ORDERS)

        # the baseline: the same order and split rows into bare tables
        md = MetaData()
        bare_orders = Table("bench_raw_orders", md, *[
            Column(c.name, c.type) for c in Order.__table__.columns])
        bare_splits = Table("bench_raw_splits", md, *[
            Column(c.name, c.type) for c in OrderSplit.__table__.columns])
        md.create_all(database.engine)
        t0 = time.perf_counter()
        _insert(database, bare_orders, orders)
        _insert(database, bare_splits, splits)
        raw_seconds = time.perf_counter() - t0
        lines.append(f"{'raw INSERT of the rows':<34} {raw_seconds:8.2f} s     "
                     f"{len(orders)} orders + {len(splits)} splits")

        # the day itself, and the ledger behind it (one entry per kind, inside the window)
        _insert(database, Order.__table__, orders)
        _insert(database, OrderSplit.__table__, splits)
        _insert(database, Refund.__table__, refunds)
        _insert(database, RefundSplit.__table__, refund_splits)
        with database.transaction() as s:
            accounts.deposit(s, tenant_id, clearing, total, journal_ref="bench:day",
                             at=start + timedelta(seconds=1))
            ledger.move(s, tenant_id, from_account_id=clearing, to_account_id=fee_account,
                        amount_fen=refunded, journal_ref="bench:refunds",
                        reference_type="bench", reference_id="refunds", purpose="bench",
                        at=start + timedelta(hours=21))
        t0 = time.perf_counter()
        with database.transaction() as s:
            settled = settlement.settle_due(s, tenant_id, clock_for(s, tenant_id).now())
        settle_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        with database.transaction() as s:
            statement = statements.statement_for(s, tenant_id, day)
        csv_bytes = len("".join(reconciliation.statement_csv(statement)).encode())
        json_bytes = len(json.dumps(reconciliation.statement_json(statement)).encode())
        reconcile_seconds = time.perf_counter() - t1
        measured = settle_seconds + reconcile_seconds
        lines.append(f"{'settlement run':<34} {settle_seconds:8.2f} s     {settled} payees paid")
        lines.append(f"{'statement + JSON + CSV':<34} {reconcile_seconds:8.2f} s     "
                     f"{len(statement.lines)} lines, ledger agrees: {statement.ledger_agrees}, "
                     f"JSON {json_bytes / 1e6:.1f} MB, CSV {csv_bytes / 1e6:.1f} MB")
        lines.append(f"{'settlement + reconciliation':<34} {measured:8.2f} s     "
                     f"ratio {measured / raw_seconds:.2f} of the raw INSERT (target <= 3)")
        database.dispose()
    return lines


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    backend = "PostgreSQL" if base_url else "SQLite"
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    http_lines = bench_http(base_url)
    report(f"collection orders over HTTP on {backend}, 1 worker, {CONNECTIONS} connections, "
           f"{SECONDS:.0f} s, {when}", http_lines)
    day_lines = bench_day(base_url)
    report(f"settlement and reconciliation of {N_ORDERS} orders on {backend}, {when}", day_lines)


if __name__ == "__main__":
    main()
