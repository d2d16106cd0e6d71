"""The application factory: the one place that wires settings, database, keys and routers."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from gateway import admission, docs_ui, pii, solving
from gateway import clock as clock_module
from gateway.db import Database
from gateway.errors import ProblemDetails, install_error_handlers
from gateway.keys import PlatformKeys
from gateway.middleware import EdgeMiddleware
from gateway.query_params import STRICT_PREFIXES
from gateway.routing import OneHopRoute
from gateway.settings import Settings, get_settings
from gateway.startup import prepare

# Every package's tables, so that metadata (and Alembic) sees the whole schema.
MODEL_MODULES: list[str] = [
    "gateway.tenancy",
    "gateway.events",
    "gateway.oauth.models",
    "gateway.idempotency",
    "gateway.evidence.models",
    "gateway.keyguard",
    "partners.models",
    "products.accounts.models",
    "products.chain_credit.models",
    "products.payroll.models",
    "products.collection.models",
    "products.egov.models",
]

# Routers in the order they appear in the API docs.
ROUTERS: list[str] = [
    "gateway.ratelimit",
    "gateway.health",
    "gateway.oauth.router",
    "gateway.me",
    "gateway.evidence.router",
    "sandbox.router",
    "partners.router",
    "products.accounts.router",
    "products.chain_credit.router",
    "products.payroll.router",
    "products.collection.router",
    "products.egov.router",
]

# Objects started with the app and stopped with it (background threads).
LIFECYCLE: list[str] = [
    "gateway.jobs",
    "partners.usage",
]

API_DESCRIPTION = """
Quanlian is a bank's open API platform for ecosystems: chain credit, payroll disbursement,
collection and settlement, and e-government payments with supervised escrow.

