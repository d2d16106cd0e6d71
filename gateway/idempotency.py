"""`Idempotency-Key` on POST, PUT and PATCH, per client (Stripe's semantics, IETF
draft-ietf-httpapi-idempotency-key). A route takes a key when it has the `idempotency()`
dependency: every PUT and PATCH has it (the key optional there; the published document is held
to that by tests/gateway/test_idempotency.py), and a POST where its route says so.

- The same key with the same request replays the first status and body
  (`Idempotent-Replayed: true`); with a different request it is a 422 problem.
- A second request while the first is still running is a 409 problem.
- Keys expire after 24 hours. Routes that move money require a key (400 without).
- The stored response body is encrypted by the vault (as personal data is).

The key is claimed in a committed transaction of its own (one INSERT .. ON CONFLICT DO NOTHING,
shared with the claims made at the same moment: group commit) before the route runs (so
concurrent duplicates see it), and completed inside the route's transaction, so the stored response
commits atomically with the change it describes. A failure that changed nothing and may
succeed on retry (409, 429, 5xx), or a refusal of who calls (401, 403: the route never ran),
releases the key; another refusal is stored and replayed (Stripe's rule).

Where the endpoint is a plain function (every route but the streamed uploads), the claim is made
on the endpoint's worker thread just before it runs (`gateway.routing.OneHopRoute`), so a request
refused before its route began (an invalid body, a missing scope) stores nothing and may be sent
again with the same key, as Stripe does ("no idempotent result is saved because no API endpoint
began execution"). The streamed uploads claim in the dependency, before they read their body.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

import anyio
from fastapi import Request
from sqlalchemy import String, Text, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.responses import Response

from gateway import clock
from gateway.auth import authenticate
from gateway.batching import GroupCommit
from gateway.bulk import driver_insert_returning, session_execute_later
from gateway.context import add_finalizer, before_endpoint, state
from gateway.db import Base, Database
from gateway.errors import BadRequest, Conflict, Problem, ValidationFailed
from gateway.pii import SEALED_PREFIX, decrypt, encrypt

TTL = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=2)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Refusals that release the key rather than store the answer: the call may succeed when sent
# again (a conflict, a rate limit), or it never reached the route (who calls, with which scopes:
# a client granted the scope afterwards gets its call done, not the old refusal replayed).
RETRYABLE = {401, 403, 409, 429}


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    client_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(12))
    status_code: Mapped[int | None]
    content_type: Mapped[str | None] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


def _seal(body: bytes) -> str:
    """A response body as stored: encrypted by the vault. Responses can carry what is kept
    encrypted elsewhere (a webhook endpoint's signing secret), and a key lives for a day."""
    return encrypt(body.decode(errors="replace"))


def _unseal(stored: str | None) -> str:
    if not stored:
        return ""
    # A body stored before bodies were sealed replays as it is until its key expires: a JSON
    # body never begins like a sealed one.
    return decrypt(stored) if stored.startswith(SEALED_PREFIX) else stored


class IdempotentReplay(Exception):
    """Raised before the route runs: answer with the stored response."""

    def __init__(self, record: Any) -> None:
        # Copied out: the claiming transaction is rolled back as this propagates.
        self.status = record.status_code or 200
        self.body = _unseal(record.body)
        self.content_type = record.content_type or "application/json"


def replay_response(exc: IdempotentReplay) -> Response:
    return Response(content=exc.body.encode(), status_code=exc.status,
                    media_type=exc.content_type, headers={"Idempotent-Replayed": "true"})


class _Claims:
    """Claims made at the same moment share one committed transaction (group commit): every
    keyed POST makes one, and alone each cost a transaction and its commit."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.batches: GroupCommit[dict[str, Any], bool] = GroupCommit(self._store)

    def _store(self, rows: list[dict[str, Any]]) -> list[bool]:
        """True for each row stored; False for a key held already (a duplicate in the same
        batch included: the first of them is stored). Each claim stands alone, so the batch
        need not be one transaction: on PostgreSQL a statement of up to 16 claims commits by
        itself, one round trip (`Database.driver_statement`)."""
        dialect, table = self.database.engine.dialect, IdempotencyRecord.__table__
        with self.database.driver_statement() as cursor:
            stored = set(driver_insert_returning(dialect, cursor, table, rows,
                                                 ("client_id", "key"), skip_conflicts=True))
        results = []
        for row in rows:
            claimed = (row["client_id"], row["key"])
            results.append(claimed in stored)
            stored.discard(claimed)  # a second equal key in the same batch is held already
        return results


_claims: WeakKeyDictionary[Database, _Claims] = WeakKeyDictionary()
_claims_lock = threading.Lock()


def _claims_of(database: Database) -> _Claims:
    with _claims_lock:
        claims = _claims.get(database)
        if claims is None:
            claims = _claims[database] = _Claims(database)
        return claims


def _claim(database: Database, client_id: str, key: str, request_hash: str) -> None:
    """Claim the key in a committed transaction (this runs before every keyed POST): one
    INSERT that does nothing on a conflict, on the driver, in a transaction shared with the
    claims made at the same moment; only when the key is held already, a read of the record
    that holds it."""
    now = clock.utcnow()
    table = IdempotencyRecord.__table__
    values = {"client_id": client_id, "key": key, "request_hash": request_hash,
              "state": "in_progress", "created_at": now, "expires_at": now + TTL}
    if _claims_of(database).batches.submit(values):
        return
    where = (table.c.client_id == client_id, table.c.key == key)
    with database.engine.begin() as conn:
        insert = ((sqlite_insert if database.is_sqlite else postgresql_insert)(table)
                  .values(**values).on_conflict_do_nothing().returning(table.c.key))
        record = conn.execute(select(table).where(*where)).one_or_none()
        if record is not None:
            stale = record.expires_at <= now or (
                record.state == "in_progress" and record.created_at <= now - ABANDONED_AFTER)
            if stale:
                conn.execute(delete(table).where(*where))
                record = None
        if record is None:
            # Expired or abandoned (or released since the first insert): claim afresh.
            if conn.execute(insert).first() is not None:
                return
            raise Conflict("A request with this Idempotency-Key is still being processed.",
                           code="idempotency_key_in_progress", headers={"Retry-After": "1"})
        if record.request_hash != request_hash:
            raise ValidationFailed(
                "This Idempotency-Key was used with a different request.",
                code="idempotency_key_reused")
        if record.state == "in_progress":
            raise Conflict("A request with this Idempotency-Key is still being processed.",
                           code="idempotency_key_in_progress",
                           headers={"Retry-After": "1"})
        raise IdempotentReplay(record)


# The completion, on the driver in the request's own transaction: a Core UPDATE built per call
# cost about a quarter of a millisecond of CPU, several times the statement's own.
_COMPLETE_SQL = ("UPDATE idempotency_keys SET state = 'completed', status_code = :status, "
                 "body = :body, content_type = :ctype WHERE client_id = :cid AND key = :key")


def _complete(client_id: str, key: str, content_type: str) -> Callable[[Session, int, bytes], None]:
    def finalize(session: Session, status: int, body: bytes) -> None:
        session_execute_later(session, _COMPLETE_SQL, {  # sent with the COMMIT
            "status": status, "body": _seal(body), "ctype": content_type,
            "cid": client_id, "key": key})
    return finalize


def _after_failure(database: Database, client_id: str, key: str) -> Callable[[int, bytes, str], None]:
    def record(status: int, body: bytes, content_type: str) -> None:
        # Built only when a request failed: every keyed POST registers this, few call it.
        table = IdempotencyRecord.__table__
        where = (table.c.client_id == client_id, table.c.key == key)
        with database.engine.begin() as conn:
            if status >= 500 or status in RETRYABLE:
                conn.execute(delete(table).where(*where))
            else:
                # A refused request is answered the same way again (Stripe's rule).
                conn.execute(update(table).where(*where).values(
                    state="completed", status_code=status, body=_seal(body),
                    content_type=content_type))
    return record


def _route_scopes(request: Request) -> frozenset[str]:
    """The scopes the request's route requires (`gateway.auth.require_scope`), found once per
    route in its dependency tree."""
    route = request.scope.get("route")
    known = getattr(route, "_required_scopes", None)
    if known is None:
        found: set[str] = set()
        pending = list(getattr(getattr(route, "dependant", None), "dependencies", ()))
        while pending:
            dependant = pending.pop()
            found.update(getattr(dependant.call, "required_scopes", ()))
            pending.extend(dependant.dependencies)
        known = frozenset(found)
        if route is not None:
            route._required_scopes = known  # type: ignore[union-attr]
    return known


def idempotency(required: bool = False) -> Callable[[Request], Awaitable[None]]:
    """A route dependency. `required=True` for routes that move money."""

    async def dependency(request: Request) -> None:
        raw = request.headers.get("idempotency-key")
        if raw is None and not required:
            return
        # Who calls is checked first: a call without a valid token is a 401 whatever its key.
        principal = await authenticate(request)
        if raw is None:
            # What may call at all is answered first: a client without the route's scopes
            # gets the scope dependency's 403, not this 400.
            if not _route_scopes(request) <= principal.scopes:
                return
            raise BadRequest("This call moves money: send an Idempotency-Key header.",
                             code="idempotency_key_required")
        if not _KEY.match(raw):
            raise BadRequest("Idempotency-Key must be 1-255 visible ASCII characters.",
                             code="invalid_idempotency_key")
        body = await request.body()
        digest = hashlib.sha256()
        # The path and query as the server received them (the scope's, not a parsed URL: a
        # URL object per call is a tenth of this dependency's work on the event loop).
        scope = request.scope
        digest.update(request.method.encode() + b" "
                      + (scope.get("root_path", "") + scope["path"]).encode() + b"?"
                      + scope.get("query_string", b"") + b"\n")
        # The same bytes as another media type (a CSV upload sent as JSON) are another request.
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        digest.update(media_type.encode() + b"\n")
        digest.update(body)
        database: Database = request.app.state.database
        client_id, request_hash = principal.client_id, digest.hexdigest()

        def claim() -> None:
            _claim(database, client_id, raw, request_hash)
            # Only the request that holds the key completes or releases it.
            add_finalizer(request, _complete(client_id, raw, "application/json"))
            state(request).setdefault("after_failure", []).append(
                _after_failure(database, client_id, raw))

        # On the endpoint's own worker thread, just before it, where the route allows (every
        # router of the platform's): a hand-off less. Either way the claim is committed before
        # the route runs; a request refused before that (its body invalid, say) stores nothing.
        if not before_endpoint(request, claim):
            await anyio.to_thread.run_sync(claim)

    dependency.idempotency_required = required  # type: ignore[attr-defined]  # for the document
    return dependency


def documented_header(calls: Iterable[Any]) -> dict[str, Any] | None:
    """The `Idempotency-Key` header parameter of the OpenAPI document for an operation whose
    dependencies (`calls`) include `idempotency()`, else None. The dependency reads the header
    itself (so that a missing required key is this module's 400, not a framework 422), so
    FastAPI does not know to document it."""
    required = next((r for call in calls
                     if (r := getattr(call, "idempotency_required", None)) is not None), None)
    if required is None:
        return None
    return {
        "name": "Idempotency-Key", "in": "header", "required": required,
        "description": (
            "Makes the call safe to retry: the same key with the same request within 24 hours "
            "replays the first status and body (`Idempotent-Replayed: true`); with another "
            "request it is a 422 `idempotency_key_reused`; while the first is still running, a "
            "409 `idempotency_key_in_progress`. "
            + ("Required: this call moves money, or commits to move it (400 "
               "`idempotency_key_required` without)." if required else "Optional.")),
        "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                   "pattern": "^[\\x21-\\x7e]+$"},
    }


REPLAYED_HEADER = {"Idempotent-Replayed": {
    "description": "`true` when this is the stored response of an earlier request with the "
                   "same `Idempotency-Key`",
    "schema": {"type": "string", "enum": ["true"]}}}


def purge_expired(session: Session) -> int:
    result = session.execute(delete(IdempotencyRecord).where(
        IdempotencyRecord.expires_at <= clock.utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["idempotency", "IdempotentReplay", "replay_response", "Problem", "select"]
