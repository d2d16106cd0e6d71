"""Run the same work in several threads that start together, for concurrency tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gateway.errors import Problem


def run_together(work: Callable[[], object], threads: int, *, timeout: float = 120) -> None:
    """Start `threads` threads at one barrier, each running `work` once; re-raise the first
    error any of them met (in the test's thread, where pytest reports it)."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in pool), "a worker did not finish in time"
    if errors:
        raise errors[0]


@contextmanager
def hand_offs_counted() -> Iterator[list[str]]:
    """The names of the functions handed to a worker thread (`anyio.to_thread.run_sync`, which
    FastAPI and the gateway use) while the block runs, in order."""
    import anyio.to_thread

    names: list[str] = []
    real = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    anyio.to_thread.run_sync = counted  # type: ignore[assignment]
    try:
        yield names
    finally:
        anyio.to_thread.run_sync = real  # type: ignore[assignment]


@dataclass
class Raced:
    """How a race of two creations ended: the second's outcome ("created", its problem's code,
    or the name of the exception it raised), its problem, and what the first created."""

    code: str
    problem: Problem | None
    first: Any


def race_second(database: Any, create: Callable[[Any], Any]) -> Raced:
    """`create` in a transaction held open while a second `create` runs; how the second ended.

    The first's row is written but not yet committed when the second looks for it, as when two
    requests arrive together: on PostgreSQL the second's insert waits on the unique index, then
    fails. On SQLite the second waits for the writer's lock (`BEGIN IMMEDIATE`), and its look-up
    then finds the first's committed row."""
    outcome: dict[str, Any] = {"problem": None}

    def second() -> None:
        try:
            with database.transaction() as s:
                create(s)
            outcome["code"] = "created"
        except Problem as exc:
            outcome["code"], outcome["problem"] = exc.code, exc
        except Exception as exc:  # noqa: BLE001 - the test reports what it was
            outcome["code"] = type(exc).__name__

    with database.transaction() as s:
        first = create(s)
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)  # the second request looks, finds nothing committed, and inserts
    racer.join(timeout=30)
    assert not racer.is_alive()
    return Raced(outcome["code"], outcome["problem"], first)
