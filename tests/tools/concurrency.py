"""Run the same work in several threads that start together, for concurrency tests."""

from __future__ import annotations

import threading
from collections.abc import Callable


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
