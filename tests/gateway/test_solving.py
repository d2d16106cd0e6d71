"""`gateway.solving` answers as FastAPI's solver does: the same values, calls, order, caching and
errors for the dependencies it solves, and FastAPI's own solver for every other shape. The
platform's routes take its shorter way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import (
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.security import SecurityScopes
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gateway import solving


class Item(BaseModel):
    name: str
    quantity: int


def _app(log: list[str]) -> FastAPI:
    async def first(request: Request) -> str:
        log.append("first")
        return request.url.path

    async def second(request: Request) -> str:
        log.append("second")
        if request.headers.get("x-refuse"):
            raise HTTPException(status_code=403, detail="refused by a dependency")
        return "second"

    async def nothing() -> str:
        log.append("nothing")
        return "nothing"

    async def with_query(limit: int = Query(5)) -> int:
        log.append("with_query")
        return limit

    def yielding() -> Iterator[str]:
        log.append("yield-in")
        yield "yielded"
        log.append("yield-out")

    async def scoped(scopes: SecurityScopes) -> list[str]:
        log.append("scoped")
        return scopes.scopes

    async def sets_header(response: Response) -> None:
        response.headers["x-set-by-dependency"] = "yes"

    app = FastAPI(dependencies=[Depends(first)])

    @app.post("/plain/{item_id}", dependencies=[Depends(second)])
    async def plain(item_id: int, item: Item, q: Annotated[str, Query(max_length=3)],
                    x_token: Annotated[str, Header()], session_id: Annotated[str, Cookie()],
                    path: str = Depends(first), again: str = Depends(second),
                    fresh: str = Depends(second, use_cache=False),
                    none: str = Depends(nothing)) -> dict[str, Any]:
        return {"item_id": item_id, "item": item.model_dump(), "q": q, "x_token": x_token,
                "session_id": session_id, "path": path, "again": again, "fresh": fresh,
                "none": none}

    @app.get("/query")
    async def query(limit: int = Depends(with_query)) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/yield")
    def with_yield(value: str = Depends(yielding)) -> dict[str, str]:
        return {"value": value}

    @app.get("/scopes")
    async def with_scopes(scopes: list[str] = Security(scoped, scopes=["a:read"])) -> list[str]:
        return scopes

    @app.get("/response", dependencies=[Depends(sets_header)])
    async def with_response() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/overridable")
    async def overridable(value: str = Depends(nothing)) -> dict[str, str]:
        return {"value": value}

    return app


GOOD = {"params": {"q": "abc"}, "headers": {"x-token": "t"}, "cookies": {"session_id": "s"},
        "json": {"name": "pen", "quantity": 2}}
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/plain/7", GOOD),
    ("POST", "/plain/x", {**GOOD, "params": {"q": "toolong"}, "json": {"name": 1}}),
    ("POST", "/plain/7", {**GOOD, "headers": {}, "cookies": {}}),
    ("POST", "/plain/7", {**GOOD, "headers": {"x-token": "t", "x-refuse": "1"}}),
    ("POST", "/plain/7", {**GOOD, "json": None, "content": b"{not json",
                          "headers": {"x-token": "t", "content-type": "application/json"}}),
    ("GET", "/query", {"params": {"limit": "9"}}),
    ("GET", "/query", {"params": {"limit": "nine"}}),
    ("GET", "/yield", {}),
    ("GET", "/scopes", {}),
    ("GET", "/response", {}),
]


def _count_fastapi_runs(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], Any]:
    """Count the calls this module hands to FastAPI's own solver (a one-item list), and the
    counting solver."""
    runs = [0]
    original = solving.fastapi_solve

    async def counted(**kwargs: Any) -> Any:
        runs[0] += 1
        return await original(**kwargs)

    monkeypatch.setattr(solving, "fastapi_solve", counted)
    return runs, counted


def _answers(solver: Any, monkeypatch: pytest.MonkeyPatch,
             overrides: bool = False) -> tuple[list[Any], int]:
    """Every call's status, body, headers set by dependencies and the dependencies' log, with
    `solver` in FastAPI's request handlers; and how many times FastAPI's own solver ran."""
    fastapi_runs, counted = _count_fastapi_runs(monkeypatch)
    monkeypatch.setattr(fastapi.routing, "solve_dependencies",
                        counted if solver is None else solver)
    log: list[str] = []
    app = _app(log)
    if overrides:
        async def other() -> str:
            return "overridden"
        app.dependency_overrides[_nothing_of(app)] = other
    answers = []
    with TestClient(app) as http:
        for method, path, options in CALLS + [("GET", "/overridable", {})]:
            log.clear()
            options = dict(options)
            cookies = options.pop("cookies", None)
            http.cookies.clear()
            for name, value in (cookies or {}).items():
                http.cookies.set(name, value)
            response = http.request(method, path, **options)
            answers.append((method, path, response.status_code, response.json(),
                            response.headers.get("x-set-by-dependency"), list(log)))
    return answers, fastapi_runs[0]


def _nothing_of(app: FastAPI) -> Any:
    route = next(r for r in app.routes if getattr(r, "path", None) == "/overridable")
    return route.dependant.dependencies[-1].call  # type: ignore[attr-defined]


def test_same_answers_as_fastapi_for_every_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _ = _answers(None, monkeypatch)
    answered, fastapi_runs = _answers(solving.solve, monkeypatch)
    assert answered == expected
    # The cached dependencies ran once, the uncached one again, in FastAPI's order.
    assert expected[0][5] == ["first", "second", "second", "nothing"]
    assert expected[0][2] == 200 and expected[0][3]["fresh"] == "second"
    assert expected[1][2] == 422 and expected[3][2] == 403 and expected[4][2] == 422
    # FastAPI's own solver answered only the calls whose routes have a shape this module
    # leaves to it: the dependency with a query parameter (two calls), the generator, the
    # security scopes, the `Response` parameter; not the five plain calls.
    assert fastapi_runs == 2 + 1 + 1 + 1


def test_dependency_overrides_go_to_fastapi(monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _ = _answers(None, monkeypatch, overrides=True)
    answered, _ = _answers(solving.solve, monkeypatch, overrides=True)
    assert answered == expected
    assert answered[-1][3] == {"value": "overridden"}


def test_platform_routes_take_the_short_way(partner,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fastapi_runs, _ = _count_fastapi_runs(monkeypatch)
    assert fastapi.routing.solve_dependencies is solving.solve
    assert partner.token  # the token endpoint is a route too: fetch the token before counting
    fastapi_runs[0] = 0
    me = partner.get("/v1/me")
    assert me.status_code == 200 and me.json()["client_id"] == partner.client_id
    assert partner.get("/v1/accounts").status_code == 200
    refused = partner.post("/v1/transfers", {
        "from_account_id": "acc_missing", "to_account_id": "acc_other",
        "amount": {"amount": "1.00", "currency": "CNY"}})
    assert refused.status_code == 404, refused.text
    assert fastapi_runs[0] == 0


def test_plans_are_bounded_and_made_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that makes many applications keeps no more plans than the bound, and a plan
    emptied away is made again with the same answers."""
    expected, _ = _answers(None, monkeypatch)
    monkeypatch.setattr(solving, "_PLANS_AT_MOST", 2)
    monkeypatch.setattr(solving, "_plans", {})
    answered, _ = _answers(solving.solve, monkeypatch)
    assert answered == expected
    assert 0 < len(solving._plans) <= 2
