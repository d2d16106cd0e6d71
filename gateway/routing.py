"""`Router`: an APIRouter that turns a request away by its path's prefix before trying its routes,
and whose synchronous endpoints run in one hand-off to a worker thread (`OneHopRoute`).

FastAPI 0.165 (pinned) finds a request's route by asking every included router in turn, and each
tries every route it holds, at a cost per route of several scope updates besides the path's
regular expression; the chosen router is then searched again. That was 0.35 ms of a collection
order, 0.44 ms of an e-government order and a quarter of the CPU of a checkout page (its router
is the last one).

A route's path only matches a request whose path begins with the route's literal part (its path
up to the first `{`), after the prefixes its router was included with. So a router whose routes'
literal parts all differ from the start of the path cannot match it, and can say so by a few
`str.startswith` calls: the answer is exact, not a guess, and a 405 for a path that exists under
another method is still found. Routes of a kind whose paths say nothing (a `Host`) switch the
shortcut off for their router.

The include prefix comes from FastAPI's record of the inclusion being matched, and a router's
literal parts are recomputed when its routes (or its included routers') change.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.datastructures import DefaultPlaceholder
from fastapi.encoders import jsonable_encoder
from fastapi.routing import (
    APIRoute,
    _get_scope_effective_route_context,  # the matched route as included, prefixes and all
    _get_scope_included_router,  # the inclusion being matched
)
from fastapi.utils import is_body_allowed_for_status_code
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.types import Scope

from gateway.context import CLOSE_IN_THREAD, current_state, run_before_endpoint


class OneHopRoute(APIRoute):
    """A route whose synchronous endpoint costs one hand-off to a worker thread, not four.

    FastAPI runs a plain `def` endpoint on a worker thread, then validates its response on a
    second hand-off (the response model may read attributes of ORM rows); and a keyed POST's
    `Idempotency-Key` claim, a blocking write, took a third before them. A hand-off costs about
    as much CPU as a small statement (waking a thread and waiting for it). Here the endpoint is
    wrapped in a coroutine that makes one hand-off, in which the thread does what dependencies
    left for it (`gateway.context.before_endpoint`: the claim), calls the endpoint and validates
    its response against the route's model; FastAPI then sees a coroutine and validates the
    already valid value again on the event loop, which for a model instance is a type check.
    An invalid response is handed back as it was, for FastAPI to refuse as before. Generator
    endpoints (streamed bodies) are left as they are.

    Where nothing but the model shapes the answer (`_responder`), the thread also builds the
    response as FastAPI would and commits the request's transaction with it (the edge
    middleware's `close_in_thread`: idempotency record, evidence entry, commit), instead of the
    edge handing the commit to a thread of its own afterwards: a hand-off less again, and a
    row lock or SQLite's writer is given back sooner. A failed commit is raised from here as
    the problem that answers it.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        wrapped = _one_hop(endpoint)
        super().__init__(path, wrapped, **kwargs)
        if wrapped is not endpoint:
            wrapped.response_field = self.response_field  # type: ignore[attr-defined]
            wrapped.respond = self._responder()  # type: ignore[attr-defined]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # no body to read: nothing to add to the call

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict

    def _responder(self) -> Callable[[Any], Response] | None:
        """The response FastAPI would build from a valid result of this route (the status it
        declares; the model's JSON, or the result's when it declares none), when nothing else
        can shape the answer: no dependency takes the `Response` or `BackgroundTasks`, and no
        response class is set."""
        if not isinstance(self.response_class, DefaultPlaceholder):
            return None
        status = self.status_code or 200
        if not is_body_allowed_for_status_code(status):
            return None
        stack = [self.dependant]
        while stack:
            dependant = stack.pop()
            if dependant.response_param_name or dependant.background_tasks_param_name:
                return None
            stack.extend(dependant.dependencies)
        field = self.response_field
        if field is None:
            return lambda value: JSONResponse(jsonable_encoder(value), status_code=status)
        options = {"include": self.response_model_include,
                   "exclude": self.response_model_exclude,
                   "by_alias": self.response_model_by_alias,
                   "exclude_unset": self.response_model_exclude_unset,
                   "exclude_defaults": self.response_model_exclude_defaults,
                   "exclude_none": self.response_model_exclude_none}
        return lambda value: Response(content=field.serialize_json(value, **options),
                                      status_code=status, media_type="application/json")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body = dict(pairs)
    if len(body) != len(pairs):
        twice = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise json.JSONDecodeError(f"the key {twice!r} appears twice in one object", "", 0)
    return body


