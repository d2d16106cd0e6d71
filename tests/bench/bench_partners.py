"""Webhook delivery throughput beside a bare baseline, and the cost of counting usage.

* pipeline: N events published, then `webhooks.fan_out` + `webhooks.deliver` until idle
  (claim with a lease, sign, POST to a local receiver, record each attempt in its own
  transaction);
* baseline: the same N signed POSTs to the same receiver with the same concurrency and a
  fresh httpx client per request (as the pipeline does), with no database at all;
* usage: `UsageAggregator.observe` per call, against an empty function call.

Run: `python -m tests.bench.bench_partners` (PostgreSQL when QUANLIAN_BENCH_DATABASE_URL is
set; BENCH_EVENTS, default 1000).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.context import CallRecord
from gateway.events import publish
from gateway.jobs import run_all_once
from gateway.oauth.clients import create_client
from gateway.tenancy import clock_for, create_partner
from partners.usage import UsageAggregator
from partners.webhooks.service import Owner, create_endpoint
from partners.webhooks.signing import new_secret, signature_header
from tests.partners.helpers import Receiver
from tests.tools.api import make_app
from tests.tools.databases import fresh_database

EVENTS = int(os.environ.get("BENCH_EVENTS", "1000"))


def pipeline(receiver: Receiver) -> tuple[float, float]:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp, fresh_database(base_url) as database:
        app = make_app(database, Path(tmp), webhook_allow_loopback=True)
        config = app.state.webhooks
        with database.transaction() as s:
            partner = create_partner(s, name="Bench", status="active")
            issued = create_client(s, partner=partner, environment="sandbox", name="bench",
                                   scopes=["webhooks:manage"], with_secret=True)
            tenant_id = issued.client.tenant_id
            create_endpoint(s, Owner(tenant_id, partner.id, "sandbox", "bench"),
                            url=receiver.url, event_types=["bench.*"], description=None,
                            allow_loopback=True)
        with database.transaction() as s:
            now = clock_for(s, tenant_id).now()
            for i in range(EVENTS):
                publish(s, tenant_id=tenant_id, type="bench.happened", resource_type="bench",
                        resource_id=f"b{i}", data={"i": i, "amount": {"amount": "1.00",
                                                                      "currency": "CNY"}},
                        actor="bench", at=now)
        started = time.perf_counter()
        while any(run_all_once(database, only=["webhooks.fan_out", "webhooks.deliver"]).values()):
            pass
        elapsed = time.perf_counter() - started
        return EVENTS / elapsed, config.concurrency


def baseline(receiver: Receiver, concurrency: int) -> float:
    secret = new_secret()
    tls = httpx.create_ssl_context(trust_env=False)
    body = b'{"data":{"amount":{"amount":"1.00","currency":"CNY"},"i":0},"type":"bench.happened"}'

    def post(i: int) -> None:
        ts = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": f"msg_{i}",
                   "webhook-timestamp": str(ts),
                   "webhook-signature": signature_header([secret], f"msg_{i}", ts, body)}
        with httpx.Client(timeout=10, follow_redirects=False, trust_env=False,
                          verify=tls) as http:
            http.post(receiver.url, content=body, headers=headers).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, range(EVENTS)))
    return EVENTS / (time.perf_counter() - started)


def usage_cost() -> tuple[float, float]:
    aggregator = UsageAggregator(database=None)  # type: ignore[arg-type]  # never flushed
    record = CallRecord(request_id="req", method="GET", path="/v1/partner", route="/v1/partner",
                        status=200, request_sha256="", response_sha256="",
                        started_at=datetime.now(UTC), latency_ms=3.2, client_id="cli",
                        partner_id="ptn", tenant_id="ten", environment="sandbox")
    n = 200_000

    def noop(_: CallRecord) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        noop(record)
    bare = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        aggregator.observe(record)
    return aggregator_ns(started, n), bare * 1e9


def aggregator_ns(started: float, n: int) -> float:
    return (time.perf_counter() - started) / n * 1e9


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    receiver = Receiver().start()
    try:
        rate, concurrency = pipeline(receiver)
        receiver.received.clear()
        bare = baseline(receiver, int(concurrency))
    finally:
        receiver.stop()
    observe_ns, noop_ns = usage_cost()
    backend = "PostgreSQL" if os.environ.get("QUANLIAN_BENCH_DATABASE_URL") else "SQLite"
    print(f"webhook pipeline ({backend}, {EVENTS} events, {concurrency} senders): "
          f"{rate:,.0f} deliveries/s")
    print(f"baseline signed POSTs, no database:           {bare:,.0f} requests/s")
    print(f"ratio pipeline / baseline:                    {rate / bare:.2f}")
    print(f"usage observe per call: {observe_ns:,.0f} ns (empty call {noop_ns:,.0f} ns, "
          f"ratio {observe_ns / noop_ns:.1f})")


if __name__ == "__main__":
    main()
