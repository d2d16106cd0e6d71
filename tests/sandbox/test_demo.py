"""The demo sandbox `make run` seeds (`sandbox.demo.ensure_demo`): the credentials it prints
work against the API and keep working across later starts (several may start at once); deleting
the saved credentials gives the next start a fresh secret, and the old one stops working."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select
from starlette.testclient import TestClient

from gateway.db import Database
from gateway.tenancy import Partner
from sandbox.demo import DEMO_NAME, credentials_path, ensure_demo, quickstart
from tests.tools.api import make_app, make_settings


def _token(http: TestClient, creds: dict[str, str]) -> tuple[int, str | None]:
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                         auth=(creds["client_id"], creds["client_secret"]))
    return response.status_code, response.json().get("access_token")


def test_the_demo_credentials_work_across_restarts_until_they_are_deleted(
        database: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database.url)
    first = ensure_demo(settings)
    assert first["client_id"] in quickstart(settings, first)
    assert credentials_path(settings).stat().st_mode & 0o077 == 0

    app = make_app(database, tmp_path)
    with TestClient(app, raise_server_exceptions=False) as http:
        status, token = _token(http, first)
        assert status == 200
        accounts = http.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"})
        assert accounts.status_code == 200
        assert accounts.json()["data"], "the demo sandbox is seeded with accounts"

        assert ensure_demo(settings) == first  # a restart prints the same working credential
        assert _token(http, first)[0] == 200

        credentials_path(settings).unlink()
        second = ensure_demo(settings)
        assert second["client_id"] == first["client_id"]
        assert second["client_secret"] != first["client_secret"]
        assert _token(http, first)[0] == 401
        assert _token(http, second)[0] == 200


def test_two_starts_racing_on_one_database_seed_one_demo_partner_and_both_credentials_work(
        database: Database, tmp_path: Path) -> None:
    """Two `serve` started at once on a fresh database (D2): one demo partner, and what each
    printed is a working credential, as is what a later start prints."""
    settings = make_settings(tmp_path, database.url)
    start = threading.Barrier(2)
    printed: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def serve_start() -> None:
        start.wait()
        try:
            printed.append(ensure_demo(settings))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve_start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(printed) == 2
    with database.transaction() as session:
        partners = session.scalars(select(Partner.id).where(Partner.name == DEMO_NAME)).all()
    assert len(partners) == 1, partners
    assert printed[0] == printed[1]

    app = make_app(database, tmp_path)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert _token(http, printed[0])[0] == 200
        assert ensure_demo(settings) == printed[0]
        assert _token(http, printed[0])[0] == 200
