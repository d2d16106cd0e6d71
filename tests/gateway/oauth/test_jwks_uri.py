"""Clients whose keys live at a jwks_uri: fetched, cached, refetched on an unknown kid, and
never fetched from loopback or private addresses for production clients."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from gateway.oauth.clients import create_client
from gateway.tenancy import create_partner
from tests.tools.api import ASSERTION_TYPE_JWT, client_assertion, make_app, new_ec_key, public_jwks


class JWKSServer:
    def __init__(self) -> None:
        self.jwks: dict = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server():
    server = JWKSServer()
    yield server
    server.close()


def _client(app, environment, uri):
    with app.state.database.transaction() as s:
        partner = create_partner(s, name="Uri partner", status="active")
        return create_client(s, partner=partner, environment=environment, name="uri",
                             scopes=["accounts:read"], jwks_uri=uri, require_dpop=False).client.id


def _token(http, client_id, key):
    return http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
        "client_assertion": client_assertion(client_id, key)})


def test_fetched_cached_and_refetched_on_unknown_kid(database, tmp_path, jwks_server):
    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    first, second = new_ec_key(), new_ec_key()
    jwks_server.jwks = public_jwks(first)
    client_id = _client(app, "sandbox", jwks_server.url)
    with TestClient(app) as http:
        assert _token(http, client_id, first).status_code == 200
        assert _token(http, client_id, first).status_code == 200
        assert jwks_server.hits == 1  # cached
        jwks_server.jwks = public_jwks(first, second)  # the client rotates in a new key
        assert _token(http, client_id, second).status_code == 200
        assert jwks_server.hits == 2  # refetched for the unknown kid
        foreign = new_ec_key()
        assert _token(http, client_id, foreign).status_code in (400, 401)


def test_production_never_fetches_from_loopback(database, tmp_path, jwks_server):
    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    key = new_ec_key()
    jwks_server.jwks = public_jwks(key)
    client_id = _client(app, "production", jwks_server.url)
    with TestClient(app) as http:
        response = _token(http, client_id, key)
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert jwks_server.hits == 0


def test_sandbox_loopback_refused_unless_allowed(database, tmp_path, jwks_server):
    app = make_app(database, tmp_path)
    key = new_ec_key()
    jwks_server.jwks = public_jwks(key)
    client_id = _client(app, "sandbox", jwks_server.url)
    with TestClient(app) as http:
        assert _token(http, client_id, key).status_code in (400, 401)
    assert jwks_server.hits == 0
