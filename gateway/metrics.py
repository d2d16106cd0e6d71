"""Prometheus metrics: requests and latency by route template and status."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("quanlian_http_requests_total", "HTTP requests",
                   ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram("quanlian_http_request_duration_seconds", "HTTP request latency",
                    ["method", "route"], registry=REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    # The labelled children are looked up once per (method, route, status): `labels()` costs
    # more than the increment itself, on every call.
    key = (method, route, status)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (REQUESTS.labels(method, route, str(status)),
                                     LATENCY.labels(method, route))
    children[0].inc()
    children[1].observe(seconds)


def render() -> bytes:
    return generate_latest(REGISTRY)