Authenticate with OAuth 2.0 client credentials (`private_key_jwt`, or a client secret in the
sandbox) at the token endpoint advertised in `/.well-known/oauth-authorization-server`.
Errors are RFC 9457 problem details with a stable `code`.
"""


def api_description() -> str:
    """The API's description, with the sandbox's magic values (their one table each)."""
    from products.accounts import magic
    from products.payroll import receiving

    return (API_DESCRIPTION
            + "\n## Sandbox magic values\n\nIn sandbox tenants only, these inputs force an "
              "outcome, so that every path can be tried. Payments (transfers, collection "
              "debits and payouts, payroll items):\n\n" + magic.markdown(magic.table())
            + "\n\nPayroll items:\n\n" + magic.markdown(receiving.table()) + "\n")


def import_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)


def _operation_id(route: APIRoute) -> str:
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name.replace('_', '-')}"


def create_app(settings: Settings | None = None, *, database: Database | None = None,
               clock: clock_module.Clock | None = None, start_background: bool = True,
               startup_checks: bool = True) -> FastAPI:
    """The platform's application. With `startup_checks` (the default; every entry point of a
    deployment) the database must be at this release's schema and the keys those its data was
    written under (`gateway.startup.prepare`), or `StartupRefused` is raised before anything is
    written; without them (tests on throwaway databases, the OpenAPI document) keys are loaded,
    or generated, as they are."""
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import_models()
    if clock is not None:
        clock_module.set_base_clock(clock)
    owned = database is None
    database = database or Database(settings.effective_database_url)
    if startup_checks:
        try:
            keys = prepare(settings, database)
        except BaseException:
            if owned:
                database.dispose()
            raise
    else:
        keys = PlatformKeys(settings.data_dir, settings.encryption_key)
    pii.set_vault(pii.Vault(keys))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        admission.configure(app.state, settings.worker_threads)
        started = []
        if start_background:
            for name in LIFECYCLE:
                module = importlib.import_module(name)
                started.append(module.start(app))
        try:
            yield
        finally:
            for handle in reversed(started):
                handle.stop()

    solving.install()
    app = FastAPI(
        title="Quanlian API",
        version="1.0.0",
        description=api_description(),
        lifespan=lifespan,
        dependencies=[Depends(admission.admit)],
        generate_unique_id_function=_operation_id,
        # /docs is served from the platform's own copy of Swagger UI (gateway.docs_ui), not
        # FastAPI's page, which loads it from a CDN; no ReDoc, no OAuth redirect page.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        # A path with a trailing slash (or without one) that matches no route is the 404
        # problem, not Starlette's 307 to the other spelling: that redirect's Location is built
        # from the request's Host header and scheme (a client that follows it re-sends a POST,
        # body and all, to whatever host the header named, over http behind a TLS proxy).
        redirect_slashes=False,
        # The platform observes itself through /metrics and its access log; FastAPI's own
        # OpenTelemetry hooks would only look for a provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False,
                   "operation_spans": False},
    )
    # Routes added to the application itself (not through a platform router) run as the
    # platform's do: one hand-off to a worker thread for a plain endpoint.
    app.router.route_class = OneHopRoute
    app.state.settings = settings
    app.state.database = database
    app.state.keys = keys
    app.state.call_recorder = None
    install_error_handlers(app)
    docs_ui.setup(app)
    for name in ROUTERS:
        module = importlib.import_module(name)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)
        if hasattr(module, "router"):
            app.include_router(module.router)
    app.add_middleware(EdgeMiddleware, max_body=settings.max_body_bytes,
                       max_upload=settings.max_upload_bytes)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The published document: problem details everywhere an error can come back."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemDetails"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}")
    for defs_name, defs in list(components["ProblemDetails"].pop("$defs", {}).items()):
        components.setdefault(defs_name, defs)
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    invalid = {"description": "Validation failed (`validation_failed`): `errors` names each "
                              "field that is not valid; a query parameter the operation does "
                              "not take (`unknown_parameter`), or one it takes once sent twice "
                              "(`repeated_parameter`), is refused too",
               "content": problem}
    unavailable = {"description": "Service unavailable: the database (or the configured Redis) "
                                  "cannot be reached; nothing changed, retry after `Retry-After` "
                                  "seconds",
                   "content": problem}
    too_large = {"description": "Request body too large (`payload_too_large`); nothing changed",
                 "content": problem}
    wrong_media_type = {"description": "Unsupported media type (`unsupported_media_type`): the "
                                       "body was not sent as `application/json`; nothing changed",
                        "content": problem}
    rate_limited = {"description": "Too many requests; retry after `Retry-After` seconds",
                    "content": problem}
    concurrent = {"description": "Conflict (`concurrent_update`: a concurrent request changed the "
                                 "same data; nothing changed, and the request may be sent again)",
                  "content": problem}
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            if "422" in responses or path.startswith(STRICT_PREFIXES):
                # Any query parameter can be refused where the query is strict (gateway.query_params).
                responses["422"] = invalid
            responses.setdefault("500", {"description": "Internal error", "content": problem})
            # What any call may meet when the database fails it (gateway.errors.database_problem).
            responses.setdefault("503", unavailable)
            if method != "get":
                responses.setdefault("409", concurrent)
            if "requestBody" in operation:
                # Any body beyond QUANLIAN_MAX_BODY_BYTES (uploads: MAX_UPLOAD_BYTES) is refused
                # before the route runs (gateway.middleware).
                responses.setdefault("413", too_large)
                if "application/json" in operation["requestBody"].get("content", {}):
                    responses.setdefault("415", wrong_media_type)
            responses.setdefault("429", rate_limited)
    idempotent = _document_idempotency(app, schema)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    _document_security(app, schema)
    _document_headers(schema, idempotent)
    app.openapi_schema = schema
    return schema


def _documented_operations(app: FastAPI, schema: dict[str, Any]
                           ) -> Iterator[tuple[list[Any], dict[str, Any]]]:
    """Each documented operation with every dependency its route runs (the callables, nested
    ones included): what those check from headers themselves FastAPI cannot document."""
    from fastapi.routing import APIRoute, iter_route_contexts

    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        calls, stack = [], list(context.dependant.dependencies)
        while stack:
            found = stack.pop()
            calls.append(found.call)
            stack.extend(found.dependencies)
        for method in context.methods or ():
            operation = schema["paths"].get(context.path_format, {}).get(method.lower())
            if operation is not None:
                yield calls, operation


def _document_idempotency(app: FastAPI, schema: dict[str, Any]) -> set[int]:
    """The `Idempotency-Key` header on every operation that honours it (required where the call
    moves money). Returns those operations (their `id`) for `_document_headers`."""
    from gateway.idempotency import documented_header

    found = set()
    for calls, operation in _documented_operations(app, schema):
        parameter = documented_header(calls)
        if parameter is None:
            continue
        operation.setdefault("parameters", []).append(parameter)
        found.add(id(operation))
    return found


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _document_headers(schema: dict[str, Any], idempotent: set[int]) -> None:
    """The response headers the platform sends, declared once under `components/headers` and
    referenced on each response that can carry them: what the edge adds to every answer
    (gateway.middleware, gateway.correlation), the evidence receipt where calls are recorded
    (gateway.evidence.recorder), the rate-limit headers of a 429 (gateway.ratelimit), the
    `Retry-After` of a 503 or of a key still in progress, the replay marker of an idempotent
    operation (gateway.idempotency) and the challenge of a refused authentication
    (gateway.auth)."""
    from gateway.evidence.recorder import RECORDED_PREFIXES
    from gateway.idempotency import REPLAYED_HEADER, RETRYABLE

    schema["components"]["headers"] = {**DOCUMENTED_HEADERS, **REPLAYED_HEADER}
    every = ("X-Request-Id", "X-Client-Request-Id", "x-fapi-interaction-id")
    rate_limit = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                  "RateLimit-Policy")
    for path, path_item in schema.get("paths", {}).items():
        for operation in path_item.values():
            protected = "security" in operation
            responses = operation.get("responses", {})
            for status, shared in list(responses.items()):
                # Several operations share one response object: each gets its own headers.
                response = responses[status] = {**shared}
                headers = response["headers"] = {**shared.get("headers", {})}
                names = list(every)
                if path.startswith(RECORDED_PREFIXES):
                    names.append("Evidence-Entry")
                if status == "429":
                    names += rate_limit
                elif status == "503" or (status == "409" and id(operation) in idempotent):
                    names.append("Retry-After")
                if status == "401" or (status == "403" and protected):
                    names.append("WWW-Authenticate")
                if (id(operation) in idempotent and status.isdigit() and int(status) < 500
                        and int(status) not in RETRYABLE):
                    names.append("Idempotent-Replayed")
                for name in names:
                    if name == "WWW-Authenticate" and name in headers:
                        continue  # the endpoint says which challenge (the OAuth endpoints)
                    headers[name] = _header_ref(name)


DOCUMENTED_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The platform's id of this call (`req_…`): in `request_id` of a problem, "
                       "the access log and the call's evidence entry. Quote it to support. It is "
                       "never the id the client sent (see `X-Client-Request-Id`)",
        "required": True,
        "schema": {"type": "string"}},
    "X-Client-Request-Id": {
        "description": "The client's own `X-Request-Id`, played back when it sent a plain token "
                       "(1 to 64 visible ASCII characters; anything else is ignored)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
    "x-fapi-interaction-id": {
        "description": "The `x-fapi-interaction-id` the client sent, when it is a UUID; "
                       "otherwise a fresh UUID (version 4)",
        "required": True,
        "schema": {"type": "string", "format": "uuid"}},
    "Evidence-Entry": {
        "description": "The call's entry in the signed evidence log: `<entry id>; leaf=<base64 "
                       "of the entry's leaf hash>` (look it up at `/v1/evidence/entries/{ref}`). "
                       "Sent on every answer the edge records (under `/v1/`, `/sandbox/` and "
                       "`/oauth/`), except a 429 to a caller without a valid token and an answer "
                       "refused before the request was read (a body too large) or ended by an "
                       "unexpected error",
        "schema": {"type": "string"}},
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1}},
    "RateLimit-Limit": {
        "description": "The number of calls the exceeded limit allows in its window",
        "schema": {"type": "integer", "minimum": 1}},
    "RateLimit-Remaining": {
        "description": "Calls left in the window: `0` on a 429",
        "schema": {"type": "integer", "minimum": 0}},
    "RateLimit-Reset": {
        "description": "Seconds until the window of the exceeded limit resets",
        "schema": {"type": "integer", "minimum": 1}},
    "RateLimit-Policy": {
        "description": "The exceeded limit as `<calls>;w=<window seconds>`, e.g. `10;w=1`",
        "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": "The challenge (RFC 6750, RFC 9449): on a 401, `Bearer` and `DPoP` "
                       "challenges, with `error=\"invalid_token\"` (or `invalid_dpop_proof`) "
                       "when a token was refused; on a 403 of an operation that needs a given set of "
                       "scopes, `error=\"insufficient_scope\"` with the `scope` it needs",
        "schema": {"type": "string"}},
}


def _document_security(app: FastAPI, schema: dict[str, Any]) -> None:
    """The OAuth 2.0 scheme (client credentials at the token endpoint) and, on every operation
    that authenticates its caller, the scopes it requires."""
    from gateway.auth import documented_security
    from gateway.oauth.scopes import ALL_SCOPES, SCOPE_DESCRIPTIONS

    schema["components"]["securitySchemes"] = {"oauth2": {
        "type": "oauth2",
        "description": (
            "OAuth 2.0 client credentials (FAPI 2.0): authenticate at the token endpoint with "
            "`private_key_jwt` (PS256, ES256 or EdDSA; `client_secret_basic` for sandbox clients "
            "only). Send the access token as `Authorization: DPoP <token>` with a `DPoP` proof "
            "(RFC 9449) when it is bound to a key, which production clients require, or as "
            "`Authorization: Bearer <token>`."),
        "flows": {"clientCredentials": {
            "tokenUrl": "/oauth/token",
            "scopes": {scope: SCOPE_DESCRIPTIONS[scope] for scope in ALL_SCOPES}}}}}
    for calls, operation in _documented_operations(app, schema):
        security = documented_security(calls)
        if security is not None:
            operation["security"] = security
