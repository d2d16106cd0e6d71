"""A shorter way through FastAPI's dependency solver for the platform's kind of dependencies.

FastAPI 0.165 (pinned) solves a route's dependencies by recursion: for every dependency it
solves that dependency's own (empty) parameters, computes a cache key by unwrapping the callable
and walking its security scopes, and classifies the callable again. For `GET /v1/me` that was
about a sixth of the call's CPU beside the two dependencies' own work (py-spy), and every
platform route has two to five dependencies of one kind: a coroutine function that takes the
request (or nothing) and depends on nothing (admission, scopes, the Idempotency-Key, the
session).

`solve` answers such a dependant the way FastAPI does: the dependencies in order, each called
once per request (`use_cache`), then the dependant's own path, query, header, cookie and body
parameters by FastAPI's own functions, then the request, the same errors. Any other shape (a
dependency with parameters or dependencies of its own, a generator, a security scheme or
scopes, a class, a limit on concurrency, a `Response`, `BackgroundTasks` or `SecurityScopes`
parameter, a WebSocket, dependency overrides) goes to FastAPI's solver unchanged. What a
dependant is is read once and remembered.

Both ways also refuse the query parameters the route does not take (`gateway.query_params`),
beside its other parameters' errors; what the route takes is part of its plan.

`install()` puts `solve` where FastAPI's request handlers look the solver up.
"""

from __future__ import annotations

import inspect
from typing import Any

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import (
    SolvedDependency,
    request_body_to_args,
    request_params_to_args,
)
from fastapi.dependencies.utils import solve_dependencies as fastapi_solve
from starlette.requests import Request
from starlette.responses import Response

from gateway.query_params import Declared, declared, refused

# A plain dependency: (its name in the dependant's values or None, the callable, the name of
# its request parameter or None, whether its result is shared within the request, cache key).
_Step = tuple[str | None, Any, str | None, bool, Any]

# id(dependant) -> (dependant, its steps, or None when FastAPI must solve it, and the query
# parameters it takes, or None when it takes any); the dependant is kept to tell a reused id
# apart. Dependants cannot be weakly referred to, so the table is emptied when it outgrows
# every route of a few applications (a process that makes many, as the tests do, would
# otherwise keep them all): a plan is cheap to make again.
_plans: dict[int, tuple[Dependant, tuple[_Step, ...] | None, Declared | None]] = {}
_PLANS_AT_MOST = 4096


def _plain(sub: Dependant) -> bool:
    """A dependency this module solves: a coroutine function of the request, or of nothing,
    with nothing of its own to solve."""
    return (inspect.iscoroutinefunction(sub.call) and inspect.isfunction(sub.call)
            and not (sub.dependencies or sub.path_params or sub.query_params
                     or sub.header_params or sub.cookie_params or sub.body_params)
            and not (sub.http_connection_param_name or sub.websocket_param_name
                     or sub.response_param_name or sub.background_tasks_param_name
                     or sub.security_scopes_param_name)
            and not sub.own_oauth_scopes and not sub.parent_oauth_scopes
            and sub.concurrency is None and len(inspect.signature(sub.call).parameters)
            == (1 if sub.request_param_name else 0))


def _plan(dependant: Dependant) -> tuple[tuple[_Step, ...] | None, Declared | None]:
    known = _plans.get(id(dependant))
    if known is not None and known[0] is dependant:
        return known[1], known[2]
    steps: tuple[_Step, ...] | None = None
    if (all(_plain(sub) for sub in dependant.dependencies)
            and not (dependant.http_connection_param_name or dependant.websocket_param_name
                     or dependant.response_param_name or dependant.background_tasks_param_name
                     or dependant.security_scopes_param_name)):
        steps = tuple((sub.name, sub.call, sub.request_param_name, sub.use_cache,
                       (sub.call, sub.scope)) for sub in dependant.dependencies)
    if len(_plans) >= _PLANS_AT_MOST:
        _plans.clear()
    query = declared(dependant)
    _plans[id(dependant)] = (dependant, steps, query)
    return steps, query


async def solve(*, request: Any, dependant: Dependant, body: Any = None,
                background_tasks: Any = None, response: Response | None = None,
                dependency_overrides_provider: Any = None,
                dependency_cache: dict[Any, Any] | None = None, **kwargs: Any) -> SolvedDependency:
    """`fastapi.dependencies.utils.solve_dependencies`, by a shorter way where it can."""
    steps, query = _plan(dependant)
    if (steps is None or response is not None or dependency_cache is not None
            or background_tasks is not None or not isinstance(request, Request)
            or getattr(dependency_overrides_provider, "dependency_overrides", None)):
        solved = await fastapi_solve(
            request=request, dependant=dependant, body=body, background_tasks=background_tasks,
            response=response, dependency_overrides_provider=dependency_overrides_provider,
            dependency_cache=dependency_cache, **kwargs)
        if query is not None and isinstance(request, Request) and request.scope["query_string"]:
            solved.errors.extend(refused(query, request.query_params))
        return solved
    # The response whose headers and status a dependency may set, as FastAPI makes it.
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    values: dict[str, Any] = {}
    cache: dict[Any, Any] = {}
    for name, call, request_param, use_cache, key in steps:
        if use_cache and key in cache:
            solved = cache[key]
        else:
            solved = await (call(**{request_param: request}) if request_param else call())
            cache.setdefault(key, solved)
        if name is not None:
            values[name] = solved
    errors: list[Any] = []
    for fields, source in ((dependant.path_params, "path_params"),
                           (dependant.query_params, "query_params"),
                           (dependant.header_params, "headers"),
                           (dependant.cookie_params, "cookies")):
        if fields:  # the request's parsed parts are made only when a parameter reads them
            found, wrong = request_params_to_args(fields, getattr(request, source))
            values.update(found)
            errors += wrong
    if query is not None and request.scope["query_string"]:
        errors += refused(query, request.query_params)
    if dependant.body_params:
        found, wrong = await request_body_to_args(
            body_fields=dependant.body_params, received_body=body,
            embed_body_fields=kwargs["embed_body_fields"])
        values.update(found)
        errors += wrong
    if dependant.request_param_name:
        values[dependant.request_param_name] = request
    return SolvedDependency(values=values, errors=errors, background_tasks=None,
                            response=response, dependency_cache=cache)


def install() -> None:
    """Have FastAPI's request handlers (which look the solver up in `fastapi.routing` on every
    call) use `solve`. Idempotent."""
    fastapi.routing.solve_dependencies = solve  # type: ignore[assignment]
