"""Factories for the partners tests: applications, operators, console sessions, receivers."""

from __future__ import annotations

import html
import random
import re
import secrets
import socket
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from gateway.events import publish
from gateway.identifiers import generate_uscc
from gateway.jobs import run_all_once
from gateway.tenancy import clock_for

PASSWORD = "correct horse battery staple 9"


def make_uscc(n: int | None = None) -> str:
    """A valid unified social credit code (the same one for the same `n`)."""
    return generate_uscc(random.Random(secrets.randbits(64) if n is None else n))


def application(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "legal_name": f"江苏链通供应链管理有限公司 {uuid.uuid4().hex[:6]}",
        "uscc": make_uscc(),
        "partner_type": "core_enterprise",
        "contacts": [{"name": "张伟", "email": "zhang.wei@lt.example", "phone": "13812345678",
                      "role": "technical"}],
        "requested_products": ["chain_credit", "payroll"],
        "website": "https://lt.example",
        "description": "Supplier finance for our tier-1 suppliers.",
    }
    body.update(overrides)
    return body


def apply(http: TestClient, **overrides: Any) -> dict[str, Any]:
    response = http.post("/v1/partner-applications", json=application(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


def make_operator(app: FastAPI, username: str, roles: list[str],
                  password: str = PASSWORD) -> str:
    from partners.operators import create_operator

    with app.state.database.transaction() as session:
        return create_operator(session, username=username, display_name=username.title(),
                               roles=roles, password=password).id


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


@dataclass
class ConsoleUser:
    """An operator's browser: its own cookie jar, and the CSRF token and one-time form token
    (partners.console.forms) of the last page, which a post sends as the browser would."""

    http: TestClient
    username: str
    csrf: str = ""
    form_token: str = ""
    last: Any = None

    def login(self, password: str = PASSWORD, totp: str = "") -> Any:
        page = self.http.get("/console/login")
        assert page.status_code == 200, page.text
        response = self.http.post("/console/login", data={
            "username": self.username, "password": password, "totp": totp,
            "csrf_token": csrf_of(page.text), "next": "/console/applications"},
            follow_redirects=False)
        if response.status_code == 303:
            self.get("/console/applications")
        return response

    def get(self, path: str) -> Any:
        self.last = self.http.get(path, follow_redirects=False)
        if self.last.status_code == 200 and "csrf_token" in self.last.text:
            self.csrf = csrf_of(self.last.text)
            token = _FORM_TOKEN.search(self.last.text)
            self.form_token = html.unescape(token.group(1)) if token else ""
        return self.last

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = None,
             **kwargs: Any) -> Any:
        form = dict(data or {})
        form.setdefault("csrf_token", self.csrf if csrf is None else csrf)
        if self.form_token:
            form.setdefault("form_token", self.form_token)
        self.last = self.http.post(path, data=form, follow_redirects=False, **kwargs)
        return self.last

    def transition(self, partner_id: str, action: str, reason: str = "checked") -> Any:
        self.get(f"/console/partners/{partner_id}")
        return self.post(f"/console/partners/{partner_id}/transitions",
                         {"action": action, "reason": reason})


def console_user(app: FastAPI, username: str, roles: list[str], *, login: bool = True) -> ConsoleUser:
    make_operator(app, username, roles)
    user = ConsoleUser(TestClient(app, raise_server_exceptions=False), username)
    if login:
        response = user.login()
        assert response.status_code == 303, response.text
    return user


def partner_status(app: FastAPI, partner_id: str) -> str:
    from gateway.tenancy import Partner

    with app.state.database.transaction() as session:
        partner = session.get(Partner, partner_id)
        assert partner is not None
        return partner.status


PARTNER_JOBS = ("webhooks.fan_out", "webhooks.deliver", "usage.flush")


def run_jobs(app: FastAPI, max_rounds: int = 50) -> dict[str, int]:
    """Run this package's jobs until idle (other packages' jobs are theirs to test)."""
    total: dict[str, int] = {}
    for _ in range(max_rounds):
        done = run_all_once(app.state.database, only=list(PARTNER_JOBS))
        for name, count in done.items():
            total[name] = total.get(name, 0) + count
        if not any(done.values()):
            break
    return total


def emit(app: FastAPI, tenant_id: str, type_: str = "payroll_batch.validated", n: int = 1,
         data: dict[str, Any] | None = None) -> list[str]:
    """Business events as a product would publish them (the platform's own API)."""
    ids = []
    with app.state.database.transaction() as session:
        now = clock_for(session, tenant_id).now()
        for i in range(n):
            ids.append(publish(session, tenant_id=tenant_id, type=type_,
                               resource_type=type_.split(".")[0], resource_id=f"res_{i}",
                               data=data or {"n": i, "amount": {"amount": "12.34",
                                                                "currency": "CNY"}},
                               actor="test", at=now).id)
    return ids


# --- a real local webhook receiver --------------------------------------------------------

@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording what it receives.

    mode: "ok" (204), "fail" (500), "slow" (waits until released), "redirect" (302 to
    `redirect_to`)."""

    port: int = 0
    mode: str = "ok"
    redirect_to: str = "http://169.254.169.254/latest/meta-data/"
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                mode = receiver.mode
                if mode == "slow":
                    receiver.release.wait(30)
                with receiver._lock:
                    receiver.received.append({"headers": {k.lower(): v for k, v in
                                                          self.headers.items()},
                                              "body": body, "mode": mode})
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("location", receiver.redirect_to)
                    self.end_headers()
                    return
                self.send_response({"ok": 204, "fail": 500}.get(mode, 204))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog of 5 drops bursts of connects

        server = Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def closed_port() -> tuple[socket.socket, int]:
    """A port that refuses connections: bound, never listening (hold the socket)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
