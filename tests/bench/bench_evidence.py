"""Evidence log: sustained appends through integration (append, integrate, checkpoint) beside a
raw batched INSERT of the same rows; proof latency at N entries; offline verification of an
export. Run: `python -m tests.bench.bench_evidence` (BENCH_EVIDENCE_N, default 1,000,000;
PostgreSQL when QUANLIAN_BENCH_DATABASE_URL is set, in a fresh database created beside it).

The baseline inserts the very row dicts the log appends (every column, the same bytes), with the
same statement and batch size, into a bare table keyed by entry id; a second, narrower baseline
(id, canonical bytes, leaf hash only) is printed too. Chunks of the baselines and of the log
alternate, so that load from other processes on the machine falls on all three alike."""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, insert

from gateway.context import CallRecord
from gateway.db import Database
from gateway.evidence import service, verifier
from gateway.evidence.entries import call_draft
from gateway.evidence.models import EvidenceEntry
from gateway.evidence.recorder import row
from tests.bench.load import report
from tests.tools.databases import fresh_database

N = int(os.environ.get("BENCH_EVIDENCE_N", "1000000"))
CHUNK = 5000


def drafts(n: int, start: int = 0):
    now = datetime.now(UTC)
    for i in range(start, start + n):
        yield row(call_draft(CallRecord(
            request_id=f"req_{i}", method="GET", path="/v1/me", route="/v1/me", status=200,
            request_sha256="0" * 64, response_sha256=f"{i:064x}", started_at=now, latency_ms=1.0,
            client_id="cli_bench", partner_id="ptn_bench", tenant_id=None, environment="sandbox")))


def raw_tables(database: Database) -> tuple[Table, Table]:
    """Bare tables: every column of the log's rows (same types) keyed by id, and a narrow one."""
    md = MetaData()
    same = Table("raw_entries", md, *[
        Column(c.name, c.type, primary_key=c.name == "id")
        for c in EvidenceEntry.__table__.columns if c.name != "seq"])
    narrow = Table("raw_entries_narrow", md, Column("id", String(40), primary_key=True),
                   Column("canonical", LargeBinary), Column("leaf_hash", LargeBinary))
    md.create_all(database.engine)
    return same, narrow


def timed_insert(database: Database, table: Table, rows: list[dict]) -> float:
    start = time.perf_counter()
    with database.transaction() as s:
        s.connection().execute(insert(table), rows)
    return time.perf_counter() - start


def compare(database: Database, log: service.Log, n: int) -> tuple[float, float, float]:
    """Rows per second: raw INSERT of the same rows, raw narrow INSERT, append + integrate."""
    same, narrow = raw_tables(database)
    rows = list(drafts(n))
    spent = [0.0, 0.0, 0.0]
    for i in range(0, n, CHUNK):
        chunk = rows[i:i + CHUNK]
        spent[0] += timed_insert(database, same, chunk)
        spent[1] += timed_insert(database, narrow, [
            {"id": r["id"], "canonical": r["canonical"], "leaf_hash": r["leaf_hash"]} for r in chunk])
        start = time.perf_counter()
        with database.transaction() as s:
            s.connection().execute(insert(EvidenceEntry.__table__), chunk)
        service.integrate(database, log)
        spent[2] += time.perf_counter() - start
    return n / spent[0], n / spent[1], n / spent[2]


def main() -> None:
    base_url = os.environ.get("QUANLIAN_BENCH_DATABASE_URL")
    backend = "PostgreSQL" if base_url else "SQLite"
    log = service.Log("quanlian.local/evidence", Ed25519PrivateKey.generate())
    lines = []
    with fresh_database(base_url) as database:
        sample = min(N, 100_000)
        raw_rate, narrow_rate, rate = compare(database, log, sample)
        lines.append(f"raw batched INSERT, same rows       {raw_rate:10.0f} rows/s")
        lines.append(f"raw batched INSERT, 3 columns       {narrow_rate:10.0f} rows/s  "
                     "(id, canonical, leaf_hash)")
        lines.append(f"append + integrate + checkpoint     {rate:10.0f} entries/s  "
                     f"ratio {rate / raw_rate:.2f} of the same-row insert "
                     f"({rate / narrow_rate:.2f} of the 3-column one)")
        done = done_before_fill = sample
        fill_start = time.perf_counter()
        while done < N:
            step = min(100_000, N - done)
            batch = list(drafts(step, done))
            for i in range(0, step, CHUNK):
                with database.transaction() as s:
                    s.connection().execute(insert(EvidenceEntry.__table__), batch[i:i + CHUNK])
            service.integrate(database, log)
            done += step
        lines.append(f"filled to {N} entries in {time.perf_counter() - fill_start:.1f} s "
                     f"({(N - done_before_fill) / (time.perf_counter() - fill_start):.0f} entries/s)")
        rng = random.Random(7)
        inc, con = [], []
        with database.transaction() as s:
            for _ in range(500):
                size = rng.randint(N // 2, N)
                index = rng.randrange(size)
                t = time.perf_counter()
                service.inclusion(s, index, size)
                inc.append(time.perf_counter() - t)
                first = rng.randint(1, size)
                t = time.perf_counter()
                service.consistency(s, first, size)
                con.append(time.perf_counter() - t)
        lines.append(f"inclusion proof at {N}: median {statistics.median(inc) * 1000:.3f} ms "
                     f"(p99 {sorted(inc)[int(0.99 * len(inc))] * 1000:.3f} ms)")
        lines.append(f"consistency proof at {N}: median {statistics.median(con) * 1000:.3f} ms "
                     f"(p99 {sorted(con)[int(0.99 * len(con))] * 1000:.3f} ms)")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            with database.transaction() as s:
                verifier.export(s, Path(tmp), log.verifier_key)
            export_s = time.perf_counter() - t
            t = time.perf_counter()
            result = verifier.verify_directory(Path(tmp), log.verifier_key)
            verify_s = time.perf_counter() - t
        assert result.ok, result.problem
        lines.append(f"export {N} entries: {export_s:.1f} s; offline verify: {verify_s:.1f} s "
                     f"({result.checkpoints} checkpoints)")
    report(f"evidence log on {backend}", lines)


if __name__ == "__main__":
    main()
