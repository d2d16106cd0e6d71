"""More concurrent payments than worker threads, all from one account, over real HTTP.

Each payment locks the payer's row (SQLite: takes the one writer) until the middleware commits,
after FastAPI has validated the response on a second worker-thread hop. Without admission,
requests queued behind that lock took every worker thread and the lock holder's hop waited for
ever (PostgreSQL) or until the database timed out (SQLite).
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway.admission import admitted_at_once
from gateway.db import Database
from products.accounts.models import Account
from tests.products.accounts.factories import enterprise_account, funded_account
from tests.tools.api import make_app, new_partner_client
from tests.tools.concurrency import run_together
from tests.tools.live import free_port, serve

WORKER_THREADS = 4
PAYMENTS = 16
AMOUNT_FEN = 123


def test_admission_leaves_threads_free() -> None:
    assert admitted_at_once(4) == 2
    assert admitted_at_once(40) == 32
    assert all(admitted_at_once(n) < n for n in range(2, 200))


@pytest.mark.timeout(180)
def test_more_concurrent_payments_than_worker_threads_all_complete(database: Database,
                                                                   tmp_path: Path) -> None:
    app = make_app(database, tmp_path, worker_threads=WORKER_THREADS)
    port = free_port()
    with serve(app, port) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        client = new_partner_client(app, http, scopes=["accounts:read", "accounts:write"])  # type: ignore[arg-type]
        with database.transaction() as s:
            payer = funded_account(s, client.tenant_id, 1_000_000).id
            payees = [enterprise_account(s, client.tenant_id).id for _ in range(3)]
        token = client.token
        numbers = itertools.count()
        statuses: list[int | str] = []

        def pay() -> None:
            i = next(numbers)
            body = {"from_account_id": payer, "to_account_id": payees[i % 3],
                    "amount": {"amount": "1.23", "currency": "CNY"}, "memo": f"payment {i}"}
            try:
                with httpx.Client(base_url=base_url, timeout=60) as own:
                    r = own.post("/v1/transfers", json=body, headers={
                        "Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex})
                statuses.append(r.status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)

        run_together(pay, PAYMENTS)
        assert sorted(statuses, key=str) == [201] * PAYMENTS
        with database.transaction() as s:
            balance = s.scalar(select(Account.ledger_fen).where(Account.id == payer))
        assert balance == 1_000_000 - PAYMENTS * AMOUNT_FEN
