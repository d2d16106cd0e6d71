"""Business events: written in the business transaction (a transactional outbox).

`publish` is the one way a product announces that something happened. The row it writes
is what webhook delivery reads later, and every registered sink (the evidence log) records
the event in the same transaction, so no change exists without its event and evidence.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway import clock as clock_module
from gateway.bulk import session_store
from gateway.db import Base
from gateway.event_types import check_event_type
from gateway.ids import new_id


class Event(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    type: Mapped[str] = mapped_column(String(80), index=True)
    resource_type: Mapped[str] = mapped_column(String(60))
    resource_id: Mapped[str] = mapped_column(String(60), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    state_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(index=True)
    dispatched: Mapped[bool] = mapped_column(default=False, index=True)


EventSink = Callable[[Session, Event], None]
_sinks: list[EventSink] = []


def add_sink(sink: EventSink) -> None:
    """Register a callable run for every event inside its transaction (idempotent)."""
    if sink not in _sinks:
        _sinks.append(sink)


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def publish(session: Session, *, tenant_id: str, type: str, resource_type: str,
            resource_id: str, data: dict[str, Any], actor: str,
            at: datetime | None = None) -> Event:
    """Record that `type` happened to a resource; delivered later as a signed webhook.

    `data` is the resource's public representation (already masked: no personal data in
    clear), and its digest goes into the evidence log. `type` is one of
    `gateway.event_types` (an uncatalogued one is logged, or refused in strict mode).
    """
    check_event_type(type)
    event = Event(
        id=new_id("evt"), tenant_id=tenant_id, type=type, resource_type=resource_type,
        resource_id=resource_id, actor=actor, data=data,
        state_digest=hashlib.sha256(canonical_json(data)).hexdigest(),
        created_at=at or clock_module.utcnow(), dispatched=False,
    )
    # Written on the driver (the row's one INSERT, not a flush of the unit of work), with the
    # transaction's next statement (`gateway.deferred`); it refers to nothing pending, so
    # nothing need be flushed first.
    session_store(session, [event], flush=False, later=True)
    for sink in _sinks:
        sink(session, event)
    return event
