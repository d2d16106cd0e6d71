"""A sandbox reset deletes a tenant's business data while the tenant's other calls, and the
jobs, run: over real HTTP, each call gets a success or a problem (a 404, 409 or 422 for what the
reset took away), never a 500; a job that meets the reset skips or retries; the ledger stays
sound. (A schemathesis run on PostgreSQL found three such failures: tests/products/collection/
test_rows_gone.py pins each; this one looks for the rest.)"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from gateway import jobs
from gateway.db import Database
from gateway.errors import database_problem
from gateway.identifiers import generate_resident_id
from products.accounts import service as accounts
from tests.tools.api import make_app, new_partner_client
from tests.tools.live import free_port, serve

SECONDS = 5.0
CALLS_PER_WORKER = 400
WORKERS = 4
SCOPES = ["accounts:read", "accounts:write", "collection:read", "collection:write",
          "egov:read", "egov:write"]
ORIGIN = "https://portal.example.gov.cn"


def _calls(http: httpx.Client, rng: random.Random, answers: list[tuple[str, int, str]]) -> None:
    """One partner developer's calls: its accounts, then one write chosen at random."""
    def note(what: str, response: httpx.Response) -> httpx.Response:
        answers.append((what, response.status_code, response.headers.get("content-type", "")))
        return response

    listed = note("list accounts", http.get("/v1/accounts", params={"limit": 50}))
    usable = [a["id"] for a in listed.json().get("data", []) if a["kind"] == "settlement"
              and a["status"] == "active"] if listed.status_code == 200 else []
    key = {"Idempotency-Key": uuid.uuid4().hex}
    what = rng.choice(["transfer", "virtual account", "settings", "portal", "payment order"])
    if what == "transfer" and len(usable) >= 2:
        a, b = rng.sample(usable, 2)
        note(what, http.post("/v1/transfers", headers=key, json={
            "from_account_id": a, "to_account_id": b,
            "amount": {"amount": "0.01", "currency": "CNY"}}))
    elif what == "virtual account":
        note(what, http.post("/v1/collection/virtual-accounts", headers=key,
                             json={"label": "付款人"}))
    elif what == "settings" and usable:
        note(what, http.patch("/v1/collection/settings",
                              json={"fee_account_id": rng.choice(usable)}))
    elif what == "portal" and usable:
        note(what, http.put("/v1/egov/portal", json={
            "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": rng.choice(usable),
            "origins": [ORIGIN]}))
    elif what == "payment order":
        created = note(what, http.post("/v1/egov/payment-orders", headers=key, json={
            "item_code": "103040101", "item_name": "工本费",
            "payer": {"name": "张三", "id_number": generate_resident_id(rng)},
            "amount": {"amount": "25.00", "currency": "CNY"},
            "portal_reference": uuid.uuid4().hex[:20], "return_url": ORIGIN + "/done"}))
        if created.status_code == 201:
            note("checkout page", http.get(httpx.URL(created.json()["checkout_url"]).path))


@pytest.mark.timeout(180)
def test_calls_and_jobs_racing_a_sandbox_reset_never_fail_with_a_500(database: Database,
                                                                      tmp_path: Path) -> None:
    app = make_app(database, tmp_path)
    port = free_port()
    answers: list[tuple[str, int, str]] = []
    job_errors: list[BaseException] = []
    resets: list[int] = []
    with serve(app, port) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        client = new_partner_client(app, http, scopes=SCOPES)  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {client.token}"}
        seeded = http.post("/sandbox/v1/reset", headers=headers)
        assert seeded.status_code == 200, seeded.text
        deadline = time.monotonic() + SECONDS
        collection_jobs = [n for n in jobs.registered() if n.startswith("collection.")]

        def developer(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base_url, timeout=60, headers=headers) as own:
                for _ in range(CALLS_PER_WORKER):
                    if time.monotonic() > deadline:
                        return
                    _calls(own, rng, answers)

        def resetter() -> None:
            with httpx.Client(base_url=base_url, timeout=60, headers=headers) as own:
                while time.monotonic() < deadline:
                    response = own.post("/sandbox/v1/reset")
                    answers.append(("reset", response.status_code,
                                    response.headers.get("content-type", "")))
                    resets.append(response.status_code)
                    time.sleep(0.2)

        def worker_jobs() -> None:
            while time.monotonic() < deadline:
                try:
                    jobs.run_all_once(database, only=collection_jobs)
                except Exception as exc:  # noqa: BLE001 - judged below
                    problem = database_problem(exc)
                    if problem is None or problem.status != 409:  # a conflict retries next tick
                        job_errors.append(exc)
                time.sleep(0.05)

        threads = ([threading.Thread(target=developer, args=(i,)) for i in range(WORKERS)]
                   + [threading.Thread(target=resetter), threading.Thread(target=worker_jobs)])
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    failed = [a for a in answers if a[1] >= 500]
    assert not failed, failed[:5]
    refused = [a for a in answers if a[1] >= 400]
    assert all(ctype.startswith("application/problem+json") for _, _, ctype in refused)
    assert all(status in (404, 409, 422) for _, status, _ in refused), refused[:5]
    assert not job_errors, job_errors[:3]
    assert 200 in resets and len(answers) > 50  # the race happened
    with database.transaction() as s:
        assert accounts.audit(s, client.tenant_id) == []
