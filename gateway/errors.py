"""RFC 9457 problem details: one exception tree and one mapping to responses.

Every domain error subclasses `Problem`, carrying its HTTP status and a stable snake_case
code. Handlers here turn it, framework errors and unexpected exceptions into
`application/problem+json`; nothing else in the code base shapes an error response.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import traceback
from typing import Any, ClassVar

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import NoResultFound, StatementError
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gateway import patterns
from gateway.db import note_connection_lost

log = logging.getLogger("quanlian.errors")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:quanlian:problem:"


class FieldError(BaseModel):
    field: str = Field(description="Path of the bad field, e.g. `body.amount.amount`")
    message: str
    code: str | None = None


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error response carries them. A problem may carry
    extension members beyond those listed (RFC 9457, 3.2), named by its `code`: for example
    `current_status` and `requested_status` on a state conflict, `available_at` on a
    statement not ready yet, `known_types` on an unknown type."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["urn:quanlian:problem:validation_failed"])
    title: str
    status: int
    detail: str | None = None
    code: str = Field(description="Stable snake_case code to branch on")
    instance: str | None = None
    request_id: str | None = Field(
        None, description="The platform's id of the call (`req_…`), as in `X-Request-Id`",
        examples=["req_01M99MQH2B28WP50GK4JNFY634"])
    errors: list[FieldError] | None = Field(
        None, description="Each field that is not valid (`validation_failed`)")


class Problem(Exception):
    """Base of every error the platform reports to a caller."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        if status is not None:
            self.status = status  # type: ignore[misc]
        if code is not None:
            self.code = code  # type: ignore[misc]
        if title is not None:
            self.title = title  # type: ignore[misc]
        self.extra = extra or {}

    def body(self, request_id: str | None = None, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if request_id:
            body["request_id"] = request_id
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class BadRequest(Problem):
    status, code, title = 400, "bad_request", "Bad request"


class ValidationFailed(Problem):
    status, code, title = 422, "validation_failed", "The request is not valid"


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class Unauthorized(Problem):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Forbidden"


class PayloadTooLarge(Problem):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(Problem):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class TooManyRequests(Problem):
    status, code, title = 429, "rate_limited", "Too many requests"


class ServiceUnavailable(Problem):
    status, code, title = 503, "service_unavailable", "Service unavailable"


# PostgreSQL: numeric_value_out_of_range, datetime_field_overflow, interval_field_overflow.
_OUT_OF_RANGE_SQLSTATES = frozenset({"22003", "22008", "22015"})
# A unique key taken, or a referenced row gone, after the request checked: PostgreSQL's
# unique_violation and foreign_key_violation, SQLite's matching extended codes.
_CONFLICT_SQLSTATES = frozenset({"23505", "23503"})
_SQLITE_CONFLICTS = frozenset({sqlite3.SQLITE_CONSTRAINT_UNIQUE,
                               sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
                               sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY})


def database_problem(exc: BaseException, database: Any = None) -> Problem | None:
    """The problem to answer when the database, not the request, failed; None for any other
    error (a bug stays a 500). Nothing was written: the transaction rolled back. Given the
    process's `Database`, a lost connection also has its pool checked before the next use.

    - A transaction PostgreSQL rolled back for a concurrent one (SQLSTATE class 40: a
      serialization failure or a deadlock), or SQLite still busy after its wait: 409
      `concurrent_update`, and the same request may be sent again.
    - A row the request read, changed or deleted by a concurrent one before it wrote (a key
      taken, a referenced row gone, an UPDATE that found its row deleted, a row re-read under
      its lock or one its rows refer to found gone (`gateway.db.referenced`), as a sandbox
      reset does): also 409 `concurrent_update`. Routes check what they refer to before
      writing, so the database refuses such a write only when something changed in between.
    - A connection lost or refused (a restart, a fail-over, a network fault): 503 with
      `Retry-After`.
    - Input the database cannot hold (a number or date beyond its range, text too long for its
      column, text with NUL): 422. Routes bound their input where they can, with clearer
      messages; this is the net under them.
    """
    if isinstance(exc, StaleDataError | ObjectDeletedError | NoResultFound):
        return concurrent_update()
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, OverflowError):
        # Raised while a value was bound (SQLAlchemy wraps it in a StatementError): a date
        # that leaves the calendar when turned to UTC, as 0001-01-01T00:00+01:00 does.
        return _out_of_range()
    if isinstance(orig, psycopg.DataError | sqlite3.DataError) and "NUL (0x00)" in str(orig):
        # PostgreSQL's text cannot hold U+0000 (refused unsent; SQLite refuses it alike,
        # gateway.db.NUL_MESSAGE).
        return ValidationFailed("Text in the request may not contain NUL (U+0000) characters.",
                                code="nul_character")
    if isinstance(orig, psycopg.DataError):
        if orig.sqlstate in _OUT_OF_RANGE_SQLSTATES:
            return _out_of_range()
        if orig.sqlstate == "22001":  # string_data_right_truncation
            return ValidationFailed("A text in the request is longer than the platform keeps.",
                                    code="value_too_long")
        return None
    if isinstance(orig, psycopg.IntegrityError):
        return concurrent_update() if orig.sqlstate in _CONFLICT_SQLSTATES else None
    if isinstance(orig, sqlite3.IntegrityError):
        code = getattr(orig, "sqlite_errorcode", None)
        return concurrent_update() if code in _SQLITE_CONFLICTS else None
    if isinstance(orig, sqlite3.OperationalError):
        primary = (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return concurrent_update()
        if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN):
            return _database_unavailable()
        return None  # "no such table" and the like are bugs, not outages
    if isinstance(orig, psycopg.Error) and (getattr(orig, "sqlstate", None) or "").startswith("40"):
        return concurrent_update()
    if isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
        if database is not None:
            note_connection_lost(database.engine)
        return _database_unavailable()
    return None


