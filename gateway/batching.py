"""Group commit for worker threads: many concurrent small writes, one transaction.

A thread submits an item and blocks until its item is durable. The first thread to find no
writer at work becomes the leader: it takes everything queued, writes it in one
transaction, hands each waiting thread its result, and passes the lead to the first thread
that queued meanwhile (so no thread serves others for ever). Under load a commit carries
many items; alone, an item costs one transaction as before.

The evidence recorder batches from the event loop with futures (its callers are coroutines);
this is the same idea for synchronous callers such as authlib's hooks, which run in worker
threads and cannot await.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Ticket(Generic[T, R]):
    __slots__ = ("item", "result", "error", "lead", "done")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.done = threading.Event()


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], Sequence[R]], max_batch: int = 500) -> None:
        """`write` stores a batch in one transaction and returns one result per item."""
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Ticket[T, R]] = []
        self._busy = False

    def submit(self, item: T) -> R:
        ticket: _Ticket[T, R] = _Ticket(item)
        with self._lock:
            self._queue.append(ticket)
            if not self._busy:
                self._busy = ticket.lead = True
        if not ticket.lead:
            ticket.done.wait()
            if not ticket.lead:
                return self._outcome(ticket)
        self._lead()
        return self._outcome(ticket)

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = (self._queue[:self._max_batch],
                                  self._queue[self._max_batch:])
        try:
            results = self._write([t.item for t in batch])
            if len(results) != len(batch):
                raise RuntimeError("group commit: one result per item expected")
            for ticket, result in zip(batch, results, strict=True):
                ticket.result = result
        except BaseException as exc:  # every item of the batch learns the batch failed
            for ticket in batch:
                ticket.error = exc
        finally:
            # The leader's own ticket is always first in its batch, and the successor is the
            # first ticket left in the queue, never one of this batch.
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._busy = False
                else:
                    successor.lead = True
            for ticket in batch:
                ticket.done.set()
            if successor is not None:
                successor.done.set()

    @staticmethod
    def _outcome(ticket: _Ticket[T, R]) -> R:
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]
