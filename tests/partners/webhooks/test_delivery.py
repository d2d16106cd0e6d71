"""Webhook delivery to real local receivers: Standard Webhooks signatures verified by the
`standardwebhooks` library, retries on the tenant clock, timeouts, redirects, SSRF at send time,
disabling after three days, manual retries, and several workers at once."""

from __future__ import annotations

import threading
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from gateway.ids import new_id
from gateway.tenancy import advance_clock, clock_for
from partners.webhooks.delivery import FIRST_RETRY, MAX_RETRY, backoff, deliver_due, fan_out
from partners.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from partners.webhooks.signing import new_secret
from tests.partners.helpers import Receiver, closed_port, emit, run_jobs
from tests.tools.api import make_app, new_partner_client, problem


def endpoint(pc, url: str, types: list[str] | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = pc.post("/v1/webhook-endpoints", {"url": url, "event_types": types or ["*"]})
    assert response.status_code == 201, response.text
    return response.json()


def verify_all(receiver: Receiver, secret: str) -> list[dict]:  # type: ignore[type-arg]
    """Every request the receiver got, verified by the standardwebhooks library."""
    hook = Webhook(secret)
    return [hook.verify(r["body"], r["headers"]) for r in receiver.received]


def advance(app, tenant_id: str, seconds: float) -> None:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        advance_clock(s, tenant_id, seconds)


def deliveries(app, endpoint_id: str) -> list[WebhookDelivery]:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return list(s.scalars(select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.id)))