def _out_of_range() -> Problem:
    return ValidationFailed("A number or date in the request is out of range.",
                            code="value_out_of_range")


def concurrent_update() -> Problem:
    """The 409 for work a concurrent request's changes made fail; nothing was written."""
    return Conflict("A concurrent request changed the same data; retry.", code="concurrent_update")


def _database_unavailable() -> Problem:
    return ServiceUnavailable("The database is unavailable; retry.", headers={"Retry-After": "1"})


class InternalError(Problem):
    status, code, title = 500, "internal_error", "Internal error"


_STATUS_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_failed", "The request is not valid"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal error"),
    503: ("service_unavailable", "Service unavailable"),
}


# The router's own 404 (no route has the path) and 405 (none has the method), as Starlette words
# them; a route raising its own 404 says what was not found.
_NO_ROUTE = frozenset({(404, "Not Found"), (405, "Method Not Allowed")})


def problem_response(problem: Problem, request_id: str | None = None) -> Response:
    headers = dict(problem.headers)
    return Response(
        content=json.dumps(problem.body(request_id), ensure_ascii=False, separators=(",", ":")),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def at_oauth_endpoint(problem: Problem, path: str) -> Problem:
    """A refusal at an OAuth endpoint made before the endpoint ran (a method it does not
    allow, a body too large) is an RFC 6749 error too, as the endpoint's own are: an OAuth
    client library reads `error`, and nothing there is cached."""
    if path.startswith("/oauth/") and 400 <= problem.status < 500 and "error" not in problem.extra:
        problem.extra["error"] = "invalid_request"
        problem.extra["error_description"] = problem.detail or problem.title
        problem.headers["Cache-Control"] = "no-store"
    return problem


def problem_for_status(status: int, detail: str | None = None) -> Problem:
    code, title = _STATUS_CODES.get(status, ("http_error", "HTTP error"))
    return Problem(detail, status=status, code=code, title=title)


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_message(err: Any) -> str:
    """What a user reads for one of pydantic's validation errors."""
    if err.get("type") == "string_pattern_mismatch":
        # Words, not the regular expression (which the document publishes).
        return patterns.mismatch_message(str((err.get("ctx") or {}).get("pattern", "")))
    message = str(err.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


# What pydantic says of a JSON body that was not read as JSON (FastAPI reads a body as JSON only
# when it is labelled so): the body as a whole is not an object or a list.
_NOT_A_JSON_BODY = {"model_attributes_type", "dict_type", "list_type", "model_type"}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def validation_problem(exc: RequestValidationError, content_type: str | None = None) -> Problem:
    """The problem for a request FastAPI could not validate. `content_type` is the request's
    `Content-Type`: a body labelled as something other than JSON, or not labelled at all
    (`requests.post(url, data=json.dumps(...))`), where JSON is expected, is a 415 saying so,
    not a field error about "a valid dictionary". An empty body is no body: a route whose body
    is optional takes it unlabelled."""
    raw = exc.errors()
    if not (content_type and _is_json(content_type)) and any(
            tuple(err.get("loc", ())) == ("body",) and err.get("type") in _NOT_A_JSON_BODY
            for err in raw):
        sent = (f"not {content_type.split(';', 1)[0].strip()[:100]}" if content_type
                else "the request had no Content-Type")
        return UnsupportedMediaType(
            f"This call takes a JSON body: send it with Content-Type: application/json ({sent}).")
    errors = []
    malformed = False
    for err in raw:
        if err.get("type") == "json_invalid":
            # Its location is the body and the character offset, which is no field.
            malformed = True
            where = _loc(err.get("loc", ())[1:]) or "0"
            reason = str((err.get("ctx") or {}).get("error") or "JSON decode error")
            errors.append({"field": "body", "message": f"{reason} (at character {where})"
                           if where != "0" else reason, "code": "json_invalid"})
            continue
        errors.append({"field": _loc(err.get("loc", ())), "message": validation_message(err),
                       "code": err.get("type")})
    if malformed:
        return BadRequest("The request body is not valid JSON.", code="malformed_json",
                          title="Malformed JSON", errors=errors)
    return ValidationFailed(
        f"{len(errors)} field(s) are not valid.", errors=errors
    )


def install_error_handlers(app: FastAPI) -> None:
    """One mapping from exceptions to problem responses."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(exc, _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(validation_problem(exc, request.headers.get("content-type")),
                                _request_id(request))

    from gateway.auth import count_call_of_nobody

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if (exc.status_code, detail) in _NO_ROUTE:
            # The router's own refusals: no route, no dependency ran. Without a valid token it
            # is a refused call of nobody, counted per address, and a 429 once the address is
            # over (gateway.auth.count_call_of_nobody).
            try:
                count_call_of_nobody(request)
            except Problem as refused:
                return problem_response(at_oauth_endpoint(refused, request.url.path),
                                        _request_id(request))
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed on {request.url.path}."
        problem = problem_for_status(exc.status_code, detail)
        problem.headers.update(getattr(exc, "headers", None) or {})
        return problem_response(at_oauth_endpoint(problem, request.url.path),
                                _request_id(request))

    from gateway.idempotency import IdempotentReplay, replay_response

    @app.exception_handler(IdempotentReplay)
    async def _replay(request: Request, exc: IdempotentReplay) -> Response:
        return replay_response(exc)

    from sqlalchemy.exc import DBAPIError

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        # A number (or a date reached from one) beyond what the calendar or the code can hold.
        # A routine 422, so no traceback: where it was raised is enough to bound that input
        # with a clearer message.
        rid = _request_id(request)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        log.warning("out-of-range input (%s) at %s", exc,
                    f"{frame.filename}:{frame.lineno}" if frame else "unknown",
                    extra={"request_id": rid})
        return problem_response(_out_of_range(), rid)

    # A store the platform depends on failed the call: the database, or the configured Redis
    # where a caller did not map it itself (gateway/redis.py). An outage is a 503 with
    # Retry-After and one log line; anything else stays a 500.
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    from gateway.redis import redis_problem

    @app.exception_handler(StatementError)  # DBAPIError's base: a value that failed to bind
    @app.exception_handler(DBAPIError)
    @app.exception_handler(psycopg.Error)
    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(StaleDataError)
    @app.exception_handler(ObjectDeletedError)
    @app.exception_handler(NoResultFound)
    @app.exception_handler(RedisError)
    @app.exception_handler(StorageError)
    async def _store_failed(request: Request, exc: Exception) -> Response:
        redis = isinstance(exc, (RedisError, StorageError))
        problem = (redis_problem(exc) if redis
                   else database_problem(exc, request.app.state.database))
        if problem is None:
            return await _unexpected(request, exc)
        rid = _request_id(request)
        log.warning("%s error %s answered with %s", "Redis" if redis else "database",
                    exc.__class__.__name__, problem.code, extra={"request_id": rid})
        return problem_response(problem, rid)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        rid = _request_id(request)
        log.exception("unhandled error", extra={"request_id": rid})
        return problem_response(
            InternalError("An unexpected error occurred. Quote the request id to support."), rid
        )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem responses for a route."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        _, title = _STATUS_CODES.get(status, ("http_error", "Error"))
        out[status] = {
            "description": title,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
    return out
