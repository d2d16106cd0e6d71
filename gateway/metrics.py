"""Prometheus metrics: requests and latency by route template and status.

One process (`quanlian serve`, the default one worker): the counts live in this process and
`/metrics` renders them. Several worker processes (`quanlian serve --workers N`, or any process
manager started with `PROMETHEUS_MULTIPROC_DIR` set): prometheus-client's multiprocess mode.
Each process writes its values to files of its own in that directory, and `/metrics`, in
whichever process answers, adds up every process's files, so a scrape reports the whole
server, and a worker that died or was replaced still counts (counters never go back). The mode
is chosen by prometheus-client when it is first imported, from the environment: `serve` sets a
fresh private directory before its workers start (`gateway.cli_support.metrics_directory`).
A gauge added here needs a `multiprocess_mode` (e.g. `livesum`), which says how the processes'
values combine.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

# What prometheus-client chose for this process's values: files in PROMETHEUS_MULTIPROC_DIR,
# or memory.
MULTIPROCESS: bool = getattr(values.ValueClass, "_multiprocess", False)

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("quanlian_http_requests_total", "HTTP requests",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("quanlian_http_request_duration_seconds", "HTTP request latency",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    # The labelled children are looked up once per (method, route, status): `labels()` costs
    # more than the increment itself, on every call. (Nothing here depends on the mode: the
    # values prometheus-client made for this process write their files themselves.)
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (REQUESTS.labels(method, route, str(status)),
                                     LATENCY.labels(method, route))
    children[0].inc()
    children[1].observe(seconds)


if MULTIPROCESS:
    def render() -> bytes:
        # Every process's files, read at each scrape, into a registry of the scrape's own (the
        # metrics above must not be in it too, or this process would count twice).
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
else:
    def render() -> bytes:
        return generate_latest(REGISTRY)
