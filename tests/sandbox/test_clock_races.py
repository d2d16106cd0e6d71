"""Moves of one test clock sent at once, over real HTTP, each apply: ten advances of 100 s
move the clock 1,000 s, and a big advance is never undone by small ones racing it (read
unlocked, the last write won: ten moved it 400 s, and a day's advance came back to 1 s)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from gateway.db import Database
from tests.tools.api import make_app, new_partner_client
from tests.tools.live import free_port, serve


def _at_once(base_url: str, headers: dict[str, str], bodies: list[dict[str, int]]) -> list[int]:
    statuses: list[int] = []
    start = threading.Barrier(len(bodies))

    def move(body: dict[str, int]) -> None:
        with httpx.Client(base_url=base_url, timeout=60, headers=headers) as own:
            start.wait(timeout=30)
            statuses.append(own.post("/sandbox/v1/clock/advance", json=body).status_code)

    threads = [threading.Thread(target=move, args=(body,)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return statuses


@pytest.mark.timeout(120)
def test_concurrent_clock_moves_all_apply(database: Database, tmp_path: Path) -> None:
    app = make_app(database, tmp_path)
    with serve(app, free_port()) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        client = new_partner_client(app, http)
        headers = {"Authorization": f"Bearer {client.token}"}

        def offset() -> float:
            return http.get("/sandbox/v1/clock", headers=headers).json()["offset_seconds"]

        before = offset()
        assert _at_once(base_url, headers, [{"seconds": 100}] * 10) == [200] * 10
        assert offset() == pytest.approx(before + 1000)

        statuses = _at_once(base_url, headers, [{"seconds": 86400}] + [{"seconds": 1}] * 7)
        assert statuses == [200] * 8
        assert offset() == pytest.approx(before + 1000 + 86400 + 7)


def test_a_read_only_client_cannot_move_the_clock_or_reset(app, http) -> None:  # type: ignore[no-untyped-def]
    # A reporting job's read-only client (or a regulator's user) must not wipe the tenant.
    reader = new_partner_client(app, http, scopes=["accounts:read"])
    for path, body in (("/sandbox/v1/clock/advance", {"seconds": 60}), ("/sandbox/v1/reset", None),
                       ("/sandbox/v1/events/transfer.completed", None)):
        refused = reader.post(path, body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "insufficient_scope"
    assert reader.get("/sandbox/v1/clock").json()["offset_seconds"] == 0  # reading is fine
    writer = new_partner_client(app, http, scopes=["accounts:read", "accounts:write"])
    assert writer.post("/sandbox/v1/clock/advance", {"seconds": 60}).status_code == 200
