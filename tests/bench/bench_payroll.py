"""A 100,000-item payroll batch on PostgreSQL, beside a raw bulk INSERT of the same rows.

Measured in one run, on a fresh database:

1. raw insert: the same 100,000 item rows (values prepared beforehand: ids, ciphertexts,
   digests, masks) inserted into a copy of `payroll_items` (same columns and indexes) with one
   multi-row INSERT stream (SQLAlchemy Core executemany) and one commit. The baseline of the
   targets. For reference only, the same rows are also written with one COPY into another copy:
   the platform stores items (and ledger rows) with COPY on PostgreSQL, so that line shows how
   much of the accepting time is storing at all.
2. accept: the CSV file (GBK) uploaded over HTTP to a real uvicorn server process, streamed,
   decoded, every ID number, card number and amount checked, personal data encrypted, items
   stored: until the 201 with status `validated`. Target: within 2x the raw insert.
3. pay: confirm (hold the total) and let the worker pay every item through the core-banking
   port (one bulk hold capture per chunk of 500 items, still one journal entry with its own
   journal reference per item), until `completed`.
   Target: accept + pay within 5x the raw insert.
4. memory: the server process's peak resident set (VmHWM) while accepting. Target: < 300 MB.

Run: `python -m tests.bench.bench_payroll`. The database is a fresh one created next to
QUANLIAN_BENCH_DATABASE_URL (default: the local PostgreSQL). BENCH_PAYROLL_ITEMS (default
100000) sets the batch size; BENCH_PAYROLL_PAY=0 skips the (long) payment phase.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import MetaData, Table, func, select, text

from gateway.app import import_models
from gateway.clock import business_date, utcnow
from gateway.db import Base, Database
from gateway.identifiers import generate_bank_card, generate_resident_id, generate_uscc
from gateway.ids import new_id
from gateway.money import format_fen
from gateway.oauth.clients import create_client
from gateway.pii import encrypt, mask_account_number, mask_id_number, mask_name, pii_digest
from gateway.tenancy import create_partner, ensure_tenant
from products.accounts import service as accounts
from products.accounts.models import JournalEntry
from products.payroll import processing
from products.payroll.models import PayrollBatch, PayrollItem
from tests.bench.load import ROOT, env_for, report
from tests.tools.api import make_app
from tests.tools.databases import empty_database_url, stamp_head
from tests.tools.live import free_port

ITEMS = int(os.environ.get("BENCH_PAYROLL_ITEMS", "100000"))
PAY = os.environ.get("BENCH_PAYROLL_PAY", "1") != "0"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MEMORY_TARGET_MB = 300
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "军", "洋", "勇", "杰", "秀英", "建国", "志强"]


def _employees(n: int) -> list[tuple[str, str, str, int]]:
    rng = random.Random(2026)
    out = []
    for i in range(n):
        card = generate_bank_card(rng)
        while card.endswith(("0002", "0003")):  # no sandbox magic suffixes
            card = generate_bank_card(rng)
        out.append((rng.choice(_SURNAMES) + rng.choice(_GIVEN), generate_resident_id(rng), card,
                    3000_00 + i % 5000))
    return out


def _csv(account_id: str, value_date: str, people: list[tuple[str, str, str, int]]) -> bytes:
    buf = io.StringIO()
    total = sum(p[3] for p in people)
    buf.write(f"{account_id},wages,{value_date},{len(people)},{format_fen(total)},BENCH-{uuid.uuid4().hex[:8]}\r\n")
    for i, (name, ident, card, fen) in enumerate(people):
        buf.write(f"{name},{ident},{card},{format_fen(fen)},工资,E{i:06d}\r\n")
    return buf.getvalue().encode("gbk")


def _raw_insert(database: Database, tenant_id: str,
                people: list[tuple[str, str, str, int]]) -> tuple[float, float]:
    """The floor: the same rows, values prepared beforehand, into a copy of payroll_items, as
    an INSERT stream (the baseline) and, for reference, as one COPY into a second copy."""
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_raw_items (LIKE payroll_items INCLUDING ALL)"))
        conn.execute(text("CREATE TABLE bench_raw_copy (LIKE payroll_items INCLUDING ALL)"))
        conn.execute(text("INSERT INTO payroll_batches (id, tenant_id, created_by, payer_account_id,"
                          " purpose, value_date, external_reference, declared_count,"
                          " declared_total_fen, item_count, total_fen, source, charset, status,"
                          " held_fen, processed, succeeded, failed, returned, succeeded_fen,"
                          " failed_fen, returned_fen, error_count, warning_count, created_at,"
                          " updated_at) VALUES ('pbatch_raw', :t, 'bench', 'acct_raw', 'wages',"
                          " CURRENT_DATE, 'RAW', 1, 1, 0, 0, 'csv', 'gbk', 'rejected', 0, 0, 0, 0,"
                          " 0, 0, 0, 0, 0, 0, now(), now())"), {"t": tenant_id})
    raw = Table("bench_raw_items", MetaData(), autoload_with=database.engine)
    rows = []
    for i, (name, ident, card, fen) in enumerate(people, start=1):
        rows.append({
            "id": new_id("pitem"), "tenant_id": tenant_id, "batch_id": "pbatch_raw", "seq": i,
            "line": i + 1, "item_reference": f"E{i:06d}", "employee_name": encrypt(name),
            "name_masked": mask_name(name), "id_number": encrypt(ident),
            "id_digest": pii_digest(ident), "id_masked": mask_id_number(ident),
            "account_number": encrypt(card), "account_digest": pii_digest(card),
            "account_masked": mask_account_number(card), "amount_fen": fen, "memo": "工资",
            "worker_id": None, "precheck_code": None, "status": "pending"})
    started = time.perf_counter()
    with database.engine.begin() as conn:
        conn.execute(raw.insert(), rows)
    insert_seconds = time.perf_counter() - started
    columns = list(rows[0])
    started = time.perf_counter()
    with database.engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        with cursor.copy(f"COPY bench_raw_copy ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
    return insert_seconds, time.perf_counter() - started


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    base = os.environ.get("QUANLIAN_BENCH_DATABASE_URL", DEFAULT_PG)
    import_models()
    people = _employees(ITEMS)
    with empty_database_url(base) as url, tempfile.TemporaryDirectory() as tmp:
        database = Database(url)
        Base.metadata.create_all(database.engine)
        stamp_head(database)  # the server checks the schema's revision
        make_app(database, Path(tmp))  # keys and the personal-data vault, as the server has
        with database.transaction() as session:
            partner = create_partner(session, name="Bench payroll", status="active")
            tenant_id = ensure_tenant(session, partner.id, "sandbox").id
            issued = create_client(session, partner=partner, environment="sandbox", name="bench",
                                   scopes=["payroll:read", "payroll:write"], with_secret=True,
                                   require_dpop=False, rate_plan="unlimited")
            account = accounts.create_account(session, tenant_id, kind="settlement",
                                              owner_type="enterprise", owner_name="圈链基准测试有限公司",
                                              owner_uscc=generate_uscc(random.Random(1)))
            accounts.deposit(session, tenant_id, account.id, sum(p[3] for p in people) + 100_00,
                             journal_ref="bench-funding")
            account_id, client_id, secret = account.id, issued.client.id, issued.secret
        raw_seconds, copy_seconds = _raw_insert(database, tenant_id, people)
        body = _csv(account_id, business_date(utcnow()).isoformat(), people)

        port = free_port()
        env = dict(os.environ)
        env.update(env_for(Path(tmp), url, port))
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--host",
                                 "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                 "--no-access-log"], env=env, cwd=ROOT)
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("server did not start") from None
                    time.sleep(0.2)
            token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(client_id, secret)).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            warm = client.get("/v1/payroll/batches", headers=auth)
            assert warm.status_code == 200, warm.text
            rss_before = _vm(proc.pid, "VmRSS")

            started = time.perf_counter()
            r = client.post("/v1/payroll/batches/csv", content=body,
                            headers={**auth, "Content-Type": "text/csv",
                                     "Idempotency-Key": uuid.uuid4().hex})
            accept_seconds = time.perf_counter() - started
            assert r.status_code == 201 and r.json()["status"] == "validated", r.text[:1000]
            peak_mb = _vm(proc.pid, "VmHWM")
            batch_id = r.json()["id"]

            lines = [
                f"items                                   {ITEMS:>10,}  ({len(body) / 1e6:.1f} MB GBK file)",
                f"raw bulk INSERT of the same rows        {raw_seconds:10.2f} s  "
                f"{ITEMS / raw_seconds:9.0f} rows/s  (baseline)",
                f"raw COPY of the same rows (reference)   {copy_seconds:10.2f} s  "
                f"{ITEMS / copy_seconds:9.0f} rows/s",
                f"accepted (validated and stored) via HTTP{accept_seconds:10.2f} s  "
                f"{ITEMS / accept_seconds:9.0f} items/s  ratio {accept_seconds / raw_seconds:.2f}x "
                f"(target <= 2x; {accept_seconds / copy_seconds:.1f}x the COPY)",
                f"server RSS before upload / peak         {rss_before:8.0f} MB / {peak_mb:.0f} MB  "
                f"(target < {MEMORY_TARGET_MB} MB)",
            ]
            if PAY:
                started = time.perf_counter()
                r = client.post(f"/v1/payroll/batches/{batch_id}/confirm",
                                headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
                assert r.status_code == 200, r.text
                while True:
                    with database.transaction() as session:
                        status = session.scalar(select(PayrollBatch.status)
                                                .where(PayrollBatch.id == batch_id))
                    if status != "processing":
                        break
                    processing.pay_batches(database)
                pay_seconds = time.perf_counter() - started
                with database.transaction() as session:
                    paid = session.scalar(select(func.count()).select_from(PayrollItem).where(
                        PayrollItem.batch_id == batch_id, PayrollItem.status == "succeeded"))
                    entries = session.scalar(select(func.count()).select_from(JournalEntry).where(
                        JournalEntry.journal_ref.startswith("payroll:")))
                assert status == "completed" and paid == entries == ITEMS, (status, paid, entries)
                total = accept_seconds + pay_seconds
                lines += [
                    f"confirmed and paid (worker, port)       {pay_seconds:10.2f} s  "
                    f"{ITEMS / pay_seconds:9.0f} items/s  {pay_seconds / ITEMS * 1000:.2f} ms/item",
                    f"end to end (accept + pay)               {total:10.2f} s  ratio "
                    f"{total / raw_seconds:.2f}x (target <= 5x)",
                    f"ledger entries payroll:*                {entries:>10,}  (one per item)",
                ]
            report(f"payroll batch of {ITEMS:,} items on PostgreSQL", lines)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            database.dispose()


if __name__ == "__main__":
    main()
