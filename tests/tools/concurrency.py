"""Run the same work in several threads that start together, for concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


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
