"""Real HTTP: a standard OAuth client library, and limits shared by two server processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT

from gateway import migrate
from tests.tools.api import make_app, new_ec_key, public_jwks
from tests.tools.databases import empty_database_url
from tests.tools.live import free_port, serve

ROOT = Path(__file__).resolve().parents[2]


def test_authlib_httpx_client_with_private_key_jwt(database, tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    app = make_app(database, tmp_path, issuer=issuer)
    key = new_ec_key()
    from gateway.oauth.clients import create_client
    from gateway.tenancy import create_partner

    with database.transaction() as s:
        partner = create_partner(s, name="Authlib user", status="active")
        client_id = create_client(s, partner=partner, environment="sandbox", name="authlib",
                                  scopes=["accounts:read"], jwks=public_jwks(key),
                                  require_dpop=False).client.id
    with serve(app, port) as base:
        meta = httpx.get(base + "/.well-known/oauth-authorization-server").json()
        session = OAuth2Client(client_id, key, token_endpoint_auth_method=PrivateKeyJWT(
            meta["issuer"], alg="ES256"))
        token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        me = session.get(base + "/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["client_id"] == client_id
        session.close()


def _env(data_dir: Path, url: str, redis_url: str | None, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "QUANLIAN_DATA_DIR": str(data_dir), "QUANLIAN_DATABASE_URL": url,
        "QUANLIAN_ISSUER": f"http://127.0.0.1:{port}", "QUANLIAN_RUN_WORKER": "false",
        "QUANLIAN_RATE_PLANS": json.dumps({"sandbox": [1000, 30], "standard": [1000, 30]}),
        "QUANLIAN_LOG_LEVEL": "WARNING",
    })
    if redis_url:
        env["QUANLIAN_REDIS_URL"] = redis_url
    return env


def test_rate_limits_hold_across_two_processes(tmp_path, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    ports = [free_port(), free_port()]
    with empty_database_url() as url:
        migrate.upgrade(url)
        env = _env(tmp_path, url, redis_url, ports[0])
        created = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "clients", "create", "--name", "Two procs",
             "--scopes", "accounts:read", "--secret"], env=env, capture_output=True, text=True,
            check=True, cwd=ROOT)
        client = json.loads(created.stdout)
        procs = [subprocess.Popen([sys.executable, "-m", "uvicorn", "gateway.asgi:app",
                                   "--host", "127.0.0.1", "--port", str(p), "--log-level",
                                   "warning"], env=env, cwd=ROOT) for p in ports]
        try:
            for p in ports:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{p}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.2)
            token = httpx.post(f"http://127.0.0.1:{ports[0]}/oauth/token",
                               data={"grant_type": "client_credentials"},
                               auth=(client["client_id"], client["client_secret"])).json()
            headers = {"Authorization": f"Bearer {token['access_token']}"}
            statuses = []
            for i in range(60):
                r = httpx.get(f"http://127.0.0.1:{ports[i % 2]}/v1/me", headers=headers)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) >= 1
                    assert r.headers["ratelimit-limit"] == "30"
                    assert r.headers["ratelimit-remaining"] == "0"
                    assert r.headers["content-type"].startswith("application/problem+json")
            assert statuses.count(200) == 30, statuses
            assert statuses.count(429) == 30
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


@pytest.mark.parametrize("limits", ["3/minute"])
def test_public_and_token_endpoint_limits(database, tmp_path, limits):
    from starlette.testclient import TestClient

    app = make_app(database, tmp_path, token_endpoint_limits=limits)
    with TestClient(app) as client:
        codes = [client.post("/oauth/token", data={"grant_type": "client_credentials"}).status_code
                 for _ in range(5)]
    assert codes[:3] == [400, 400, 400] or codes.count(429) == 2, codes
    assert codes.count(429) == 2
