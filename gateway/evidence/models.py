"""Evidence log tables: entries, Merkle tree tiles, signed checkpoints, integrator state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


def _where(condition: str) -> dict[str, object]:
    """A partial index on both databases."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


class EvidenceEntry(Base):
    """One entry. Appending writes the row once; integration sets `idx`.

    The indexes are partial so that each row pays only for the lookups it can answer: the
    log index once integrated, the waiting queue until then, resource and request ids where
    the entry has them (events have a resource, calls a request).
    """

    __tablename__ = "evidence_entries"
    __table_args__ = (
        Index("uq_evidence_entries_idx", "idx", unique=True, **_where("idx IS NOT NULL")),
        Index("ix_evidence_entries_waiting", "seq", **_where("idx IS NULL")),
        Index("ix_evidence_entries_resource_id", "resource_id", "tenant_id",
              **_where("resource_id IS NOT NULL")),
        Index("ix_evidence_entries_request_id", "request_id", **_where("request_id IS NOT NULL")),
    )

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    partner_id: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(60))
    request_id: Mapped[str | None] = mapped_column(String(128))
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    idx: Mapped[int | None]
    created_at: Mapped[datetime]


class EvidenceTile(Base):
    """A slab of the Merkle tree's perfect-subtree hashes (layout: `gateway.evidence.tiles`).

    Tile (level, index) holds the nodes at tree levels 8*level .. 8*level + 7 under the node
    (8*(level + 1), index), 32 bytes each in post-order; only the right-edge tile of each level
    is ever extended, and only by appending."""

    __tablename__ = "evidence_tiles"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class EvidenceCheckpoint(Base):
    __tablename__ = "evidence_checkpoints"

    tree_size: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class EvidenceState(Base):
    """One row: the integrated tree size. Locking it is the integrator's mutual exclusion."""

    __tablename__ = "evidence_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tree_size: Mapped[int]
    last_note: Mapped[str | None] = mapped_column(Text)
