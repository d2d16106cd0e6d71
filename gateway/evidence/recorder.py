"""Writing entries: inside the business transaction, or by group commit.

A call that changed state has its entry added to the request's own transaction (no change
without its evidence, no evidence of a change that rolled back). Reads and refused calls
changed nothing, so their entries are written by group commit: concurrent requests queue
their entries and one of them (the leader) inserts the whole batch in one transaction;
every request waits until its batch is durable before its response is sent.

A throttled call of nobody (429 without an authenticated principal) has no entry (`wants`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from sqlalchemy import event as orm_events
from sqlalchemy.orm import Session

from gateway.bulk import MULTI_VALUES, driver_insert, session_insert, session_insert_later
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


class GroupCommitWriter:
    """Batches entries from concurrent requests into one INSERT transaction.

    Waiting requests hold an asyncio future, not a thread: one flusher task per event loop
    takes everything queued, writes it in a worker thread, and resolves the futures once the
    transaction has committed.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._queues: dict[int, list[tuple[dict[str, Any], asyncio.Future[None]]]] = {}
        self._flushing: set[int] = set()

    async def write(self, draft: Draft) -> None:
        loop = asyncio.get_running_loop()
        key = id(loop)
        future: asyncio.Future[None] = loop.create_future()
        self._queues.setdefault(key, []).append((row(draft), future))
        if key not in self._flushing:
            self._flushing.add(key)
            loop.create_task(self._flush(key))
        await future

    async def _flush(self, key: int) -> None:
        try:
            while self._queues.get(key):
                batch = self._queues.pop(key)
                try:
                    await anyio.to_thread.run_sync(self._insert, [r for r, _ in batch])
                except Exception as exc:  # every waiter of this batch learns it failed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing.discard(key)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # On the driver: SQLAlchemy's Core executemany cost about 43 us of CPU per row here,
        # about as much as the rest of a GET's evidence. A batch that is one statement commits
        # by itself on PostgreSQL (one round trip); a larger one is one transaction, so that
        # its requests learn together whether their entries are durable.
        database = self.database
        with (database.driver_statement() if len(rows) <= MULTI_VALUES
              else database.driver_transaction()) as cursor:
            driver_insert(database.engine.dialect, cursor, EvidenceEntry.__table__, rows)


class CallRecorder:
    """The edge middleware's hook (app.state.call_recorder)."""

    def __init__(self, database: Database) -> None:
        self.writer = GroupCommitWriter(database)

    @staticmethod
    def wants(record: CallRecord) -> bool:
        # A 429 to a caller without an authenticated principal (a throttled guesser or scanner,
        # an address over a public endpoint's limit) is not kept: throttling bounds the work, and
        # this bounds the log, which would otherwise grow by an entry per refused call for as
        # long as anyone cares to send them. Its calls up to the limit are kept, and the access
        # log and the metrics still count every 429.
        if record.status == 429 and record.client_id is None:
            return False
        return record.path.startswith(RECORDED_PREFIXES)

    @staticmethod
    def call_entry(record: CallRecord) -> Draft:
        return call_draft(record)

    @staticmethod
    def add(session: Session, draft: Draft) -> None:
        """The call's entry, in one statement with its events' entries (`record_event`)."""
        rows = session.info.pop(_PENDING, [])
        rows.append(row(draft))
        session_insert_later(session, EvidenceEntry.__table__, rows)  # with the COMMIT

    async def record_detached(self, draft: Draft) -> None:
        await self.writer.write(draft)


# Entries of a transaction's events not yet written: they are written with the call's entry
# (one statement for all, `CallRecorder.add`) or, at the latest, just before the transaction
# commits (`_write_pending`).
_PENDING = "evidence_rows"


def record_event(session: Session, event: Event) -> None:
    """Events sink: every business event is an entry in the same transaction."""
    draft = event_draft(event_id=event.id, tenant_id=event.tenant_id, type=event.type,
                        resource_type=event.resource_type, resource_id=event.resource_id,
                        actor=event.actor, state_sha256=event.state_digest, at=event.created_at)
    if session.in_nested_transaction():
        # Within a savepoint the entry goes at once, so that rolling the savepoint back takes
        # it with the event.
        session_insert(session, EvidenceEntry.__table__, [row(draft)])
    else:
        session.info.setdefault(_PENDING, []).append(row(draft))


@orm_events.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    rows = session.info.pop(_PENDING, None)
    if rows:
        session_insert_later(session, EvidenceEntry.__table__, rows)  # with the COMMIT


@orm_events.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: Any) -> None:
    # A transaction that ended without its commit writing them (a rollback) takes its events
    # with it, and so their entries.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


add_sink(record_event)
