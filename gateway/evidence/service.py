"""The evidence log: integration into the Merkle tree, signed checkpoints, proofs, bundles.

Exactly one integrator runs at a time, in any number of processes: it locks the single
`evidence_state` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already
serializes writers). It numbers the waiting entries in arrival order with no gaps, stores the
perfect-subtree hashes they complete in tiles (`gateway.evidence.tiles`: a proof reads
O(log n / 8) rows and never recomputes the tree), and signs a checkpoint whose `prev` line
chains it to the previous one.

Integration is set-based, because it is the hot loop: one read of the waiting queue, one
UPDATE per run of consecutive sequence numbers (`idx = seq + offset`, usually a single
statement per batch), one write per changed tile (a batch of 5,000 entries changes about 20).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Select, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock
from gateway.db import Database
from gateway.errors import NotFound, ValidationFailed
from gateway.evidence import merkle, tiles
from gateway.evidence.models import EvidenceCheckpoint, EvidenceEntry, EvidenceState, EvidenceTile
from gateway.evidence.note import format_checkpoint, prev_extension, sign_note, verifier_key

BATCH = 20_000


@functools.cache
def _tiles_query(levels: int) -> Select[Any]:
    """Tiles at `levels` distinct tile levels: `level = ? AND index IN (...)` per level, so that
    both databases use the primary key (a row-value IN is a full scan on SQLite). One statement
    object per shape, so that a proof pays no statement construction."""
    table = EvidenceTile.__table__
    return select(table.c.level, table.c.index, table.c.hashes).where(or_(*[
        and_(table.c.level == bindparam(f"level_{slot}"),
             table.c.index.in_(bindparam(f"indexes_{slot}", expanding=True)))
        for slot in range(levels)]))


class DatabaseTiles(merkle.NodeReader):
    """Stored perfect-subtree hashes, read from their tiles in one query per proof."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def read_tiles(self, wanted: list[tiles.TileKey]) -> dict[tiles.TileKey, bytes]:
        by_level: dict[int, list[int]] = {}
        for level, index in wanted:
            by_level.setdefault(level, []).append(index)
        if not by_level:
            return {}
        params: dict[str, Any] = {}
        for slot, (level, indexes) in enumerate(by_level.items()):
            params[f"level_{slot}"] = level
            params[f"indexes_{slot}"] = indexes
        rows = self.session.connection().execute(_tiles_query(len(by_level)), params)
        return {(level, index): bytes(value) for level, index, value in rows}

    def get_nodes(self, keys: list[merkle.Key]) -> dict[merkle.Key, bytes]:
        return tiles.nodes_from_tiles(keys, self.read_tiles(tiles.tiles_of(keys)))


@dataclass
class Log:
    """The log's identity: origin (also the signing key name) and Ed25519 key."""

    origin: str
    key: Ed25519PrivateKey

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.key.public_key())


def _state(session: Session, lock: bool) -> EvidenceState:
    stmt = select(EvidenceState).where(EvidenceState.id == 1)
    if lock:
        stmt = stmt.with_for_update()
    state = session.scalars(stmt).first()
    if state is None:
        try:  # the first integrator creates the row; a concurrent one waits, then finds it
            with session.begin_nested():
                session.add(EvidenceState(id=1, tree_size=0, last_note=None))
        except IntegrityError:
            pass
        state = session.scalars(stmt).one()
    return state


def integrate(database: Database, log: Log, batch: int = BATCH) -> int:
    """Integrate waiting entries into the tree and sign a checkpoint; returns entries added."""
    total = 0
    while True:
        with database.transaction() as session:
            added = _integrate_batch(session, log, batch)
        total += added
        if added < batch:
            return total


def _integrate_batch(session: Session, log: Log, batch: int) -> int:
    state = _state(session, lock=True)
    conn = session.connection()
    entries, tile_table = EvidenceEntry.__table__, EvidenceTile.__table__
    waiting = conn.execute(
        select(entries.c.seq, entries.c.leaf_hash)
        .where(entries.c.idx.is_(None)).order_by(entries.c.seq).limit(batch)).all()
    if not waiting:
        return 0
    size = state.tree_size
    edge = DatabaseTiles(session).read_tiles(list(tiles.right_edge(size)))
    result = tiles.append_leaves(size, edge, [bytes(leaf) for _, leaf in waiting])

    # Number the entries: idx = seq + offset over each run of consecutive sequence numbers.
    # A run covers every seq in its range, so no other row can match (seq is the key).
    runs: list[dict[str, int]] = []
    for position, (seq, _) in enumerate(waiting):
        if runs and seq == runs[-1]["b_hi"] + 1:
            runs[-1]["b_hi"] = seq
        else:
            runs.append({"b_offset": size + position - seq, "b_lo": seq, "b_hi": seq})
    numbered = conn.execute(
        update(entries).where(entries.c.seq >= bindparam("b_lo"), entries.c.seq <= bindparam("b_hi"),
                              entries.c.idx.is_(None))
        .values(idx=entries.c.seq + bindparam("b_offset")), runs if len(runs) > 1 else runs[0])
    if numbered.rowcount not in (-1, len(waiting)):
        raise RuntimeError(f"numbered {numbered.rowcount} entries, expected {len(waiting)}")

    new = [{"level": t[0], "index": t[1], "hashes": v} for t, v in result.tiles.items()
           if t not in edge]
    grown = [{"b_level": t[0], "b_index": t[1], "hashes": v} for t, v in result.tiles.items()
             if t in edge]
    if new:
        conn.execute(insert(tile_table), new)
    if grown:
        conn.execute(update(tile_table).where(tile_table.c.level == bindparam("b_level"),
                                              tile_table.c.index == bindparam("b_index")), grown)

    extensions = [prev_extension(state.last_note)] if state.last_note else []
    text = format_checkpoint(log.origin, result.tree_size, result.root, extensions)
    note = sign_note(text, log.origin, log.key)
    session.add(EvidenceCheckpoint(tree_size=result.tree_size, root_hash=result.root, note=note,
                                   created_at=clock.utcnow()))
    state.tree_size = result.tree_size
    state.last_note = note
    session.flush()
    return len(waiting)


