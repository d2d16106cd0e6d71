"""Export the log, and verify an export (offline) or a live log (online).

Checks every checkpoint signature and `prev` link, recomputes the root at every checkpoint
from the entries (which is what makes successive checkpoints consistent), recomputes every
leaf hash from the entry's canonical bytes, and compares each leaf with the Merkle leaf stored
at integration. The first problem is reported with its log index.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.evidence import merkle, tiles
from gateway.evidence.models import EvidenceCheckpoint, EvidenceEntry, EvidenceTile
from gateway.evidence.note import NoteError, note_digest, parse_checkpoint, verify_note

ENTRIES = "entries.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
KEY = "verifier-key.txt"


@dataclass
class Problem:
    index: int | None
    message: str

    def __str__(self) -> str:
        where = f"index {self.index}" if self.index is not None else "log"
        return f"{where}: {self.message}"


@dataclass
class Report:
    entries: int
    checkpoints: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def export(session: Session, out: Path, verifier_key: str, chunk: int = 20_000) -> tuple[int, int]:
    """Write entries (with the leaf stored at integration) and checkpoints to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / KEY).write_text(verifier_key + "\n")
    n_cp = 0
    with (out / CHECKPOINTS).open("w") as f:
        for cp in session.scalars(select(EvidenceCheckpoint).order_by(EvidenceCheckpoint.tree_size)):
            f.write(json.dumps({"tree_size": cp.tree_size, "note": cp.note}) + "\n")
            n_cp += 1
    n = 0
    height = tiles.HEIGHT
    tile_table = EvidenceTile.__table__
    with (out / ENTRIES).open("w") as f:
        last = -1
        while True:
            rows = session.execute(
                select(EvidenceEntry.idx, EvidenceEntry.id, EvidenceEntry.canonical,
                       EvidenceEntry.leaf_hash)
                .where(EvidenceEntry.idx > last).order_by(EvidenceEntry.idx).limit(chunk)).all()
            if not rows:
                break
            # The leaves as integrated, from the level-0 tiles covering this chunk.
            first_tile, last_tile = rows[0][0] >> height, rows[-1][0] >> height
            leaf_tiles = dict(session.execute(
                select(tile_table.c.index, tile_table.c.hashes)
                .where(tile_table.c.level == 0, tile_table.c.index >= first_tile,
                       tile_table.c.index <= last_tile)).all())
            for idx, entry_id, canonical, leaf in rows:
                content = leaf_tiles.get(idx >> height, b"")
                found = tiles.leaf_hashes(content, idx & ((1 << height) - 1), 1)
                node = found[0] if found else None
                f.write(json.dumps({
                    "index": idx, "id": entry_id,
                    "canonical": base64.b64encode(canonical).decode(),
                    "leaf_hash": base64.b64encode(leaf).decode(),
                    "merkle_leaf": base64.b64encode(node).decode() if node else None,
                }, separators=(",", ":")) + "\n")
                n += 1
            last = rows[-1][0]
    return n, n_cp


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open() as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def verify_checkpoints(checkpoints: list[str], verifier_key: str) -> tuple[list[tuple[int, bytes]], Problem | None]:
    """Signatures, the `prev` chain and increasing sizes; returns (size, root) of each."""
    sizes: list[tuple[int, bytes]] = []
    previous: str | None = None
    for note in checkpoints:
        try:
            cp = parse_checkpoint(verify_note(note, verifier_key))
        except NoteError as exc:
            return sizes, Problem(None, f"checkpoint #{len(sizes) + 1} is not valid: {exc}")
        if previous is not None and cp.prev != note_digest(previous):
            return sizes, Problem(None, f"checkpoint at size {cp.size} does not chain to the "
                                        "previous one (prev)")
        if sizes and cp.size <= sizes[-1][0]:
            return sizes, Problem(None, f"checkpoint sizes are not increasing at {cp.size}")
        sizes.append((cp.size, cp.root))
        previous = note
    return sizes, None


