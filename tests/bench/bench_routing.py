"""Finding a request's route in the whole platform, with `gateway.routing.Router`'s prefix
shortcut and without it (the same app in the same run, the shortcut switched off).

Each figure is the time for the app's router to walk its included routers until one matches,
as it does for every request (FastAPI then searches the chosen router once more).

Run: `python -m tests.bench.bench_routing` (BENCH_ROUNDS, default 2000).
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.routing import Match

from gateway.routing import Router
from tests.bench.load import report

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2000"))
REQUESTS = [
    ("GET", "/v1/me"),
    ("POST", "/v1/transfers"),
    ("GET", "/v1/accounts/acct_x/balances"),
    ("POST", "/v1/chain-credit/payables-certificates/pc_x/split"),
    ("POST", "/v1/collection/orders"),
    ("POST", "/v1/egov/payment-orders"),
    ("GET", "/checkout/tok_x"),
]


def _route_time(app: Any, method: str, path: str) -> float:
    """Seconds to find the route of one request (mean over ROUNDS)."""
    def find() -> None:
        scope = {"type": "http", "path": path, "method": method, "root_path": "",
                 "headers": [], "query_string": b""}
        for route in app.router.routes:
            if route.matches(scope)[0] == Match.FULL:
                return
        raise AssertionError(f"no route for {method} {path}")

    find()
    start = time.perf_counter()
    for _ in range(ROUNDS):
        find()
    return (time.perf_counter() - start) / ROUNDS


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"QUANLIAN_DATA_DIR": tmp, "QUANLIAN_RUN_WORKER": "false",
                           "QUANLIAN_DATABASE_URL": f"sqlite:///{Path(tmp) / 'q.db'}",
                           "QUANLIAN_LOG_LEVEL": "WARNING"})
        from gateway.app import create_app

        app = create_app(start_background=False, startup_checks=False)  # no schema here
        lines = []
        for method, path in REQUESTS:
            shortcut = _route_time(app, method, path)
            literals = Router.literals
            Router.literals = lambda self: None  # type: ignore[method-assign,assignment]
            try:
                full = _route_time(app, method, path)
            finally:
                Router.literals = literals  # type: ignore[method-assign]
            lines.append(f"{method + ' ' + path:<56} {shortcut * 1e6:7.1f} µs  without the "
                         f"shortcut {full * 1e6:7.1f} µs  ratio {shortcut / full:.2f}")
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    report(f"finding the route, {ROUNDS} rounds, {when}", lines)


if __name__ == "__main__":
    main()
