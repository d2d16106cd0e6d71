"""Admission: fewer requests at work than there are worker threads, so none can stall the rest.

A synchronous route ran on a worker thread (anyio's default pool), and FastAPI then validated
its response on a second hop to that pool, while the route's transaction was still open: the
middleware commits only after the response is built. A transaction that locked a row (every
collection order locks the clearing account; every transfer its payer; on SQLite the one
writer) held the lock across that second hop. When every worker thread was taken by requests
waiting for that lock, the hop never got a thread and the server stalled. (The platform's plain
routes now make one hop, `gateway.routing.OneHopRoute`; a route that is a coroutine may still
make several, and the gate also bounds the work in progress.) Measured before this gate: 64 concurrent collection orders on one worker made 1 order/s with a median of 91 s on
PostgreSQL (where nothing times out), and 2 orders in 6 s on SQLite.

So a request is admitted to the routes only while fewer than `worker_threads - reserve`
requests are at work. Each admitted request holds at most one worker thread at a time, so a
thread is always free for a lock holder's next hop. The reserve also covers the one thread
the evidence writer uses. What runs after a request has left the gate has threads of its own
(gateway/middleware.py): commits and rollbacks, and the after-failure writes. Requests waiting for admission wait on the event
loop, holding neither a thread nor a connection, and are admitted in arrival order.

The gate is taken by an application-wide dependency and given back by the edge middleware once
the route is done. FastAPI reads a JSON or form body before it
solves dependencies, so a slow client sending one holds no place; a route that streams its
body itself (the CSV batch upload) holds its place while it reads.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request

from gateway.context import state

_PLACE = "admission_place"


def admitted_at_once(worker_threads: int) -> int:
    """How many requests may be at work with `worker_threads` threads (at least one fewer)."""
    reserve = max(2, worker_threads // 5)
    return max(1, worker_threads - reserve)


def configure(app_state: object, worker_threads: int) -> None:
    """Size the worker pool of the running event loop and open the gate (at app start-up).
    `worker_threads` is at least 2 (the setting is validated so)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
    app_state.admission = anyio.CapacityLimiter(admitted_at_once(worker_threads))  # type: ignore[attr-defined]


async def admit(request: Request) -> None:
    """The dependency every route has: take a place for the request. The edge middleware gives
    it back (`leave`) once the response is built. A plain dependency, not one that yields:
    FastAPI's exit-stack machinery for those cost more than the gate itself."""
    gate: anyio.CapacityLimiter | None = getattr(request.app.state, "admission", None)
    if gate is None:  # the app was not started (no lifespan): nothing to size
        return
    st = state(request)
    if _PLACE in st:  # already admitted (a route that runs the dependency twice)
        return
    # On behalf of the request, not of the task: the middleware gives the place back.
    place = object()
    try:
        # A free place is taken at once. anyio's `acquire` would also yield to the event loop
        # for a round (a cancellation checkpoint): for `GET /v1/me`, about 4% of the call
        # (py-spy --gil over `bench_call_cpu`). The queue stays fair: a place is not free
        # while others wait for one.
        gate.acquire_on_behalf_of_nowait(place)
    except anyio.WouldBlock:
        await gate.acquire_on_behalf_of(place)
    st[_PLACE] = (gate, place)


def leave(st: dict[str, Any]) -> None:
    """Give back the request's place, if it took one (the edge middleware, once the route is
    done; before the commit, which has threads of its own)."""
    held = st.pop(_PLACE, None)
    if held is not None:
        gate, place = held
        gate.release_on_behalf_of(place)
