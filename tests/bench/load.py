"""Benchmark plumbing: a server in a subprocess and an HTTP/1.1 keep-alive load generator.

The load comes from `wrk` (a C generator, Debian package `wrk`) when it is installed: on a
two-core machine a Python generator saturates its own core near 2,000 req/s and would hide
the difference between a bare endpoint and a slower one. Without wrk a lean asyncio generator
speaking raw HTTP stands in (set BENCH_LOADGEN=python to force it). Every figure is printed
beside a baseline measured by the same generator in the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.tools.live import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    percentiles_ms: dict[float, float] | None = None  # from wrk, which keeps no raw samples

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if self.percentiles_ms is not None:
            return self.percentiles_ms[q]
        data = sorted(self.latencies)
        if not data:
            return 0.0
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    def line(self, baseline: Result | None = None) -> str:
        ratio = f"  ratio {self.rps / baseline.rps:.2f} of {baseline.name}" if baseline else ""
        return (f"{self.name:<34} {self.rps:8.0f} req/s  p50 {self.pct(0.5):6.2f} ms  "
                f"p99 {self.pct(0.99):6.2f} ms  errors {self.errors}{ratio}")


RequestFactory = Callable[[int], bytes]


async def _worker(host: str, port: int, make: RequestFactory, deadline: float, max_requests: int,
                  counter: list[int], latencies: list[float], errors: list[int], ok: set[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and counter[0] < max_requests:
            counter[0] += 1
            payload = make(counter[0])
            start = time.perf_counter()
            writer.write(payload)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status = int(status_line.split(b" ", 2)[1]) if status_line else 0
            if status not in ok:
                errors[0] += 1
    finally:
        writer.close()


def run_load(name: str, port: int, make: RequestFactory, *, connections: int = 32,
             seconds: float = 5.0, max_requests: int = 200_000, ok: set[int] | None = None,
             warmup: float = 1.0) -> Result:
    """Drive `connections` keep-alive connections for `seconds` (bounded by max_requests).

    `make(i)` builds the i-th request (i from 1); when it returns the same bytes every time the
    request is repeated, otherwise each request is sent once."""
    ok = ok or {200}
    if shutil.which("wrk") and os.environ.get("BENCH_LOADGEN", "wrk") == "wrk":
        return _run_wrk(name, port, make, connections=connections, seconds=seconds,
                        max_requests=max_requests, ok=ok, warmup=warmup)

    async def go(duration: float) -> Result:
        counter, errors, latencies = [0], [0], []
        deadline = time.perf_counter() + duration
        start = time.perf_counter()
        await asyncio.gather(*[_worker("127.0.0.1", port, make, deadline, max_requests, counter,
                                       latencies, errors, ok) for _ in range(connections)])
        return Result(name, len(latencies), time.perf_counter() - start, latencies, errors[0])

    asyncio.run(go(warmup))
    return asyncio.run(go(seconds))


# One wrk thread: the generator then takes a fraction of one core and leaves the rest to the
# server. Requests come from a file; a thread stops when they run out (the count bound).
_WRK_SCRIPT = r"""
local reqs, sent = {}, 0
okc, bad = 0, 0  -- globals: done() reads them through thread:get
local ok_codes = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  local f = assert(io.open(args[1], "rb")); local data = f:read("*a"); f:close()
  local sep = args[2]
  local start = 1
  while true do
    local a, b = string.find(data, sep, start, true)
    if not a then break end
    table.insert(reqs, string.sub(data, start, a - 1)); start = b + 1
  end
  repeat_one = (args[3] == "repeat")
  for code in string.gmatch(args[4], "%d+") do ok_codes[tonumber(code)] = true end
end
function request()
  sent = sent + 1
  if repeat_one then return reqs[1] end
  if sent > #reqs then wrk.thread:stop(); return reqs[#reqs] end
  return reqs[sent]
end
function response(status, headers, body)
  if ok_codes[status] then okc = okc + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("okc"); b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT {\"requests\": %d, \"duration_us\": %d, \"ok\": %d, \"bad\": %d, " ..
    "\"socket_errors\": %d, \"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration, o, b, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
_SEP = "\n--wrk-request-7f3a--\n"


def _run_wrk(name: str, port: int, make: RequestFactory, *, connections: int, seconds: float,
             max_requests: int, ok: set[int], warmup: float) -> Result:
    first, second = make(1), make(2)
    repeat = first == second
    count = 1 if repeat else max_requests
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "load.lua")
        script.write_text(_WRK_SCRIPT)

        def wrk(duration: float, requests: list[bytes]) -> dict[str, Any]:
            path = Path(tmp, "requests")
            path.write_bytes(b"".join(r + _SEP.encode("latin-1") for r in requests))
            out = subprocess.run(
                ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
                 "-s", str(script), f"http://127.0.0.1:{port}/", "--", str(path), _SEP,
                 "repeat" if repeat else "once", ",".join(map(str, sorted(ok)))],
                capture_output=True, text=True, timeout=duration + 60, check=True).stdout
            line = next(x for x in out.splitlines() if x.startswith("WRK-RESULT "))
            return json.loads(line.split(" ", 1)[1])

        if repeat:
            if warmup:
                wrk(warmup, [first])
            figures = wrk(seconds, [first])
        else:
            # Unique requests: no warm-up (it would spend them); built before the clock starts.
            figures = wrk(seconds, [first, second] + [make(i) for i in range(3, count + 1)])
    done = figures["ok"] + figures["bad"]
    return Result(name, done, figures["duration_us"] / 1e6, [], figures["bad"] + figures["socket_errors"],
                  {0.5: figures["p50_us"] / 1000, 0.99: figures["p99_us"] / 1000})


def http_request(method: str, path: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@contextmanager
def server(target: str, env: dict[str, str] | None = None, port: int | None = None,
           workers: int = 1):
    """Run `uvicorn target` (an app or factory path) in a subprocess; yields the port."""
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.update(env or {})
    args = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--workers", str(workers)]
    if target.endswith("()"):
        args[3] = target[:-2]
        args.append("--factory")
    proc = subprocess.Popen(args, env=full_env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server {target} did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(title: str, lines: list[str]) -> None:
    print(f"\n== {title} ==")
    for line in lines:
        print(line)


def env_for(data_dir: Path, url: str, port: int, **extra: Any) -> dict[str, str]:
    env = {"QUANLIAN_DATA_DIR": str(data_dir), "QUANLIAN_DATABASE_URL": url,
           "QUANLIAN_ISSUER": f"http://127.0.0.1:{port}", "QUANLIAN_RUN_WORKER": "false",
           "QUANLIAN_LOG_LEVEL": "WARNING", "QUANLIAN_TOKEN_ENDPOINT_LIMITS": "1000000/second",
           "QUANLIAN_SEED_DEMO": "false"}
    env.update({k.upper() if k.startswith("quanlian") else k: str(v) for k, v in extra.items()})
    return env
