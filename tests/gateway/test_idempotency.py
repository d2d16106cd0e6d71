"""Idempotency-Key semantics through HTTP, including concurrent duplicates."""

from __future__ import annotations

import json
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import pytest
from fastapi import Depends, Request
from pydantic import BaseModel
from sqlalchemy import String, func, select
from sqlalchemy.orm import Session

from gateway.auth import require_scope
from gateway.cli import openapi_document
from gateway.db import get_session
from gateway.idempotency import idempotency
from tests.tools.api import problem
from tests.tools.concurrency import hand_offs_counted


class Note(BaseModel):
    text: str


@pytest.fixture
def notes_app(app):
    """A tiny money-like resource: every POST inserts one row (so duplicates are visible)."""
    from sqlalchemy import Column, MetaData, Table

    md = MetaData()
    table = Table("probe_notes", md, Column("id", String(40), primary_key=True),
                  Column("text", String(200)))
    md.create_all(app.state.database.engine)
    gate = threading.Event()
    gate.set()

    @app.post("/v1/probe-notes", include_in_schema=False, status_code=201,
              dependencies=[Depends(idempotency(required=True))])
    def create_note(note: Note, session: Session = Depends(get_session),
                    _=Depends(require_scope("accounts:write"))):
        if note.text == "boom":
            from gateway.errors import ValidationFailed
            raise ValidationFailed("boom is not allowed", code="boom")
        gate.wait(5)
        new = uuid.uuid4().hex
        session.execute(table.insert().values(id=new, text=note.text))
        return {"id": new, "text": note.text}

    app.state.probe_table = table
    app.state.probe_gate = gate
    return app


def count(app):
    with app.state.database.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(app.state.probe_table)).scalar()


def test_key_required_for_money_routes(notes_app, partner, http):
    response = http.post("/v1/probe-notes", json={"text": "a"},
                         headers=partner.auth("POST", "/v1/probe-notes"))
    problem(response, 400, "idempotency_key_required")
    assert count(notes_app) == 0


def test_same_key_same_body_replays(notes_app, partner):
    first = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k1")
    second = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert count(notes_app) == 1


def test_same_key_different_body_is_422(notes_app, partner):
    partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k2")
    problem(partner.post("/v1/probe-notes", {"text": "b"}, idempotency_key="k2"), 422,
            "idempotency_key_reused")
    assert count(notes_app) == 1


def test_keys_are_per_client(notes_app, partner, app, http):
    from tests.tools.api import new_partner_client

    other = new_partner_client(app, http)
    partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="shared")
    response = other.post("/v1/probe-notes", {"text": "a"}, idempotency_key="shared")
    assert "idempotent-replayed" not in response.headers
    assert count(notes_app) == 2


def test_refused_request_is_replayed_as_refused(notes_app, partner):
    problem(partner.post("/v1/probe-notes", {"text": "boom"}, idempotency_key="k3"), 422, "boom")
    again = partner.post("/v1/probe-notes", {"text": "boom"}, idempotency_key="k3")
    problem(again, 422, "boom")
    assert again.headers["idempotent-replayed"] == "true"


def stored_body(app, key: str) -> str:
    from gateway.idempotency import IdempotencyRecord

    with app.state.database.engine.connect() as conn:
        return conn.execute(select(IdempotencyRecord.body)
                            .where(IdempotencyRecord.key == key)).scalar_one()


def test_stored_responses_are_encrypted_and_replay_in_clear(notes_app, partner):
    """A response can carry a secret (a webhook endpoint's signing secret): the copy kept for
    replays is encrypted at rest, refusals too, and a replay answers with the clear body."""
    first = partner.post("/v1/probe-notes", {"text": "whsec_TOPSECRET"}, idempotency_key="s1")
    problem(partner.post("/v1/probe-notes", {"text": "boom"}, idempotency_key="s2"), 422, "boom")
    for key in ("s1", "s2"):
        body = stored_body(notes_app, key)
        assert body.startswith("v1.") and "TOPSECRET" not in body and "boom" not in body
    again = partner.post("/v1/probe-notes", {"text": "whsec_TOPSECRET"}, idempotency_key="s1")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() == {"id": first.json()["id"], "text": "whsec_TOPSECRET"}
    problem(partner.post("/v1/probe-notes", {"text": "boom"}, idempotency_key="s2"), 422, "boom")


