"""What the evidence log proves about e-government records: the entry of a payment event with
its inclusion proof against a signed checkpoint (for receipts), bundles about a whole escrow
scheme, and the offline check a court runs on such a bundle.

The log itself is gateway.evidence; this module only reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.events import Event, canonical_json
from gateway.evidence import merkle
from gateway.evidence import service as evidence
from gateway.evidence.models import EvidenceEntry
from gateway.evidence.note import NoteError, parse_checkpoint, verify_note


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def event_entry(session: Session, tenant_id: str, resource_id: str, event_id: str) -> EvidenceEntry | None:
    """The log entry recording event `event_id` about `resource_id`."""
    rows = session.scalars(select(EvidenceEntry).where(
        EvidenceEntry.tenant_id == tenant_id, EvidenceEntry.resource_id == resource_id,
        EvidenceEntry.kind == "event").order_by(EvidenceEntry.seq))
    for entry in rows:
        if json.loads(entry.canonical).get("event_id") == event_id:
            return entry
    return None


def payment_evidence(session: Session, log: evidence.Log | None, tenant_id: str, resource_id: str,
                     event_id: str | None) -> dict[str, Any]:
    """The evidence block of a receipt: the payment event's entry, its leaf hash, its index,
    the latest signed checkpoint and the inclusion proof that ties them together.

    Fields stay null while the entry is not integrated yet (the caller integrates first)."""
    block: dict[str, Any] = {"entry_id": None, "leaf_hash": None, "index": None, "tree_size": None,
                             "checkpoint": None, "inclusion_proof": [], "verifier_key": None,
                             "event_id": event_id, "state_sha256": None}
    if log is not None:
        block["verifier_key"] = log.verifier_key
    if event_id is None:
        return block
    event = session.get(Event, event_id)
    if event is not None:
        block["state_sha256"] = event.state_digest
    entry = event_entry(session, tenant_id, resource_id, event_id)
    if entry is None:
        return block
    block["entry_id"] = entry.id
    block["leaf_hash"] = _b64(entry.leaf_hash)
    block["index"] = entry.idx
    checkpoint = evidence.latest_checkpoint(session)
    if entry.idx is not None and checkpoint is not None and entry.idx < checkpoint.tree_size:
        block["tree_size"] = checkpoint.tree_size
        block["checkpoint"] = checkpoint.note
        block["inclusion_proof"] = [_b64(h) for h in evidence.inclusion(session, entry.idx,
                                                                        checkpoint.tree_size)]
    return block


def scheme_bundle(session: Session, tenant_id: str, scheme_id: str, log: evidence.Log) -> dict[str, Any]:
    """The evidence bundle of an escrow scheme (every deposit, instruction, approval and release,
    via the bundle resolver registered in products.egov.escrow), plus the events' data so that
    a court can also check what each entry's `state_sha256` commits to."""
    bundle = evidence.bundle(session, tenant_id, scheme_id, log)
    event_ids = []
    for item in bundle["entries"]:
        fields = json.loads(base64.b64decode(item["canonical"]))
        if fields.get("kind") == "event":
            event_ids.append(fields["event_id"])
    events = {e.id: e for e in session.scalars(select(Event).where(Event.id.in_(event_ids)))} \
        if event_ids else {}
    bundle["format"] = "quanlian-escrow-evidence-bundle/1"
    bundle["events"] = {eid: {"type": events[eid].type, "resource_id": events[eid].resource_id,
                              "data": events[eid].data} for eid in event_ids if eid in events}
    return bundle


class BundleInvalid(ValueError):
    """An escrow evidence bundle that does not verify."""


def verify_bundle(bundle: dict[str, Any], verifier_key: str) -> list[dict[str, Any]]:
    """Verify an escrow bundle offline against the log's verifier key (obtained independently).

    Checks the checkpoint's signature, every entry's leaf hash and inclusion proof against the
    signed root, and that each event's data hashes to the `state_sha256` its entry commits to.
    Returns the entries' fields; raises `BundleInvalid` at the first problem. Needs nothing but
    this module's imports (no database, no network).
    """
    try:
        checkpoint = parse_checkpoint(verify_note(bundle["checkpoint"], verifier_key))
    except (NoteError, KeyError) as exc:
        raise BundleInvalid(f"the checkpoint does not verify: {exc}") from None
    verified = []
    events = bundle.get("events", {})
    for item in bundle["entries"]:
        canonical = base64.b64decode(item["canonical"])
        leaf = merkle.leaf_hash(canonical)
        if _b64(leaf) != item["leaf_hash"]:
            raise BundleInvalid(f"entry {item['id']}: content does not match its leaf hash")
        proof = [base64.b64decode(h) for h in item["inclusion_proof"]]
        if not merkle.verify_inclusion(leaf, item["index"], checkpoint.size, proof, checkpoint.root):
            raise BundleInvalid(f"entry {item['id']}: not included under the signed root")
        fields = json.loads(canonical)
        if fields.get("kind") == "event":
            data = events.get(fields["event_id"])
            if data is None:
                raise BundleInvalid(f"entry {item['id']}: the event's data is missing")
            digest = hashlib.sha256(canonical_json(data["data"])).hexdigest()
            if digest != fields["state_sha256"]:
                raise BundleInvalid(f"entry {item['id']}: the event's data does not match its digest")
        verified.append(fields)
    return verified
