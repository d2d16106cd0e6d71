"""Writing entries: inside the business transaction, or by group commit.

A call that changed state has its entry added to the request's own transaction (no change
without its evidence, no evidence of a change that rolled back). Reads and refused calls
changed nothing, so their entries are written by group commit: concurrent requests queue
their entries and one of them (the leader) inserts the whole batch in one transaction;
every request waits until its batch is durable before its response is sent.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
from sqlalchemy import insert
from sqlalchemy.orm import Session

from gateway.context import CallRecord
from gateway.db import Database
from gateway.events import Event, add_sink
from gateway.evidence.entries import Draft, call_draft, event_draft
from gateway.evidence.models import EvidenceEntry

RECORDED_PREFIXES = ("/v1/", "/oauth/", "/sandbox/", "/checkout/", "/console")


def row(draft: Draft) -> dict[str, Any]:
    return {"id": draft.id, "kind": draft.kind, "tenant_id": draft.tenant_id,
            "partner_id": draft.partner_id, "resource_id": draft.resource_id,
            "request_id": draft.request_id, "canonical": draft.canonical,
            "leaf_hash": draft.leaf, "idx": None, "created_at": draft.created_at}


class _Batch:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


class GroupCommitWriter:
    def __init__(self, database: Database, max_batch: int = 500) -> None:
        self.database = database
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._pending = _Batch()
        self._writing = False

    def write(self, draft: Draft) -> None:
        """Block until `draft` is committed (as part of some batch)."""
        with self._lock:
            batch = self._pending
            batch.rows.append(row(draft))
            lead = not self._writing
            if lead:
                self._writing = True
        if not lead:
            batch.done.wait(60)
            if not batch.done.is_set():
                raise TimeoutError("evidence group commit timed out")
            if batch.error is not None:
                raise batch.error
            return
        # The leader writes batches until nothing is pending, then hands over.
        while True:
            with self._lock:
                current = self._pending
                if not current.rows:
                    self._writing = False
                    break
                self._pending = _Batch()
            try:
                with self.database.transaction() as session:
                    session.connection().execute(insert(EvidenceEntry.__table__), current.rows)
            except Exception as exc:  # every waiter of this batch learns it failed
                current.error = exc
            current.done.set()
        if batch.error is not None:
            raise batch.error


class CallRecorder:
    """The edge middleware's hook (app.state.call_recorder)."""

    def __init__(self, database: Database) -> None:
        self.writer = GroupCommitWriter(database)

    @staticmethod
    def wants(record: CallRecord) -> bool:
        return record.path.startswith(RECORDED_PREFIXES)

    @staticmethod
    def call_entry(record: CallRecord) -> Draft:
        return call_draft(record)

    @staticmethod
    def add(session: Session, draft: Draft) -> None:
        session.connection().execute(insert(EvidenceEntry.__table__), [row(draft)])

    async def record_detached(self, draft: Draft) -> None:
        await anyio.to_thread.run_sync(self.writer.write, draft)


def record_event(session: Session, event: Event) -> None:
    """Events sink: every business event is an entry in the same transaction."""
    draft = event_draft(event_id=event.id, tenant_id=event.tenant_id, type=event.type,
                        resource_type=event.resource_type, resource_id=event.resource_id,
                        actor=event.actor, state_sha256=event.state_digest, at=event.created_at)
    session.connection().execute(insert(EvidenceEntry.__table__), [row(draft)])


add_sink(record_event)
