"""Clients whose keys live at a jwks_uri: fetched, cached, refetched on an unknown kid, and
never fetched from loopback or private addresses for production clients."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from gateway.oauth import jwks_fetch
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
        if environment == "production":
            # Registration refuses a loopback or http jwks_uri for production; a host name
            # can still come to resolve to one later, which is what this stands for.
            client = create_client(s, partner=partner, environment=environment, name="uri",
                                   scopes=["accounts:read"], jwks=public_jwks(new_ec_key()),
                                   require_dpop=False).client
            client.jwks, client.jwks_uri = None, uri
            return client.id
        return create_client(s, partner=partner, environment=environment, name="uri",
                             scopes=["accounts:read"], jwks_uri=uri, require_dpop=False).client.id


def _token(http, client_id, key, *, with_kid=True):
    return http.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
        "client_assertion": client_assertion(client_id, key, with_kid=with_kid)})


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


def test_unknown_kids_refetch_at_most_once_per_interval(database, tmp_path, jwks_server,
                                                        monkeypatch):
    """Assertions with made-up kids must not make the platform fetch the partner's JWKS
    endpoint on every request: one refetch per interval, the cached keys serve the rest."""
    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    key = new_ec_key()
    jwks_server.jwks = public_jwks(key)
    client_id = _client(app, "sandbox", jwks_server.url)
    with TestClient(app) as http:
        assert _token(http, client_id, key).status_code == 200
        assert jwks_server.hits == 1
        for _ in range(20):
            response = _token(http, client_id, new_ec_key())  # a kid of its own each time
            assert response.status_code in (400, 401)
            assert response.json()["error"] == "invalid_client"
        assert jwks_server.hits == 2  # one refetch, not twenty
        assert _token(http, client_id, key).status_code == 200  # from the cache
        rotated = new_ec_key()
        jwks_server.jwks = public_jwks(key, rotated)
        assert _token(http, client_id, rotated).status_code in (400, 401)  # within the interval
        assert jwks_server.hits == 2
        monkeypatch.setattr(jwks_fetch, "UNKNOWN_KID_REFETCH_INTERVAL", 0.0)  # it has passed
        assert _token(http, client_id, rotated).status_code == 200
        assert jwks_server.hits == 3

def test_a_key_rotated_in_is_found_without_a_kid_too(database, tmp_path, jwks_server,
                                                    monkeypatch):
    """authlib's private_key_jwt client names no key: a key the partner rotated in at its
    jwks_uri is found by fetching the set again when no cached key verifies the signature, at
    most once per interval, as for an unknown kid."""
    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    old, new = new_ec_key(), new_ec_key()
    jwks_server.jwks = public_jwks(old)
    client_id = _client(app, "sandbox", jwks_server.url)
    with TestClient(app) as http:
        assert _token(http, client_id, old, with_kid=False).status_code == 200
        jwks_server.jwks = public_jwks(new)  # rotated: the old key withdrawn
        assert _token(http, client_id, new, with_kid=False).status_code == 200
        assert jwks_server.hits == 2
        assert _token(http, client_id, new, with_kid=False).status_code == 200  # cached
        assert jwks_server.hits == 2
        # a key nobody published refetches nothing within the interval of the last refetch
        for _ in range(5):
            assert _token(http, client_id, new_ec_key(), with_kid=False).status_code == 401
        assert jwks_server.hits == 2
        monkeypatch.setattr(jwks_fetch, "UNKNOWN_KID_REFETCH_INTERVAL", 0.0)  # it has passed
        assert _token(http, client_id, new_ec_key(), with_kid=False).status_code == 401
        assert jwks_server.hits == 3


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


def test_keys_fetched_for_a_sandbox_client_never_serve_a_production_client(
        database, tmp_path, jwks_server):
    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    key = new_ec_key()
    jwks_server.jwks = public_jwks(key)
    sandbox_id = _client(app, "sandbox", jwks_server.url)
    production_id = _client(app, "production", jwks_server.url)
    with TestClient(app) as http:
        assert _token(http, sandbox_id, key).status_code == 200  # loopback allowed: sandbox
        response = _token(http, production_id, key)  # same URI, keys already cached
        assert response.status_code in (400, 401)
        assert response.json()["error"] == "invalid_client"
        assert _token(http, sandbox_id, key).status_code == 200
    assert jwks_server.hits == 1


@pytest.mark.parametrize("uri", ["http://keys.partner.example/jwks.json",
                                 "https://127.0.0.1/jwks.json"], ids=["http", "loopback"])
def test_production_registration_refuses_a_jwks_uri_that_is_not_https_and_public(
        database, tmp_path, monkeypatch, uri):
    from sqlalchemy import func, select
    from typer.testing import CliRunner

    from gateway.cli import app as cli
    from gateway.errors import ValidationFailed
    from gateway.oauth.models import OAuthClient
    from gateway.settings import get_settings

    monkeypatch.setenv("QUANLIAN_DATABASE_URL", database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, [
            "clients", "create", "--environment", "production", "--name", "Uri partner",
            "--scopes", "accounts:read", "--jwks-uri", uri])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert isinstance(result.exception, ValidationFailed), result.output
    assert result.exception.code == "unsafe_url"
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OAuthClient)) == 0


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # see test_key_strength
def test_a_weak_key_published_at_the_jwks_uri_never_verifies(database, tmp_path, jwks_server):
    """A set may publish keys for other uses beside the client's: a 1024-bit RSA key there is
    never used to verify, and the client's good key still works."""
    from tests.gateway.oauth.test_key_strength import weak_rsa_key

    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    good, weak = new_ec_key(), weak_rsa_key()
    jwks_server.jwks = public_jwks(good, weak)
    client_id = _client(app, "sandbox", jwks_server.url)
    with TestClient(app) as http:
        response = http.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE_JWT,
            "client_assertion": client_assertion(client_id, weak, alg="PS256")})
        assert response.status_code in (400, 401)
        assert response.json()["error"] == "invalid_client"
        assert _token(http, client_id, good).status_code == 200


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True),
    ("10.0.0.1", False), ("172.16.0.1", False), ("192.168.1.1", False), ("127.0.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("100.127.255.254", False),
    ("198.18.0.1", False), ("192.0.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::1", False), ("fe80::1%eth0", False), ("fc00::1", False), ("fec0::1", False),
    ("::ffff:10.0.0.1", False), ("64:ff9b::a00:1", False), ("2002:a00:1::", False),
    ("64:ff9b::808:808", True),
])
def test_only_globally_reachable_addresses_are_public(address, public):
    """What jwks_uri fetches and webhook deliveries may reach (an address inside the bank's or
    the cloud's own networks is an SSRF target), IPv4 carried in IPv6 included."""
    from gateway.oauth.jwks_fetch import _is_public

    assert _is_public(address) is public