def verify_stream(entries: Iterator[dict[str, Any]], checkpoints: list[str], verifier_key: str,
                  progress: Callable[[int], None] | None = None) -> Report:
    """Verify entries (in index order) against signed checkpoints (in tree-size order)."""
    sizes, problem = verify_checkpoints(checkpoints, verifier_key)
    if problem is not None:
        return Report(0, len(sizes), problem)
    # Leaves are appended in one batch per checkpoint (the tree's root is only needed there).
    builder = merkle.TreeBuilder()
    target = 0
    expected = 0
    pending: list[bytes] = []

    def flush_to_checkpoints() -> Problem | None:
        nonlocal target
        if pending:
            builder.append(pending, keep_nodes=False)
            pending.clear()
        while target < len(sizes) and sizes[target][0] == builder.tree_size:
            if builder.root != sizes[target][1]:
                start = sizes[target - 1][0] if target else 0
                return Problem(start, f"entries [{start}, {sizes[target][0]}) do not match the "
                                      "signed root")
            target += 1
        return None

    for item in entries:
        index = item["index"]
        if index != expected:
            return Report(expected, len(sizes), Problem(
                expected, f"entry {expected} is missing" if index > expected else "entry out of order"))
        leaf_b64 = item["leaf_hash"]
        leaf = merkle.leaf_hash(base64.b64decode(item["canonical"]))
        if base64.b64encode(leaf).decode() != leaf_b64:
            return Report(expected, len(sizes), Problem(index, "entry content does not match its leaf hash"))
        stored = item.get("merkle_leaf")
        if stored is not None and stored != leaf_b64:
            return Report(expected, len(sizes), Problem(index, "entry is not the one integrated at this index"))
        pending.append(leaf)
        expected += 1
        if target < len(sizes) and expected == sizes[target][0]:
            problem = flush_to_checkpoints()
            if problem is not None:
                return Report(expected, len(sizes), problem)
        if progress is not None and expected % 10_000 == 0:
            progress(expected)
    problem = flush_to_checkpoints()
    if problem is not None:
        return Report(expected, len(sizes), problem)
    if target < len(sizes):
        return Report(expected, len(sizes), Problem(expected, f"entry {expected} is missing "
                                                    f"(checkpoint covers {sizes[target][0]})"))
    if progress is not None:
        progress(expected)
    return Report(expected, len(sizes), None)


def verify_directory(path: Path, verifier_key: str | None = None,
                     progress: Callable[[int], None] | None = None) -> Report:
    key = verifier_key or (path / KEY).read_text().strip()
    notes = [c["note"] for c in _read_jsonl(path / CHECKPOINTS)]
    return verify_stream(_read_jsonl(path / ENTRIES), notes, key, progress)


def verify_url(base: str, verifier_key: str | None = None,
               progress: Callable[[int], None] | None = None) -> Report:
    """Verify a live log through its public API (leaf hashes, checkpoints, public key)."""
    import httpx

    with httpx.Client(base_url=base.rstrip("/"), timeout=30) as http:
        key = verifier_key or http.get("/v1/evidence/public-key").text.strip()
        notes: list[str] = []
        after = 0
        while True:
            page = http.get("/v1/evidence/checkpoints", params={"after": after}).json()
            notes += page["data"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        total = parse_checkpoint(notes[-1].split("\n\n")[0] + "\n").size if notes else 0

        def leaves() -> Iterator[dict[str, Any]]:
            start = 0
            while start < total:
                page = http.get("/v1/evidence/leaves", params={"start": start, "count": 10000}).json()
                if not page["leaf_hashes"]:
                    return
                for i, h in enumerate(page["leaf_hashes"]):
                    yield {"index": start + i, "leaf_hash": h, "leaf_only": True}
                start += len(page["leaf_hashes"])

        return _verify_leaves(leaves(), notes, key, progress)


def _verify_leaves(leaves: Iterator[dict[str, Any]], notes: list[str], key: str,
                   progress: Callable[[int], None] | None) -> Report:
    """Online variant: leaf hashes only (entry contents are private to partners)."""
    sizes, problem = verify_checkpoints(notes, key)
    if problem is not None:
        return Report(0, len(sizes), problem)
    roots = dict(sizes)
    builder = merkle.TreeBuilder()
    count = 0
    for item in leaves:
        builder.append([base64.b64decode(item["leaf_hash"])])
        count += 1
        root = roots.get(builder.tree_size)
        if root is not None and root != builder.root:
            return Report(count, len(notes), Problem(builder.tree_size - 1,
                                                     "leaves do not match the signed root"))
        if progress is not None and count % 10_000 == 0:
            progress(count)
    if roots and count < max(roots):
        return Report(count, len(notes), Problem(count, "leaves missing"))
    return Report(count, len(notes), None)