class StrictJsonRequest(Request):
    """A request whose JSON body may not name a key twice in one object. JSON leaves what a
    repeated key means to the reader (RFC 8259, 4): this one took the last, another component
    (a signature check, a firewall) may take the first and see another amount. Refused as
    malformed JSON (400 `malformed_json`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_keys)
        return self._json


def _one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    if (not inspect.isfunction(endpoint) or inspect.iscoroutinefunction(endpoint)
            or inspect.isgeneratorfunction(endpoint) or inspect.isasyncgenfunction(endpoint)):
        return endpoint

    def in_thread(st: dict[str, Any] | None, kwargs: dict[str, Any]) -> Any:
        run_before_endpoint(st)
        result = endpoint(**kwargs)
        if isinstance(result, Response):
            return result
        value, field = result, run.response_field  # type: ignore[attr-defined]
        if field is not None:
            value, errors = field.validate(result, {}, loc=("response",))
            if errors:
                return result  # for FastAPI to refuse, as it would have
        close = st.get(CLOSE_IN_THREAD) if st else None
        respond = run.respond  # type: ignore[attr-defined]
        if close is not None and respond is not None:
            response = respond(value)
            if close(response.status_code, bytes(response.body)):
                return response
        return value

    @functools.wraps(endpoint)
    async def run(**kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(in_thread, current_state(), kwargs)

    run.response_field = run.respond = None  # type: ignore[attr-defined]
    run.runs_before_endpoint = True  # type: ignore[attr-defined]
    return run


# How many times the routes of any `Router` changed (in a list: one mutable cell).
_generation = [0]


def _literal(path: str) -> str:
    return path.split("{", 1)[0]


class Router(APIRouter):
    """An `APIRouter` that answers `Match.NONE` at once for a path none of its routes can take."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", OneHopRoute)
        kwargs.setdefault("redirect_slashes", False)  # as the application's (gateway.app)
        super().__init__(*args, **kwargs)
        self._literals: tuple[str, ...] | None = None
        self._literals_version: int | None = None
        self._by_prefix: dict[str, tuple[str, ...]] = {}

    def literals(self) -> tuple[str, ...] | None:
        """The literal starts of every path this router serves, relative to where it is
        included; None when some route's path cannot be known from its path."""
        # Any `Router`'s change of routes moves the generation, which is one comparison to
        # read; FastAPI's own version walks every route of the router and of those it includes
        # (about 5% of the event loop's work for an e-government order, py-spy --gil). An
        # included plain APIRouter switches the shortcut off (None) whatever routes it gains.
        if _generation[0] != self._literals_version:
            self._literals = self._compute_literals()
            self._literals_version = _generation[0]
            self._by_prefix = {}
        return self._literals

    def _mark_routes_changed(self) -> None:
        super()._mark_routes_changed()
        _generation[0] += 1

    def _compute_literals(self) -> tuple[str, ...] | None:
        found: set[str] = set()
        for route in self.routes:
            if isinstance(route, Route | WebSocketRoute | Mount):
                found.add(_literal(route.path))
                continue
            inner = getattr(route, "original_router", None)
            context = getattr(route, "include_context", None)
            if isinstance(inner, APIRouter) and context is not None:
                if not isinstance(inner, Router):
                    return None
                below = inner.literals()
                if below is None:
                    return None
                found.update(context.prefix + literal for literal in below)
                continue
            return None  # a Host, or a kind this module does not know
        return tuple(sorted(found))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        inclusion = _get_scope_included_router(scope)
        if inclusion is not None and getattr(inclusion, "original_router", None) is self:
            literals = self.literals()
            if literals is not None:
                prefix = inclusion.include_context.prefix
                starts = self._by_prefix.get(prefix)
                if starts is None:
                    starts = self._by_prefix[prefix] = tuple(prefix + x for x in literals)
                if not get_route_path(scope).startswith(starts):
                    return Match.NONE, {}
        return super().matches(scope)


def route_template(scope: Scope) -> str:
    """The path template of the route a request matched, as the API document names it
    (`/v1/transfers/{transfer_id}`), or `unmatched`. A route of an included router knows only
    its path within that router; FastAPI's record of the match has the whole one."""
    matched = _get_scope_effective_route_context(scope)
    path = getattr(matched, "path", None) or getattr(scope.get("route"), "path", None)
    return path or "unmatched"