def test_the_jwks_is_fetched_from_the_address_that_was_checked(monkeypatch):
    """DNS rebinding: a name that resolves to a public address when checked and to loopback
    when connecting must not reach loopback. The fetch connects to the checked address, with
    the original Host header and TLS server name."""
    import httpx

    answers = iter(["93.184.215.14", "127.0.0.1"])

    def resolve(host, port, *args, **kwargs):
        return [(2, 1, 6, "", (next(answers, "127.0.0.1"), port))]

    monkeypatch.setattr(jwks_fetch.socket, "getaddrinfo", resolve)
    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=public_jwks(new_ec_key()))

    cache = jwks_fetch.JWKSCache(allow_private=False, transport=httpx.MockTransport(answer))
    jwks = cache.get("https://keys.partner.example/jwks.json", None, production=True)
    assert len(jwks["keys"]) == 1
    [request] = sent
    assert request.url.host == "93.184.215.14" and request.headers["host"] == "keys.partner.example"
    assert request.extensions["sni_hostname"] == "keys.partner.example"


def test_a_jwks_answer_larger_than_a_key_set_is_refused():
    import httpx

    huge = b'{"keys": [' + b'{"kty": "oct"},' * 30000 + b'{}]}'
    cache = jwks_fetch.JWKSCache(allow_private=True, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=huge)))
    with pytest.raises(ValueError, match="more than"):
        cache.get("http://127.0.0.1:1/jwks.json", None, production=False)