def test_deliveries_are_signed_and_verifiable(app, http, partner, receiver):
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    emitted = emit(app, partner.tenant_id, "payroll_batch.validated", 3)
    emit(app, partner.tenant_id, "collection_order.paid", 1)
    run_jobs(app)
    payloads = verify_all(receiver, ep["secret"])
    assert sorted(p["id"] for p in payloads) == sorted(emitted)
    for p in payloads:
        assert p["type"] == "payroll_batch.validated" and p["timestamp"].endswith("Z")
        assert p["environment"] == "sandbox" and p["data"]["amount"]["currency"] == "CNY"
        # One document, delivered or listed: a handler for one serves the other.
        assert partner.get(f"/v1/events/{p['id']}").json() == p
    headers = receiver.received[0]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")

    listed = partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries").json()["data"]
    assert len(listed) == 3 and {d["status"] for d in listed} == {"succeeded"}
    assert {d["id"] for d in listed} == {r["headers"]["webhook-id"] for r in receiver.received}
    detail = partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{listed[0]['id']}").json()
    assert detail["payload"]["id"] == listed[0]["event_id"]
    attempt = detail["attempt_log"][0]
    assert attempt["outcome"] == "succeeded" and attempt["status_code"] == 204
    assert attempt["latency_ms"] >= 0 and attempt["trigger"] == "schedule"
    assert attempt["request_headers"]["webhook-id"] == listed[0]["id"]
    assert "webhook-signature" not in attempt["request_headers"]
    failed = partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries?status=failed").json()
    assert failed["data"] == []
    problem(partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries?status=lost"), 422)


def test_receiver_down_then_up_everything_arrives(app, http, partner):
    held, port = closed_port()
    receiver = Receiver(port=port)
    try:
        ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
        emitted = emit(app, partner.tenant_id, "payroll_batch.completed", 5)
        run_jobs(app)
        rows = deliveries(app, ep["id"])
        assert len(rows) == 5 and {d.status for d in rows} == {"pending"}
        assert all(d.attempts == 1 and d.last_error for d in rows)
        # nothing is due again until the backoff has passed on the tenant's clock
        assert deliver_due(app.state.database) == 0
        held.close()
        receiver.start()
        advance(app, partner.tenant_id, 60)
        run_jobs(app)
        payloads = verify_all(receiver, ep["secret"])
        assert sorted(p["id"] for p in payloads) == sorted(emitted)  # each exactly once
        assert {d.status for d in deliveries(app, ep["id"])} == {"succeeded"}
    finally:
        held.close()
        receiver.stop()


def test_slow_receiver_times_out_and_is_retried(app, http, partner, receiver):
    app.state.webhooks.timeout = 0.3
    receiver.mode = "slow"
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    emit(app, partner.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    (row,) = deliveries(app, ep["id"])
    assert row.status == "pending" and "timed out" in (row.last_error or "")
    receiver.mode = "ok"
    receiver.release.set()
    advance(app, partner.tenant_id, 60)
    run_jobs(app)
    (row,) = deliveries(app, ep["id"])
    assert row.status == "succeeded" and row.attempts == 2
    detail = partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{row.id}").json()
    first, second = detail["attempt_log"]
    assert first["outcome"] == "failed" and first["status_code"] is None
    assert first["latency_ms"] >= 250 and second["outcome"] == "succeeded"
    ok = [r for r in receiver.received if r["mode"] == "ok"]
    assert ok and Webhook(ep["secret"]).verify(ok[-1]["body"], ok[-1]["headers"])


def test_redirects_are_never_followed(app, http, partner, receiver):
    target = Receiver().start()
    try:
        receiver.mode = "redirect"
        receiver.redirect_to = target.url
        ep = endpoint(partner, receiver.url)
        emit(app, partner.tenant_id, "payroll_batch.completed", 1)
        run_jobs(app)
        rows = [d for d in deliveries(app, ep["id"]) if d.event_type == "payroll_batch.completed"]
        assert rows[0].status == "pending" and rows[0].last_status_code == 302
        assert rows[0].last_error == "redirect not followed"
        assert target.received == []
    finally:
        target.stop()


def _planted_endpoint(app, pc, url: str) -> str:  # type: ignore[no-untyped-def]
    """An endpoint row whose host resolves somewhere private *now* (as after DNS rebinding):
    registration would refuse it, so it is written as if the DNS had changed since."""
    with app.state.database.transaction() as s:
        now = clock_for(s, pc.tenant_id).now()
        row = WebhookEndpoint(id=new_id("we"), tenant_id=pc.tenant_id, partner_id=pc.partner_id,
                              environment="production" if pc.key else "sandbox", url=url,
                              description=None, event_types=["*"], status="enabled",
                              disabled_reason=None, secret=new_secret(), previous_secret=None,
                              previous_secret_expires_at=None, failing_since=None,
                              created_at=now - timedelta(seconds=1), updated_at=now)
        s.add(row)
        return row.id


def test_production_refuses_private_addresses_at_send_time(app, http, receiver):
    production = new_partner_client(app, http, environment="production")
    port = receiver.port
    urls = [f"https://localhost:{port}/hooks", f"https://127.0.0.1:{port}/hooks",
            "https://169.254.169.254/latest/meta-data/", "https://10.0.0.8/hooks",
            f"https://[::1]:{port}/hooks", f"http://127.0.0.1:{port}/hooks"]
    ids = [_planted_endpoint(app, production, url) for url in urls]
    emit(app, production.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    with app.state.database.transaction() as s:
        attempts = list(s.scalars(select(WebhookAttempt)))
        assert len(attempts) == len(urls)
        for attempt in attempts:
            assert attempt.outcome == "failed" and attempt.status_code is None
            assert (attempt.error or "").startswith("refused:"), attempt.error
        assert {d.endpoint_id for d in s.scalars(select(WebhookDelivery))} == set(ids)
    assert receiver.received == []


def test_sandbox_without_the_setting_refuses_loopback_at_send_time(database, tmp_path, receiver):
    strict = make_app(database, tmp_path)
    with TestClient(strict) as http:
        pc = new_partner_client(strict, http)
        _planted_endpoint(strict, pc, receiver.url)
        emit(strict, pc.tenant_id, "payroll_batch.completed", 1)
        run_jobs(strict)
        with strict.state.database.transaction() as s:
            (attempt,) = s.scalars(select(WebhookAttempt))
            assert (attempt.error or "").startswith("refused:")
    assert receiver.received == []


def test_failing_for_three_days_disables_the_endpoint_and_tells_the_partner(app, http, partner,
                                                                            receiver):
    healthy = Receiver().start()
    try:
        watcher = endpoint(partner, healthy.url, ["webhook_endpoint.disabled"])
        receiver.mode = "fail"
        ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
        emit(app, partner.tenant_id, "payroll_batch.completed", 1)
        run_jobs(app)
        schedule = []
        for _ in range(60):
            (row,) = deliveries(app, ep["id"])
            if row.status != "pending":
                break
            with app.state.database.transaction() as s:
                now = clock_for(s, partner.tenant_id).now()
            assert row.next_attempt_at is not None
            schedule.append(row.next_attempt_at - now)
            advance(app, partner.tenant_id, (row.next_attempt_at - now).total_seconds() + 0.001)
            run_jobs(app)
        (row,) = deliveries(app, ep["id"])
        assert row.status == "failed"
        assert 15 <= row.attempts <= 22, row.attempts
        assert row.completed_at - row.created_at >= timedelta(hours=72)
        # exponential backoff: the first waits grow, later ones stay at the cap
        assert schedule[0] < schedule[3] < schedule[6] < schedule[9]
        assert max(schedule) <= MAX_RETRY * 1.2
        assert len(receiver.received) == row.attempts
        # the endpoint is disabled and the partner is told by an event, delivered elsewhere
        got = partner.get(f"/v1/webhook-endpoints/{ep['id']}").json()
        assert got["status"] == "disabled" and got["disabled_reason"] == "failing"
        events = partner.get("/v1/events?type=webhook_endpoint.disabled").json()["data"]
        assert [e["resource"]["id"] for e in events] == [ep["id"]]
        notified = verify_all(healthy, watcher["secret"])
        assert [p["type"] for p in notified] == ["webhook_endpoint.disabled"]
        assert notified[0]["data"]["id"] == ep["id"]
        # nothing more goes to a disabled endpoint
        emit(app, partner.tenant_id, "payroll_batch.completed", 1)
        run_jobs(app)
        assert len(receiver.received) == row.attempts
    finally:
        healthy.stop()


def test_manual_retry_replays_with_the_same_id(app, http, partner, receiver):
    receiver.mode = "fail"
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    emit(app, partner.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    (row,) = deliveries(app, ep["id"])
    receiver.mode = "ok"
    retried = partner.post(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{row.id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    run_jobs(app)
    (row,) = deliveries(app, ep["id"])
    assert row.status == "succeeded" and row.attempts == 2
    ids = {r["headers"]["webhook-id"] for r in receiver.received}
    assert ids == {row.id}
    detail = partner.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{row.id}").json()
    assert [a["trigger"] for a in detail["attempt_log"]] == ["schedule", "manual"]
    # a succeeded delivery can be replayed once more; a failed replay does not start a new
    # three-day schedule
    receiver.mode = "fail"
    assert partner.post(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{row.id}/retry"
                        ).status_code == 202
    run_jobs(app)
    (row,) = deliveries(app, ep["id"])
    assert row.status == "failed" and row.attempts == 3
    Webhook(ep["secret"]).verify(receiver.received[-1]["body"], receiver.received[-1]["headers"])
    problem(partner.post(f"/v1/webhook-endpoints/{ep['id']}/deliveries/msg_nope/retry"), 404)
    partner.request("PATCH", f"/v1/webhook-endpoints/{ep['id']}", json={"status": "disabled"})
    problem(partner.post(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{row.id}/retry"), 409,
            "webhook_endpoint_disabled")


def test_fan_out_respects_tenants_subscriptions_and_creation_time(app, http, partner, receiver):
    other = new_partner_client(app, http)
    other_receiver = Receiver().start()
    try:
        mine = endpoint(partner, receiver.url, ["payroll_batch.*"])
        theirs = endpoint(other, other_receiver.url, ["*"])
        old = emit(app, partner.tenant_id, "payroll_batch.completed", 1)
        emit(app, partner.tenant_id, "collection_order.paid", 1)
        run_jobs(app)
        late = endpoint(partner, receiver.url, ["payroll_batch.*"])  # after the event
        run_jobs(app)
        assert [p["id"] for p in verify_all(receiver, mine["secret"])] == old
        assert deliveries(app, late["id"]) == []
        # the other tenant only hears about its own endpoint
        assert [p["type"] for p in verify_all(other_receiver, theirs["secret"])] == [
            "webhook_endpoint.created"]
        assert fan_out(app.state.database) == 0
    finally:
        other_receiver.stop()


def test_events_are_listed_per_tenant(app, http, partner):
    other = new_partner_client(app, http)
    # The filter takes catalogued types only (gateway.event_types).
    mine = emit(app, partner.tenant_id, "payroll_batch.completed", 3)
    theirs = emit(app, other.tenant_id, "payroll_batch.completed", 1)
    page = partner.get("/v1/events?type=payroll_batch.completed&limit=2").json()
    assert [e["id"] for e in page["data"]] == list(reversed(mine))[:2]
    rest = partner.get(f"/v1/events?type=payroll_batch.completed&cursor={page['next_cursor']}").json()
    assert [e["id"] for e in rest["data"]] == [mine[0]] and rest["next_cursor"] is None
    assert partner.get(f"/v1/events/{mine[0]}").json()["type"] == "payroll_batch.completed"
    problem(partner.get(f"/v1/events/{theirs[0]}"), 404, "event_not_found")


def test_rotation_signs_with_both_secrets_for_a_day(app, http, partner, receiver):
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    rotated = partner.post(f"/v1/webhook-endpoints/{ep['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != ep["secret"] and new.startswith("whsec_")
    emit(app, partner.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    last = receiver.received[-1]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(last["body"], last["headers"])
    Webhook(ep["secret"]).verify(last["body"], last["headers"])
    advance(app, partner.tenant_id, 24 * 3600 + 1)
    emit(app, partner.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    last = receiver.received[-1]
    assert len(last["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(last["body"], last["headers"])


def test_deliveries_pause_while_the_partner_is_suspended(app, http, receiver):
    from partners.workflow import Actor, transition

    partner = new_partner_client(app, http, partner_status="active")
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    admin = Actor("opr_test", frozenset({"admin"}))
    with app.state.database.transaction() as s:
        transition(s, partner.partner_id, "suspend", actor=admin, reason="investigation")
    emit(app, partner.tenant_id, "payroll_batch.completed", 1)
    run_jobs(app)
    assert receiver.received == [] and deliveries(app, ep["id"])[0].status == "pending"
    with app.state.database.transaction() as s:
        transition(s, partner.partner_id, "reactivate", actor=admin, reason="cleared")
    run_jobs(app)
    assert len(verify_all(receiver, ep["secret"])) == 1


def test_several_workers_never_send_the_same_attempt_twice(app, http, partner, receiver):
    ep = endpoint(partner, receiver.url, ["payroll_batch.*"])
    emit(app, partner.tenant_id, "payroll_batch.completed", 40)
    fan_out(app.state.database)
    app.state.webhooks.batch_size = 7
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while deliver_due(app.state.database):
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = [r["headers"]["webhook-id"] for r in receiver.received]
    assert len(ids) == 40 and len(set(ids)) == 40
    assert {d.attempts for d in deliveries(app, ep["id"])} == {1}
    verify_all(receiver, ep["secret"])


@settings(max_examples=200, deadline=None)
@given(attempt=st.integers(min_value=1, max_value=40), seed=st.integers(0, 2**32))
def test_backoff_grows_exponentially_with_bounded_jitter(attempt, seed):
    import random

    base = min(FIRST_RETRY * 2 ** (attempt - 1), MAX_RETRY)
    delay = backoff(attempt, random.Random(seed))
    assert base * 0.8 <= delay <= base * 1.2


def test_retry_schedule_lasts_about_three_days():
    import random

    rng = random.Random(7)
    total, attempts = timedelta(0), 1
    while total < timedelta(hours=72):
        total += backoff(attempts, rng)
        attempts += 1
    assert 15 <= attempts <= 22


def test_worker_command_runs_the_jobs_once(database, tmp_path, monkeypatch, receiver):
    from typer.testing import CliRunner

    from gateway.cli import app as cli
    from gateway.settings import get_settings

    app = make_app(database, tmp_path, webhook_allow_loopback=True)
    with TestClient(app) as http:
        pc = new_partner_client(app, http)
        ep = endpoint(pc, receiver.url, ["payroll_batch.*"])
        emit(app, pc.tenant_id, "payroll_batch.completed", 2)
    monkeypatch.setenv("QUANLIAN_DATABASE_URL", database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QUANLIAN_WEBHOOK_ALLOW_LOOPBACK", "true")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["worker", "--once"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert len(verify_all(receiver, ep["secret"])) == 2
