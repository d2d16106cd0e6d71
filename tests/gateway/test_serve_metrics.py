"""`quanlian serve --workers N`: /metrics counts the whole server's requests, whichever worker
process answers the scrape (prometheus-client's multiprocess mode), and stays behind the
metrics token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.tools.live import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-me"
REQUESTS = 40
_READYZ = re.compile(
    r'^quanlian_http_requests_total\{(?=[^}]*method="GET")(?=[^}]*route="/readyz")'
    r'(?=[^}]*status="200")[^}]*\}\s+(\S+)$', re.MULTILINE)


def _readyz_count(base: str) -> float:
    response = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=10)
    assert response.status_code == 200, response.text
    return sum(float(v) for v in _READYZ.findall(response.text))


def test_metrics_count_every_worker_of_a_multi_worker_server(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUANLIAN_") and k.lower() != "prometheus_multiproc_dir"}
    env.update({
        "QUANLIAN_DATA_DIR": str(tmp_path / "data"),  # an embedded SQLite database, migrated
        "QUANLIAN_ISSUER": base, "QUANLIAN_SEED_DEMO": "false",
        "QUANLIAN_METRICS_TOKEN": TOKEN, "QUANLIAN_LOG_LEVEL": "WARNING",
        "TMPDIR": str(scratch),
    })
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", "2",
         "--no-worker"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)

        unauthorised = httpx.get(base + "/metrics", timeout=10)
        assert unauthorised.status_code == 401
        assert unauthorised.json()["code"] == "metrics_token_required"
        wrong = httpx.get(base + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401

        for _ in range(REQUESTS):  # a connection each, so the kernel spreads them over workers
            assert httpx.get(base + "/readyz", timeout=10).status_code == 200
        # A request is counted just after its response is sent: wait for the last ones.
        deadline = time.monotonic() + 20
        while (total := _readyz_count(base)) < REQUESTS:
            assert time.monotonic() < deadline, f"/metrics counted {total} of {REQUESTS}"
            time.sleep(0.1)
        scrapes = [_readyz_count(base) for _ in range(12)]
        assert scrapes == [REQUESTS] * 12, scrapes
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
    # The server's private metrics directory goes with it.
    assert not list(scratch.glob("quanlian-metrics-*"))