def test_a_response_stored_in_clear_before_still_replays(notes_app, partner):
    from gateway.idempotency import IdempotencyRecord

    partner.post("/v1/probe-notes", {"text": "old"}, idempotency_key="legacy")
    with notes_app.state.database.engine.begin() as conn:
        conn.execute(IdempotencyRecord.__table__.update()
                     .where(IdempotencyRecord.key == "legacy")
                     .values(body='{"id":"n_old","text":"old"}'))
    again = partner.post("/v1/probe-notes", {"text": "old"}, idempotency_key="legacy")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == {"id": "n_old", "text": "old"}
    assert count(notes_app) == 1


def test_bad_key_refused(notes_app, partner):
    problem(partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="x" * 300), 400,
            "invalid_idempotency_key")


def test_concurrent_duplicates_one_effect(notes_app, partner):
    notes_app.state.probe_gate.clear()
    assert partner.token  # fetch once before the threads start

    def send(_):
        return partner.post("/v1/probe-notes", {"text": "c"}, idempotency_key="race")

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(send, i) for i in range(8)]
        import time
        time.sleep(0.5)
        notes_app.state.probe_gate.set()
        responses = [f.result() for f in futures]
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    for r in responses:
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_key_in_progress"
    assert count(notes_app) == 1




def test_claims_made_at_once_are_each_decided_once(database):
    # Claims made together share a transaction: each distinct key is claimed by exactly one
    # caller, every other caller of that key is refused, and no claim is lost.
    from gateway.errors import Conflict
    from gateway.idempotency import IdempotencyRecord, _claim

    keys = [f"k{i % 6}" for i in range(48)]  # 6 keys, 8 callers each
    start = threading.Barrier(16)  # 48 callers on 16 threads: three waves of 16 at once

    def claim(key: str) -> str:
        try:
            start.wait(timeout=10)
            _claim(database, "cli_race", key, "h")
        except Conflict:
            return "refused"
        return "claimed"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(claim, keys))
    claimed = sorted(key for key, outcome in zip(keys, outcomes, strict=True) if outcome == "claimed")
    assert claimed == [f"k{i}" for i in range(6)]
    with database.transaction() as s:
        stored = s.scalars(select(IdempotencyRecord.key)
                           .where(IdempotencyRecord.client_id == "cli_race")).all()
    assert sorted(stored) == claimed


def test_a_batch_of_claims_stores_the_first_of_equal_keys_and_refuses_held_ones(database):
    # 40 claims: more than one statement's worth, with a key repeated across statements.
    from gateway import clock
    from gateway.idempotency import TTL, IdempotencyRecord, _claims_of

    now = clock.utcnow()

    def row(key: str) -> dict[str, object]:
        return {"client_id": "cli_batch", "key": key, "request_hash": "h" + key,
                "state": "in_progress", "created_at": now, "expires_at": now + TTL}

    claims = _claims_of(database)
    assert claims._store([row("held")]) == [True]
    keys = ["a", "held", *(f"k{i}" for i in range(18)), "a", *(f"m{i}" for i in range(18)), "k3"]
    stored = claims._store([row(key) for key in keys])
    expected = [key != "held" for key in keys]
    expected[keys.index("a", 1)] = expected[-1] = False  # the second "a", the second "k3"
    assert stored == expected
    with database.transaction() as s:
        kept = dict(s.execute(select(IdempotencyRecord.key, IdempotencyRecord.request_hash)
                              .where(IdempotencyRecord.client_id == "cli_batch")).all())
    assert sorted(kept) == sorted(set(keys))
    assert all(kept[key] == "h" + key for key in kept)