def latest_checkpoint(session: Session) -> EvidenceCheckpoint | None:
    return session.scalars(select(EvidenceCheckpoint)
                           .order_by(EvidenceCheckpoint.tree_size.desc()).limit(1)).first()


def checkpoint_at(session: Session, tree_size: int) -> EvidenceCheckpoint:
    cp = session.get(EvidenceCheckpoint, tree_size)
    if cp is None:
        raise NotFound(f"No checkpoint was signed at tree size {tree_size}.",
                       code="checkpoint_not_found")
    return cp


def _integrated_size(session: Session) -> int:
    state = session.get(EvidenceState, 1)
    return state.tree_size if state is not None else 0


def inclusion(session: Session, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` leaves."""
    if tree_size < 1 or tree_size > _integrated_size(session):
        raise ValidationFailed("tree_size must be between 1 and the integrated size.",
                               code="invalid_tree_size")
    if not 0 <= index < tree_size:
        raise ValidationFailed("index must be below tree_size.", code="invalid_index")
    return merkle.inclusion_proof(index, tree_size, DatabaseTiles(session))


def consistency(session: Session, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof between two tree sizes."""
    if not 1 <= first <= second <= _integrated_size(session):
        raise ValidationFailed("Need 1 <= first <= second <= the integrated size.",
                               code="invalid_tree_size")
    return merkle.consistency_proof(first, second, DatabaseTiles(session))


# Log indexes and tree sizes are 64-bit integers in the database: a larger number in a request
# is refused (or found nowhere) rather than sent to the database, which cannot take it.
MAX_LOG_INDEX = 2**62


def find_entry(session: Session, ref: str) -> EvidenceEntry:
    """An entry by its id (`ev_…`, from a receipt) or by its log index."""
    stmt = select(EvidenceEntry)
    if ref.isascii() and ref.isdigit():
        index = int(ref)
        if index > MAX_LOG_INDEX:
            raise NotFound("No such evidence entry.", code="evidence_entry_not_found")
        stmt = stmt.where(EvidenceEntry.idx == index)
    else:
        stmt = stmt.where(EvidenceEntry.id == ref)
    entry = session.scalars(stmt).first()
    if entry is None:
        raise NotFound("No such evidence entry.", code="evidence_entry_not_found")
    return entry


def entries_for_request(session: Session, request_id: str) -> list[EvidenceEntry]:
    return list(session.scalars(select(EvidenceEntry).where(EvidenceEntry.request_id == request_id)
                                .order_by(EvidenceEntry.seq)))


# Products may widen a bundle from one resource to related ones (a certificate's lineage).
BundleResolver = Callable[[Session, str, str], list[str]]
_resolvers: list[BundleResolver] = []


def register_bundle_resolver(fn: BundleResolver) -> None:
    if fn not in _resolvers:
        _resolvers.append(fn)


def bundle(session: Session, tenant_id: str, resource_id: str, log: Log) -> dict[str, Any]:
    """Every entry about a business object, with inclusion proofs against one checkpoint."""
    resources = {resource_id}
    for resolve in _resolvers:
        resources.update(resolve(session, tenant_id, resource_id))
    entries = list(session.scalars(
        select(EvidenceEntry).where(EvidenceEntry.tenant_id == tenant_id,
                                    or_(*[EvidenceEntry.resource_id == r for r in resources]))
        .order_by(EvidenceEntry.seq)))
    if not entries:
        raise NotFound("No evidence about this resource.", code="evidence_not_found")
    if any(e.idx is None for e in entries):
        raise ValidationFailed("Some entries are not integrated yet; retry in a second.",
                               code="evidence_not_integrated", status=409)
    cp = latest_checkpoint(session)
    assert cp is not None
    reader = DatabaseTiles(session)
    return {
        "format": "quanlian-evidence-bundle/1",
        "resource_id": resource_id,
        "resources": sorted(resources),
        "verifier_key": log.verifier_key,
        "checkpoint": cp.note,
        "tree_size": cp.tree_size,
        "entries": [{
            "id": e.id, "index": e.idx,
            "canonical": base64.b64encode(e.canonical).decode(),
            "leaf_hash": base64.b64encode(e.leaf_hash).decode(),
            "inclusion_proof": [base64.b64encode(h).decode()
                                for h in merkle.inclusion_proof(e.idx, cp.tree_size, reader)],
        } for e in entries if e.idx is not None and e.idx < cp.tree_size],
    }
