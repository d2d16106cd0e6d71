"""A real worker process (`quanlian worker`) killed with SIGKILL in the middle of a batch, then
restarted: every item is paid exactly once, as the ledger shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from gateway.clock import base_clock
from gateway.db import read_only
from products.accounts import service as accounts
from products.accounts.models import Hold, JournalEntry, Posting
from products.payroll.models import PayrollBatch, PayrollItem
from tests.products.payroll.support import balance, batch_body, items_for, open_account, people
from tests.tools.api import new_partner_client

ROOT = Path(__file__).resolve().parents[3]
N = 400


def _worker(app, database) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "QUANLIAN_DATABASE_URL": database.url,
        "QUANLIAN_DATA_DIR": str(app.state.settings.data_dir),  # the same personal-data key
        "QUANLIAN_PAYROLL_CHUNK_SIZE": "20",
        "QUANLIAN_LOG_LEVEL": "WARNING",
        "QUANLIAN_REDIS_URL": "",
    })
    env.pop("QUANLIAN_ENCRYPTION_KEY", None)
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker", "--tick", "0.05"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _counts(database, batch_id: str, tenant_id: str) -> tuple[int, int, str]:
    """A read-only snapshot (a deferred transaction on SQLite: it never waits for the worker)."""
    with database.engine.connect() as raw:
        conn = read_only(raw)
        paid = conn.execute(select(func.count()).select_from(PayrollItem).where(
            PayrollItem.batch_id == batch_id, PayrollItem.status == "succeeded")).scalar_one()
        entries = conn.execute(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.tenant_id == tenant_id,
            JournalEntry.journal_ref.startswith("payroll:"))).scalar_one()
        status = conn.execute(select(PayrollBatch.status).where(
            PayrollBatch.id == batch_id)).scalar_one()
        raw.rollback()
    return paid, entries, status


def _wait(predicate, seconds: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError("the worker exited: " + proc.stderr.read().decode()[-3000:])
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.002)


def test_kill_9_mid_batch_and_restart_pays_every_item_exactly_once(app, http, database):
    pc = new_partner_client(app, http)
    start = 10_000_000_00
    payer = open_account(app, pc.tenant_id, fen=start)
    today = base_clock().today()  # the real clock: the worker process runs on it too
    body = batch_body(payer, items_for(people(N, seed=99)), value_date=today)
    batch = pc.post("/v1/payroll/batches", body).json()
    assert batch["status"] == "validated", batch
    assert pc.post(f"/v1/payroll/batches/{batch['id']}/confirm").json()["status"] == "processing"
    total = sum(int(i["amount"]["amount"].replace(".", "")) for i in body["items"])

    worker = _worker(app, database)
    try:
        _wait(lambda: _counts(database, batch["id"], pc.tenant_id)[0] >= 40, 180, worker)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stderr.close()
    paid, entries, status = _counts(database, batch["id"], pc.tenant_id)
    assert status == "processing" and 0 < paid < N, (paid, status)
    # What committed is consistent: every paid item has its one posting, no more, no fewer.
    assert entries == paid

    restarted = _worker(app, database)
    try:
        _wait(lambda: _counts(database, batch["id"], pc.tenant_id)[2] != "processing", 300,
              restarted)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
        restarted.stderr.close()

    paid, entries, status = _counts(database, batch["id"], pc.tenant_id)
    assert (status, paid, entries) == ("completed", N, N)
    with database.transaction() as session:
        items = session.execute(select(PayrollItem.id, PayrollItem.journal_ref).where(
            PayrollItem.batch_id == batch["id"])).all()
        refs = session.execute(select(JournalEntry.journal_ref, func.count()).where(
            JournalEntry.tenant_id == pc.tenant_id,
            JournalEntry.journal_ref.startswith("payroll:"))
            .group_by(JournalEntry.journal_ref)).all()
        clearing = accounts.internal_account(session, pc.tenant_id, accounts.CLEARING).id
        to_clearing = session.scalar(select(func.sum(Posting.amount_fen)).where(
            Posting.account_id == clearing, Posting.amount_fen > 0))
        hold = session.scalars(select(Hold).where(Hold.reference_id == batch["id"])).one()
        problems = accounts.audit(session, pc.tenant_id)
    assert {ref for ref, _ in refs} == {f"payroll:{item_id}" for item_id, _ in items}
    assert all(n == 1 for _, n in refs)
    assert all(ref == f"payroll:{item_id}" for item_id, ref in items)
    assert to_clearing == total
    assert (hold.status, hold.captured_fen, hold.released_fen) == ("captured", total, 0)
    assert balance(app, pc.tenant_id, payer) == (start - total, 0)
    assert problems == []