def test_the_document_says_which_calls_take_a_key_and_which_require_one(app, http, partner):
    """A partner's generated client learns the header from the published document: every POST
    that requires a key says so, and one sent without it is refused for that alone; every POST
    that takes one documents it as optional, and no other POST requires one."""
    spec = json.loads(openapi_document())
    required, optional, other = [], [], []
    for path, item in spec["paths"].items():
        post = item.get("post")
        if post is None:
            continue
        keys = [p for p in post.get("parameters", []) if p["name"] == "Idempotency-Key"]
        (required if keys and keys[0]["required"] else optional if keys else other).append(path)
        if keys:
            assert keys[0]["in"] == "header" and keys[0]["schema"]["maxLength"] == 255
            success = [r for s, r in post["responses"].items() if s.startswith("2")]
            assert all("Idempotent-Replayed" in r.get("headers", {}) for r in success), path
    assert "/v1/transfers" in required and "/v1/egov/payment-orders" in required
    assert len(required) >= 20 and len(optional) >= 20

    def bare(path: str) -> str:  # a path parameter filled with an id nobody holds
        return re.sub(r"\{[^}]+\}", "x_00000000000000000000000000", path)

    held = set(partner.scopes)
    asked = 0
    for path in required:
        response = http.post(bare(path), json={}, headers=partner.auth("POST", bare(path)))
        needs = {s for r in spec["paths"][path]["post"].get("security", []) for s in r["oauth2"]}
        if needs <= held:
            problem(response, 400, "idempotency_key_required")
            asked += 1
        else:  # a route the partner may not call says so before asking for a key
            problem(response, 403, "insufficient_scope")
    assert asked >= 20
    for path in optional + other:
        response = http.post(bare(path), json={}, headers=partner.auth("POST", bare(path)))
        assert response.json().get("code") != "idempotency_key_required", path
    # PUT and PATCH change a resource in place: every one takes a key (optional), as a POST
    # that does, so a retried change is replayed and a reused key refused, not applied twice.
    changes = [(method, path) for path, item in spec["paths"].items()
               for method in ("put", "patch") if method in item]
    assert ("put", "/v1/egov/portal") in changes
    assert ("patch", "/v1/collection/sub-merchants/{sub_merchant_id}") in changes
    for method, path in changes:
        operation = spec["paths"][path][method]
        keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        assert len(keys) == 1 and not keys[0]["required"], (method, path)
        success = [r for s, r in operation["responses"].items() if s.startswith("2")]
        assert all("Idempotent-Replayed" in r.get("headers", {}) for r in success), path


def test_a_patch_honours_its_key_as_a_put_does(app, http):
    """QA F-22: a PATCH sent again with its key is replayed, not applied again; the same key
    with another body is refused and changes nothing (as `PUT /v1/egov/portal`)."""
    from tests.products.collection.support import setup_platform

    platform = setup_platform(app, http, merchants=1, mandate=False)
    path = f"/v1/collection/sub-merchants/{platform.merchants[0]}"

    def patch(body, key="pk-1"):  # type: ignore[no-untyped-def]
        return platform.pc.request("PATCH", path, json=body, idempotency_key=key)

    first = patch({"status": "suspended"})
    assert first.status_code == 200 and first.json()["status"] == "suspended"
    assert "idempotent-replayed" not in first.headers
    assert patch({"status": "active"}, key="pk-2").json()["status"] == "active"
    again = patch({"status": "suspended"})  # a retry of the first: its answer, no change
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    problem(patch({"status": "active", "fee_rule": {"type": "none"}}), 422,
            "idempotency_key_reused")
    assert platform.pc.get(path).json()["status"] == "active"
    problem(platform.pc.request("PATCH", path, json={}, idempotency_key="no key"), 400,
            "invalid_idempotency_key")


def test_a_call_refused_for_its_scope_does_not_use_up_its_key(notes_app, http):
    """A refusal of who calls, or of its scopes, keeps nothing under the key (the key is claimed
    as the route begins, after those checks; where it was claimed before, the refusal released
    it), so the same call with the same key succeeds once the client holds the scope."""
    from gateway.oauth.models import OAuthClient
    from tests.tools.api import new_partner_client

    client = new_partner_client(notes_app, http, scopes=["accounts:read"])
    refused = client.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-scope")
    problem(refused, 403, "insufficient_scope")
    with notes_app.state.database.transaction() as s:
        s.get(OAuthClient, client.client_id).scopes = "accounts:read accounts:write"
    client._token = None
    done = client.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-scope")
    assert done.status_code == 201, done.text
    assert "idempotent-replayed" not in done.headers
    assert count(notes_app) == 1


