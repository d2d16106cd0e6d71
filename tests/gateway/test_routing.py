"""`gateway.routing.Router` turns requests away by path prefix and changes no answer: the same
routes match, a path that exists under another method is still a 405, an unknown one a 404,
under include prefixes, nested routers and a proxy's root path, and after routes are added.
Its plain endpoints run, with their response models, in one hand-off to a worker thread."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from gateway.routing import Router
from tests.tools.concurrency import hand_offs_counted


def _app() -> tuple[FastAPI, Router]:
    items = Router(prefix="/items", tags=["items"])

    @items.get("/{item_id}")
    def get_item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @items.post("")
    def add_item() -> dict[str, str]:
        return {"added": "yes"}

    parent = Router(prefix="/v1")
    parent.include_router(items)

    @parent.get("/ping")
    def ping() -> dict[str, str]:
        return {"ping": "pong"}

    other = Router(prefix="/other")

    @other.get("/{rest:path}")
    def other_path(rest: str) -> dict[str, str]:
        return {"rest": rest}

    app = FastAPI()
    app.include_router(parent, prefix="/api")
    app.include_router(other)
    return app, parent


def test_routes_under_include_prefixes_and_nesting_still_match() -> None:
    app, _ = _app()
    with TestClient(app) as http:
        assert http.get("/api/v1/items/42").json() == {"item": "42"}
        assert http.post("/api/v1/items").json() == {"added": "yes"}
        assert http.get("/api/v1/ping").json() == {"ping": "pong"}
        assert http.get("/other/a/b/c").json() == {"rest": "a/b/c"}


def test_unknown_paths_are_404_and_other_methods_405() -> None:
    app, _ = _app()
    with TestClient(app) as http:
        assert http.get("/v1/items/42").status_code == 404  # without the include prefix
        assert http.get("/api/v1/nothing").status_code == 404
        assert http.get("/items/42").status_code == 404
        wrong = http.delete("/api/v1/items/42")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET"


def test_a_proxys_root_path_is_not_part_of_the_route_path() -> None:
    # Behind a proxy, an ASGI server passes the full path and the root path it starts with.
    app, _ = _app()

    async def call() -> list[Any]:
        sent: list[Any] = []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "root_path": "/gateway",
                 "path": "/gateway/api/v1/ping", "raw_path": b"/gateway/api/v1/ping",
                 "query_string": b"", "headers": [], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80)}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    sent = asyncio.run(call())
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"]) == {"ping": "pong"}


def test_routes_added_after_the_first_request_are_found() -> None:
    app, parent = _app()
    with TestClient(app) as http:
        assert http.get("/api/v1/late").status_code == 404

        @parent.get("/late")
        def late() -> dict[str, str]:
            return {"late": "yes"}

        assert http.get("/api/v1/late").json() == {"late": "yes"}


def test_a_plain_router_inside_switches_the_shortcut_off_and_still_matches() -> None:
    plain = APIRouter(prefix="/plain")

    @plain.get("/here")
    def here() -> dict[str, str]:
        return {"here": "yes"}

    outer = Router(prefix="/v1")
    outer.include_router(plain)
    assert outer.literals() is None
    app = FastAPI()
    app.include_router(outer)
    with TestClient(app) as http:
        assert http.get("/v1/plain/here").json() == {"here": "yes"}
        assert http.get("/v1/plain/nowhere").status_code == 404


def test_every_platform_router_takes_the_shortcut(app: FastAPI) -> None:
    # `app` is the whole platform (plus the tests' probe router): every router of ours is a
    # `Router`, so none scans its routes for a request meant for another.
    from tests.gateway.probe import router as probe

    included = [getattr(r, "original_router", None) for r in app.router.routes]
    ours = [r for r in included if r is not None and r is not probe]
    assert len(ours) >= 10
    assert all(isinstance(r, Router) and r.literals() for r in ours)


# --- one hand-off to a worker thread per plain endpoint (`OneHopRoute`) ---------------------

class _Row:
    """Stands for an ORM row: reading an attribute may load it from the database, so it must
    happen on a worker thread, never on the event loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.read_on: list[str] = []

    @property
    def name(self) -> str:
        self.read_on.append(threading.current_thread().name)
        return self._name


class RowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str


def _one_hop_app(rows: list[_Row]) -> FastAPI:
    router = Router(prefix="/rows")

    @router.get("/{name}", response_model=RowOut)
    def get_row(name: str) -> Any:
        row = _Row(name)
        rows.append(row)
        return row if name != "bad" else {"nothing": "here"}

    @router.post("", status_code=201)
    def add_row(response: Response) -> dict[str, str]:
        response.headers["x-row"] = "added"
        response.status_code = 202
        return {"added": "yes"}

    app = FastAPI()
    app.include_router(router)
    return app


def test_a_plain_endpoint_and_its_response_model_take_one_hand_off() -> None:
    rows: list[_Row] = []
    with TestClient(_one_hop_app(rows)) as http:
        loop_thread = http.portal.call(lambda: asyncio.sleep(0, threading.current_thread().name))
        with hand_offs_counted() as hand_offs:
            assert http.get("/rows/a").json() == {"name": "a"}
    # FastAPI alone hands a plain endpoint to a thread, then its response model to another.
    assert len(hand_offs) == 1
    assert rows[0].read_on and loop_thread not in rows[0].read_on


def test_an_invalid_response_is_still_refused_and_response_parameters_still_apply() -> None:
    from fastapi.exceptions import ResponseValidationError

    with TestClient(_one_hop_app([])) as http:
        with pytest.raises(ResponseValidationError):
            http.get("/rows/bad")
        added = http.post("/rows")
        assert (added.status_code, added.headers["x-row"], added.json()) == (
            202, "added", {"added": "yes"})
