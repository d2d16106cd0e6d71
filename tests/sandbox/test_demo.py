"""The demo sandbox `make run` seeds (`sandbox.demo.ensure_demo`): the credentials it prints
work against the API, and a later start issues a fresh secret for the same client while the
old one stops working."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from gateway.db import Database
from sandbox.demo import ensure_demo, quickstart
from tests.tools.api import make_app, make_settings


def _token(http: TestClient, creds: dict[str, str]) -> tuple[int, str | None]:
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         auth=(creds["client_id"], creds["client_secret"]))
    return response.status_code, response.json().get("access_token")


def test_the_demo_credentials_work_and_a_restart_rotates_the_secret(
        database: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database.url)
    first = ensure_demo(settings)
    assert first["client_id"] in quickstart(settings, first)

    app = make_app(database, tmp_path)
    with TestClient(app, raise_server_exceptions=False) as http:
        status, token = _token(http, first)
        assert status == 200
        accounts = http.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"})
        assert accounts.status_code == 200
        assert accounts.json()["data"], "the demo sandbox is seeded with accounts"

        second = ensure_demo(settings)
        assert second["client_id"] == first["client_id"]
        assert second["client_secret"] != first["client_secret"]
        assert _token(http, first)[0] == 401
        assert _token(http, second)[0] == 200
