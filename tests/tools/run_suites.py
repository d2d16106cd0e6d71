"""`make test`'s runner: the whole suite on SQLite and, when QUANLIAN_TEST_DATABASE_URL is set,
again on PostgreSQL (browser tests once, on SQLite).

The runs go side by side: the SQLite run in one pytest process, the PostgreSQL run spread over
`QUANLIAN_TEST_PG_WORKERS` (default 2) pytest-xdist workers. A PostgreSQL run spends more than
half its time waiting (on the server's disk flushes as it copies each test's database, on
servers and subprocesses its tests start), so on two cores the three processes finish in about
the time the PostgreSQL run alone took. The SQLite run's output is shown as it comes; the
PostgreSQL run's is kept in `test-output/postgresql.log` and shown when it ends. Each process
counts in a Redis database of its own (the SQLite run in the URL's, the PostgreSQL workers in
the next ones down: tests count per-address limits in Redis and one of them empties its
database). `QUANLIAN_TEST_SERIAL=1` runs SQLite, then PostgreSQL in one process, as before.

Extra arguments are passed to every pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.tools.databases import redis_database

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"


def sqlite_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "QUANLIAN_TEST_DATABASE_URL"}


def postgres_env() -> dict[str, str]:
    """The PostgreSQL run's environment: its Redis databases start one below the SQLite run's
    (each xdist worker takes one further down, tests.tools.databases)."""
    env = dict(os.environ)
    if env.get("QUANLIAN_TEST_REDIS_URL"):
        env["QUANLIAN_TEST_REDIS_URL"] = redis_database(env["QUANLIAN_TEST_REDIS_URL"], 1)
    return env


def pytest(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


def main(extra: list[str]) -> int:
    pg_url = os.environ.get("QUANLIAN_TEST_DATABASE_URL")
    print("== tests on SQLite ==", flush=True)
    if not pg_url:
        print("== PostgreSQL run skipped: QUANLIAN_TEST_DATABASE_URL is not set ==", flush=True)
        return subprocess.call(pytest(extra), env=sqlite_env(), cwd=ROOT)
    if os.environ.get("QUANLIAN_TEST_SERIAL") == "1":
        sqlite_rc = subprocess.call(pytest(extra), env=sqlite_env(), cwd=ROOT)
        print(f"== tests on PostgreSQL ({pg_url}) ==", flush=True)
        postgres_rc = subprocess.call(pytest(["-m", "not browser", *extra]),
                                      env=postgres_env(), cwd=ROOT)
        return sqlite_rc or postgres_rc
    workers = os.environ.get("QUANLIAN_TEST_PG_WORKERS", "2")
    OUTPUT.mkdir(exist_ok=True)
    log_path = OUTPUT / "postgresql.log"
    print(f"== tests on PostgreSQL ({pg_url}, {workers} workers) at the same time, "
          f"output in {log_path} ==", flush=True)
    with open(log_path, "w", encoding="utf-8") as log:
        postgres = subprocess.Popen(
            pytest(["-m", "not browser", "-n", workers, "--dist", "loadfile", *extra]),
            env=postgres_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            sqlite_rc = subprocess.call(pytest(["-p", "no:xdist", *extra]), env=sqlite_env(),
                                        cwd=ROOT)
            print(f"== SQLite run finished (exit {sqlite_rc}); waiting for PostgreSQL ==",
                  flush=True)
            postgres_rc = postgres.wait()
        finally:
            if postgres.poll() is None:  # interrupted: leave no run behind
                postgres.kill()
                postgres.wait()
    print(f"== tests on PostgreSQL ({pg_url}) ==", flush=True)
    sys.stdout.write(log_path.read_text(encoding="utf-8", errors="replace"))
    print(f"== SQLite exit {sqlite_rc}, PostgreSQL exit {postgres_rc} ==", flush=True)
    return sqlite_rc or postgres_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
