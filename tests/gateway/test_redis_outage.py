"""While the configured Redis cannot be reached, calls that need it (rate limits, single-use
values) are a 503 `service_unavailable` with Retry-After and change nothing, never a 500 nor a
silent fall-back to per-process memory; a hung Redis fails them within its bounded timeouts;
and /readyz says not ready."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import func, select
from starlette.testclient import TestClient

from gateway import migrate
from gateway import redis as gateway_redis
from gateway.db import Database
from gateway.errors import PROBLEM_JSON
from gateway.ratelimit import RateLimiter
from gateway.tenancy import Partner
from tests.tools.api import (
    ISSUER,
    basic,
    client_assertion,
    dpop_proof,
    make_app,
    new_partner_client,
)


def _closed_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hung_redis() -> Iterator[str]:
    """A 'Redis' that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/12"


def _stamp(database: Database) -> None:
    """Test databases are made from the models: mark them current, as /readyz expects."""
    command.stamp(migrate.alembic_config(database.url), "head")


def _unavailable(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["code"] == "service_unavailable"


def _partners(database: Database) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.count()).select_from(Partner))


def test_unreachable_redis_is_a_503_with_retry_after_and_readyz_not_ready(
        database: Database, tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    data_dir = tmp_path / "data"
    # A client and its token from a server without Redis (same database and keys).
    with TestClient(make_app(database, data_dir), raise_server_exceptions=False) as http:
        client = new_partner_client(make_app(database, data_dir), http, rate_plan="sandbox")
        token = client.token
    partners = _partners(database)
    _stamp(database)

    broken = make_app(database, data_dir, redis_url=f"redis://127.0.0.1:{_closed_port()}/12")
    caplog.set_level(logging.WARNING)
    with TestClient(broken, raise_server_exceptions=False) as http:
        _unavailable(http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               headers=basic(client.client_id, client.secret or "")))
        _unavailable(http.get("/v1/me", headers={"Authorization": f"Bearer {token}"}))
        _unavailable(http.get("/v1/me"))  # no token: its refusal would be counted
        _unavailable(http.post("/sandbox/v1/signup", json={
            "name": "Acme", "email": f"dev-{uuid.uuid4().hex[:6]}@acme.example"}))
        time.sleep(gateway_redis.HOLD_SECONDS + 0.1)  # past the fail-fast hold: Redis tried again
        _unavailable(http.get("/v1/me", headers={"Authorization": f"Bearer {token}"}))
        ready = http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"].startswith(PROBLEM_JSON)
        assert ready.json()["code"] == "redis_unreachable"
        # what needs no Redis is still served
        assert http.get("/healthz").status_code == 200
    assert _partners(database) == partners  # nothing changed
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records]


def test_a_hung_redis_fails_calls_within_its_timeouts(database: Database, tmp_path,
                                                       hung_redis: str) -> None:
    _stamp(database)
    app = make_app(database, tmp_path / "data", redis_url=hung_redis)
    with TestClient(app, raise_server_exceptions=False) as http:
        started = time.monotonic()
        _unavailable(http.get("/v1/me"))
        assert time.monotonic() - started < 3
        started = time.monotonic()
        _unavailable(http.get("/v1/me"))  # held off: Redis is not tried again at once
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        assert http.get("/readyz").status_code == 503
        assert time.monotonic() - started < 2


def test_redis_clients_have_bounded_timeouts_and_retries() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/12"
    limiter = RateLimiter(url, "10/second", "10/second", {"sandbox": (10, 100)})
    for client in (gateway_redis.redis_client(url), limiter.strategy.storage.storage):
        options = client.connection_pool.connection_kwargs
        assert 0 < options["socket_connect_timeout"] <= 1
        assert 0 < options["socket_timeout"] <= 1
        assert options["retry"].get_retries() <= 1


def test_a_reachable_redis_is_ready(database: Database, tmp_path, redis_url: str) -> None:
    _stamp(database)
    app = make_app(database, tmp_path / "data", redis_url=redis_url)
    with TestClient(app) as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["redis"] == "ok"


def test_single_use_values_fail_closed_while_redis_is_unreachable(database: Database,
                                                                   tmp_path) -> None:
    """A client assertion or DPoP proof is never taken as new (nor checked elsewhere, where
    other processes would not see it) while the Redis holding single-use values is down."""
    app = make_app(database, tmp_path / "data")
    with TestClient(app, raise_server_exceptions=False) as http:
        client = new_partner_client(app, http, private_key=True, dpop=True)
        headers = client.auth()  # a token and a proof for GET /v1/me, taken while all is well
        app.state.replay.redis = gateway_redis.redis_client(
            f"redis://127.0.0.1:{_closed_port()}/12")
        form = {"grant_type": "client_credentials", "client_assertion_type":
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion(client.client_id, client.key)}
        proof = dpop_proof(client.dpop_key, "POST", ISSUER + "/oauth/token")
        _unavailable(http.post("/oauth/token", data=form, headers={"DPoP": proof}))
        _unavailable(http.get("/v1/me", headers=headers))
        app.state.replay.redis = None  # back to the database: the refused proof is still new
        app.state.replay.outage.until = 0.0  # its own, not the limiter's (which is in memory)
        assert http.get("/v1/me", headers=headers).status_code == 200


def test_a_redis_outage_met_anywhere_else_is_a_503_and_other_redis_errors_stay_500s(
        database: Database, tmp_path) -> None:
    """The net under every caller that does not map Redis errors itself (the checkout's
    limiter, say): redis-py's errors and `limits`' wrapper of them."""
    from limits.errors import StorageError
    from redis import exceptions as rx

    app = make_app(database, tmp_path / "data")
    raised = {"refused": rx.ConnectionError("Error 111 connecting"),
              "timeout": rx.TimeoutError("Timeout reading from socket"),
              "wrapped": StorageError(rx.ConnectionError("Error 111 connecting")),
              "bug": rx.ResponseError("WRONGTYPE Operation against a key")}

    @app.get("/_redis_probe/{case}", include_in_schema=False)
    def probe(case: str) -> None:
        raise raised[case]

    with TestClient(app, raise_server_exceptions=False) as http:
        for case in ("refused", "timeout", "wrapped"):
            _unavailable(http.get(f"/_redis_probe/{case}"))
        assert http.get("/_redis_probe/bug").status_code == 500