def test_what_may_call_is_answered_before_a_missing_key(notes_app, http):
    """A client without the route's scope is told so (403), not asked for a key it would
    still be refused with."""
    from tests.tools.api import new_partner_client

    reader = new_partner_client(notes_app, http, scopes=["accounts:read"])
    response = http.post("/v1/probe-notes", json={"text": "a"},
                         headers=reader.auth("POST", "/v1/probe-notes"))
    problem(response, 403, "insufficient_scope")
    assert count(notes_app) == 0


def test_the_same_bytes_as_another_media_type_are_another_request(notes_app, partner):
    body = json.dumps({"text": "a"}).encode()
    first = partner.request("POST", "/v1/probe-notes", idempotency_key="k-media", content=body,
                            headers={"Content-Type": "application/json"})
    assert first.status_code == 201, first.text
    other = partner.request("POST", "/v1/probe-notes", idempotency_key="k-media", content=body,
                            headers={"Content-Type": "application/vnd.notes+json"})
    problem(other, 422, "idempotency_key_reused")
    # parameters and case are not a different media type
    same = partner.request("POST", "/v1/probe-notes", idempotency_key="k-media", content=body,
                           headers={"Content-Type": "Application/JSON; charset=utf-8"})
    assert same.headers["idempotent-replayed"] == "true" and same.json() == first.json()
    assert count(notes_app) == 1


def test_who_calls_is_checked_before_the_key(notes_app, http):
    """A call without a valid token is a 401 whether or not it carries a key, and a bad key
    from a caller without a token is still a 401: the key's rules apply to known callers."""
    for headers in ({}, {"Idempotency-Key": "k-anon"}, {"Idempotency-Key": "bad key"}):
        response = http.post("/v1/probe-notes", json={"text": "a"}, headers=headers)
        problem(response, 401, "unauthorized")  # no credentials: RFC 6750's bare challenge
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert count(notes_app) == 0


def test_a_call_refused_before_its_route_began_keeps_nothing_under_its_key(notes_app, partner):
    """Stripe's rule: no result is kept for a request whose route never began (its body is
    invalid), so the corrected request is sent again with the same key and is done once."""
    problem(partner.post("/v1/probe-notes", {"txt": "a"}, idempotency_key="k-body"), 422,
            "validation_failed")
    done = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-body")
    assert done.status_code == 201, done.text
    assert "idempotent-replayed" not in done.headers
    again = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-body")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == done.json()
    assert count(notes_app) == 1


def test_a_route_that_reads_its_own_body_claims_its_key_too(notes_app, partner):
    """Routes that stream their body (uploads) are coroutines: they claim the key in the
    dependency, before they run, with the same rules."""
    table = notes_app.state.probe_table

    @notes_app.post("/v1/probe-notes-upload", include_in_schema=False, status_code=201,
                    dependencies=[Depends(idempotency(required=True))])
    async def upload(request: Request, _=Depends(require_scope("accounts:write"))):
        text = (await request.body()).decode()
        new = uuid.uuid4().hex

        def insert() -> None:
            with notes_app.state.database.transaction() as s:
                s.execute(table.insert().values(id=new, text=text))
        await anyio.to_thread.run_sync(insert)
        return {"id": new, "text": text}

    def send(text: str):
        return partner.request("POST", "/v1/probe-notes-upload", idempotency_key="k-up",
                               content=text.encode(), headers={"Content-Type": "text/csv"})

    first, second = send("a,b"), send("a,b")
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true" and second.json() == first.json()
    problem(send("c,d"), 422, "idempotency_key_reused")
    assert count(notes_app) == 1


def test_a_keyed_post_is_claimed_done_answered_and_committed_in_one_hand_off(
        notes_app, partner):
    """The claim, the route, its response and the commit with the idempotency record and the
    call's evidence entry run on the route's one worker thread (gateway.routing.OneHopRoute):
    FastAPI and the edge alone would hand the request to a thread four times."""
    partner.post("/v1/probe-notes", {"text": "warm"}, idempotency_key="k-warm")
    with hand_offs_counted() as hand_offs:
        done = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-hop")
    assert done.status_code == 201 and done.headers["evidence-entry"]
    assert hand_offs == ["in_thread"]
    again = partner.post("/v1/probe-notes", {"text": "a"}, idempotency_key="k-hop")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == done.json()
    assert count(notes_app) == 2
