"""Evidence log tables: entries, stored Merkle nodes, signed checkpoints, integrator state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base

# SQLite only auto-increments an INTEGER PRIMARY KEY.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class EvidenceEntry(Base):
    __tablename__ = "evidence_entries"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    partner_id: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(60), index=True)
    request_id: Mapped[str | None] = mapped_column(String(128), index=True)
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    idx: Mapped[int | None] = mapped_column(unique=True)
    created_at: Mapped[datetime]


class EvidenceNode(Base):
    """Hash of the perfect subtree covering leaves [index * 2^level, (index + 1) * 2^level)."""

    __tablename__ = "evidence_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


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
