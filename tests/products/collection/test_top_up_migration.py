"""Migration 0009 keeps the canteen top-ups made before it: the ids their events gave out read
back as the top-ups' GET answers them now (a sandbox reset's leftovers and samples aside)."""

from __future__ import annotations

from typing import Any

from alembic import command
from starlette.testclient import TestClient

from gateway import migrate
from gateway.db import Database
from tests.tools.api import make_app, sandbox_signup
from tests.tools.databases import empty_database_url


def _top_ups(pc: Any, diner_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for diner_id in diner_ids:
        response = pc.get(f"/v1/collection/canteen/diners/{diner_id}/top-ups",
                          params={"limit": 100})
        assert response.status_code == 200, response.text
        out[diner_id] = response.json()["data"]
    return out


def _downgrade(url: str, revision: str) -> None:
    database = Database(url)
    try:
        with database.engine.connect() as conn, conn.begin():
            cfg = migrate.alembic_config(url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        database.dispose()


def test_top_ups_made_before_the_table_read_back_after_it(tmp_path):
    with empty_database_url() as url:
        migrate.upgrade(url)
        database = Database(url)
        app = make_app(database, tmp_path)
        try:
            with TestClient(app) as http:
                pc, signup = sandbox_signup(app, http)
                # A reset seeds the same top-ups again: their first events stay behind.
                assert pc.post("/sandbox/v1/reset").status_code == 200
                diners = signup["seeded"]["collection"]["canteen"]["diner_ids"]
                made = pc.post(f"/v1/collection/canteen/diners/{diners[0]}/top-ups",
                               {"amount": {"amount": "12.34", "currency": "CNY"}})
                assert made.status_code == 201, made.text
                sample = pc.post("/sandbox/v1/events/diner_wallet.topped_up")
                assert sample.status_code == 201, sample.text
                before = _top_ups(pc, diners)
                assert sum(len(rows) for rows in before.values()) == len(diners) + 1
                assert before[diners[0]][0] == made.json()

                database.dispose()
                _downgrade(url, "0008")
                migrate.upgrade(url)

                assert _top_ups(pc, diners) == before
        finally:
            database.dispose()
