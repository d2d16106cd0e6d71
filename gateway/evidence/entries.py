"""What goes into the evidence log, in its canonical byte form.

An entry is a JSON object serialized with sorted keys, no insignificant whitespace, UTF-8
(not ASCII-escaped), integers as integers; its leaf hash is SHA-256(0x00 || bytes) per
RFC 9162. Entries carry digests of bodies and of (already masked) resource states, never
personal data itself, so erasing a person's data never breaks a proof.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.clock import to_rfc3339
from gateway.context import CallRecord
from gateway.evidence.merkle import leaf_hash
from gateway.ids import new_id

VERSION = 1


def canonical_bytes(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


@dataclass
class Draft:
    """An entry before it is stored: its id and leaf hash are final already."""

    id: str
    kind: str
    fields: dict[str, Any]
    canonical: bytes
    leaf: bytes
    created_at: datetime
    tenant_id: str | None = None
    partner_id: str | None = None
    resource_id: str | None = None
    request_id: str | None = None

    @property
    def receipt(self) -> str:
        """The `Evidence-Entry` header value."""
        return f"{self.id}; leaf={base64.b64encode(self.leaf).decode()}"


def _draft(kind: str, fields: dict[str, Any], at: datetime, **meta: Any) -> Draft:
    entry_id = new_id("ev")
    body = {"v": VERSION, "kind": kind, "id": entry_id, "time": to_rfc3339(at), **fields}
    data = canonical_bytes(body)
    return Draft(id=entry_id, kind=kind, fields=body, canonical=data, leaf=leaf_hash(data),
                 created_at=at, **meta)


def call_draft(record: CallRecord) -> Draft:
    return _draft("call", {
        "request_id": record.request_id, "client_id": record.client_id,
        "partner_id": record.partner_id, "tenant_id": record.tenant_id,
        "environment": record.environment, "method": record.method, "route": record.route,
        "status": record.status, "request_sha256": record.request_sha256,
        "response_sha256": record.response_sha256,
    }, record.started_at, tenant_id=record.tenant_id, partner_id=record.partner_id,
        request_id=record.request_id)


def event_draft(*, event_id: str, tenant_id: str, type: str, resource_type: str,
                resource_id: str, actor: str, state_sha256: str, at: datetime) -> Draft:
    return _draft("event", {
        "event_id": event_id, "tenant_id": tenant_id, "type": type,
        "resource_type": resource_type, "resource_id": resource_id, "actor": actor,
        "state_sha256": state_sha256,
    }, at, tenant_id=tenant_id, resource_id=resource_id)
