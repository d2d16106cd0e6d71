"""The edge: one pure-ASGI middleware around every request.

It mints the request id (the client's own ids are played back beside it,
`gateway.correlation`), enforces the body limit while hashing the body, buffers the
response, then closes the request's unit of work: on success the finalizers (evidence entry,
idempotency record) are added and the transaction commits before a byte is sent (from the
route's own worker thread where the route allows, `close_in_thread`); on failure it rolls
back. Then it adds security headers and the evidence receipt, logs one JSON line and counts
metrics. An exception that escapes the app becomes a generic 500 problem.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import anyio
from sqlalchemy.exc import NoResultFound, StatementError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import admission, clock
from gateway.context import CLOSE_IN_THREAD, CallRecord, bind, state, unbind
from gateway.correlation import correlation
from gateway.errors import (
    InternalError,
    PayloadTooLarge,
    Problem,
    at_oauth_endpoint,
    concurrent_update,
    database_problem,
)
from gateway.ids import new_id
from gateway.metrics import observe_request
from gateway.routing import route_template

log = logging.getLogger("quanlian.access")
errlog = logging.getLogger("quanlian.errors")

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# An answer to a caller with credentials, or to a write, is the caller's own (balances, a
# client secret once shown, a signing secret): no cache keeps it unless the route says so.
_NO_STORE = (b"cache-control", b"no-store")
_CREDENTIALS = (b"authorization", b"cookie")
_FRAME_DENY = (b"x-frame-options", b"DENY")


# Commits and rollbacks run on threads of their own, where the route's own thread did not
# commit (gateway.routing.OneHopRoute). Every other thread may be waiting for the database's
# write lock (SQLite has one writer; a request holds it from its first write to its commit),
# and the holder's commit must never wait for one of those threads to come free.
_FINISHING = anyio.CapacityLimiter(16)
# After-failure hooks (releasing or completing an idempotency key) are writes in their own
# transaction, after the request has left admission (gateway/admission.py): on SQLite they wait
# for the writer. On the worker pool they could take the threads kept free for lock holders,
# and among the commits they could take the threads of the commit they wait for.
_AFTER_FAILURE = anyio.CapacityLimiter(4)


_CLOSED = "closed_in_thread"
_CORRELATION = "correlation"


class _TooLarge(Exception):
    pass


def _commit(app: Any, st: dict[str, Any], session: Any, record: CallRecord,
            body: bytes) -> str | None:
    """Close a successful request's unit of work, on a worker thread: its finalizers (the
    idempotency record), its evidence entry, the commit. Returns the entry's receipt; a
    database failure is raised as the problem that answers it (the session is closed either
    way)."""
    recorder = getattr(app.state, "call_recorder", None)
    entry = recorder.call_entry(record) if recorder and recorder.wants(record) else None
    try:
        for fn in st.get("finalizers", ()):
            fn(session, record.status, body)
        if entry is not None:
            recorder.add(session, entry)
        session.commit()
    except (StatementError, StaleDataError, ObjectDeletedError, NoResultFound) as exc:
        errlog.warning("commit failed: %s", exc.__class__.__name__,
                       extra={"request_id": record.request_id})
        raise (database_problem(exc, app.state.database) or concurrent_update()) from None
    finally:
        st["db_session"] = None
        session.close()
    return entry.receipt if entry is not None else None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _upload_allowed(scope: Scope) -> bool:
    ctype = (_header(scope, b"content-type") or b"").lower()
    return ctype.startswith((b"multipart/form-data", b"text/csv", b"application/octet-stream"))


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = state(scope)
        token = bind(st)
        try:
            await self._serve(scope, receive, send, st)
        finally:
            unbind(token)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, st: dict[str, Any]) -> None:
        started = time.perf_counter()
        started_at = clock.utcnow()
        request_id = new_id("req")
        st["request_id"] = request_id
        st[_CORRELATION] = correlation(scope["headers"])
        limit = self.max_upload if _upload_allowed(scope) else self.max_body

        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await self._send_problem(scope, send, PayloadTooLarge(
                    f"The request body exceeds {limit} bytes."), request_id, started)
                return

        digest = hashlib.sha256()
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                received += len(body)
                if received > limit:
                    raise PayloadTooLarge(f"The request body exceeds {limit} bytes.")
                digest.update(body)
            return message

        def call_record(status: int | None = None, body: bytes | None = None) -> CallRecord:
            """What the evidence log keeps of this call (its entry), once it is answered."""
            status = int(start_message["status"]) if status is None else status  # type: ignore[index]
            body = b"".join(chunks) if body is None else body
            record = CallRecord(
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
                route=route_template(scope),
                status=status,
                request_sha256=digest.hexdigest(),
                response_sha256=hashlib.sha256(body).hexdigest(),
                started_at=started_at,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
            principal = st.get("principal")
            if principal is not None:
                record.client_id = principal.client_id
                record.partner_id = principal.partner_id
                record.tenant_id = principal.tenant_id
                record.environment = principal.environment
            return record

        def close_in_thread(status: int, body: bytes) -> bool:
            """Commit the request's transaction from the route's own worker thread, with the
            response it will send (`gateway.routing.OneHopRoute`): True when done; False when
            there is nothing to commit, and the edge records the call as usual."""
            if status >= 400:
                return False
            session = st.get("db_session")
            if session is None and st.get("finalizers"):
                session = st["db_session"] = scope["app"].state.database.sessions()
            if session is None:
                return False
            record = call_record(status, body)
            st[_CLOSED] = (record, _commit(scope["app"], st, session, record, body))
            return True

        st[CLOSE_IN_THREAD] = close_in_thread
        start_message: Message | None = None
        chunks: list[bytes] = []

        async def buffered_send(message: Message) -> None:
            nonlocal start_message
            if message["type"] == "http.response.start":
                start_message = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            try:
                await self.app(scope, limited_receive, buffered_send)
            finally:
                admission.leave(st)
        except Problem as exc:  # raised while reading the body
            start_message, chunks = None, []
            await self._rollback(st)
            await self._after_failure(st, exc.status, b"")
            await self._send_problem(scope, send, exc, request_id, started)
            return
        except Exception:
            errlog.exception("unhandled error", extra={"request_id": request_id})
            start_message, chunks = None, []

        if start_message is None:
            await self._rollback(st)
            await self._after_failure(st, 500, b"")
            await self._send_problem(scope, send, InternalError(
                "An unexpected error occurred. Quote the request id to support."),
                request_id, started)
            return

        status = int(start_message["status"])
        body = b"".join(chunks)
        headers: list[tuple[bytes, bytes]] = list(start_message.get("headers", []))
        closed = st.pop(_CLOSED, None)
        if closed is not None and closed[0].status != status:
            errlog.error("answered %s after committing a %s", status, closed[0].status,
                         extra={"request_id": request_id})
            closed = None
        if closed is not None:
            record, receipt = closed  # the route's thread committed (close_in_thread)
        else:
            record = call_record()
            try:
                receipt = await self._close_unit_of_work(scope, st, record, body)
            except Problem as exc:
                await self._after_failure(st, exc.status, b"")
                await self._send_problem(scope, send, exc, request_id, started)
                return
        if receipt:
            headers.append((b"evidence-entry", receipt.encode()))
        await self._send(scope, send, status, headers, body, request_id, started, record)

    async def _close_unit_of_work(
        self, scope: Scope, st: dict[str, Any], record: CallRecord, body: bytes
    ) -> str | None:
        """Commit the request's transaction with its evidence, or roll back and record apart."""
        app = scope["app"]
        session = st.get("db_session")
        if session is None and st.get("finalizers") and record.status < 400:
            session = st["db_session"] = app.state.database.sessions()
        if session is not None:
            if record.status < 400:
                return await anyio.to_thread.run_sync(
                    _commit, app, st, session, record, body, limiter=_FINISHING)
            await self._rollback(st)
        await self._after_failure(st, record.status, body)
        recorder = getattr(app.state, "call_recorder", None)
        if recorder is not None and recorder.wants(record):
            entry = recorder.call_entry(record)
            await recorder.record_detached(entry)
            return entry.receipt
        return None

    async def _after_failure(self, st: dict[str, Any], status: int, body: bytes) -> None:
        hooks = st.pop("after_failure", None)
        if not hooks or status < 400:
            return
        for hook in hooks:
            try:
                await anyio.to_thread.run_sync(hook, status, body, "application/problem+json",
                                               limiter=_AFTER_FAILURE)
            except Exception:
                errlog.exception("after-failure hook failed")

    async def _rollback(self, st: dict[str, Any]) -> None:
        session = st.get("db_session")
        if session is None:
            return
        st["db_session"] = None

        def rollback() -> None:
            try:
                session.rollback()
            finally:
                session.close()

        await anyio.to_thread.run_sync(rollback, limiter=_FINISHING)

    async def _send_problem(self, scope: Scope, send: Send, problem: Problem,
                            request_id: str, started: float) -> None:
        problem = at_oauth_endpoint(problem, scope["path"])
        body = json.dumps(problem.body(request_id), ensure_ascii=False,
                          separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/problem+json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
        await self._send(scope, send, problem.status, headers, body, request_id, started, None)

    async def _send(self, scope: Scope, send: Send, status: int,
                    headers: list[tuple[bytes, bytes]], body: bytes, request_id: str,
                    started: float, record: CallRecord | None) -> None:
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"x-request-id", request_id.encode()))
        st = state(scope)
        ids = st[_CORRELATION]
        headers += ids.headers()
        present = {k for k, _ in headers}
        for key, value in SECURITY_HEADERS:
            if key not in present:
                headers.append((key, value))
        if b"cache-control" not in present and not scope["path"].startswith("/assets/") and (
                scope["method"] not in ("GET", "HEAD")
                or any(k in _CREDENTIALS for k, _ in scope["headers"])):
            headers.append(_NO_STORE)
        ctype = dict(headers).get(b"content-type", b"")
        if not ctype.startswith(b"text/html") and b"content-security-policy" not in present:
            headers.append(_API_CSP)
            if b"x-frame-options" not in present:
                headers.append(_FRAME_DENY)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        latency = (time.perf_counter() - started)
        route = route_template(scope)
        observe_request(scope["method"], route, status, latency)
        if record is not None:
            # Call observers (e.g. partners' usage counters): cheap, in-memory, never raise.
            for observe in getattr(scope["app"].state, "call_observers", ()):
                try:
                    observe(record)
                except Exception:
                    errlog.exception("call observer failed")
        if not log.isEnabledFor(logging.INFO):
            return
        principal = st.get("principal")
        log.info(json.dumps({
            "request_id": request_id, "method": scope["method"], "route": route,
            "status": status, "latency_ms": round(latency * 1000, 2),
            "client_id": getattr(principal, "client_id", None),
            "client_request_id": ids.client_request_id, "interaction_id": ids.interaction_id,
        }, separators=(",", ":")))
