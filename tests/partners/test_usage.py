"""Usage per partner per day: counted at the edge, flushed by the worker, shown in the console."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.clock import business_date, utcnow
from gateway.jobs import run_all_once
from partners.models import UsageDaily
from partners.usage import BOUNDS, bucket_of, percentile
from tests.partners.helpers import console_user
from tests.tools.api import new_partner_client


def test_calls_errors_and_p95_per_partner_per_day(app, http, partner):
    other = new_partner_client(app, http)
    for _ in range(8):
        assert partner.get("/v1/partner").status_code == 200
    for _ in range(2):
        assert partner.get("/v1/webhook-endpoints/we_missing").status_code == 404
    assert other.get("/v1/partner").status_code == 200
    http.get("/v1/partner")  # unauthenticated: nobody's usage
    assert run_all_once(app.state.database, only=["usage.flush"])["usage.flush"] == 2
    with app.state.database.transaction() as s:
        rows = {r.partner_id: r for r in s.scalars(select(UsageDaily))}
    mine = rows[partner.partner_id]
    assert (mine.calls, mine.client_errors, mine.server_errors) == (10, 2, 0)
    assert mine.day == business_date(utcnow()) and mine.environment == "sandbox"
    assert rows[other.partner_id].calls == 1
    p95 = percentile(mine.latency_histogram, 0.95)
    assert p95 is not None and 0 < p95 < 10_000
    # flushing adds: more calls land in the same row
    partner.get("/v1/partner")
    run_all_once(app.state.database, only=["usage.flush"])
    with app.state.database.transaction() as s:
        row = s.scalars(select(UsageDaily).where(UsageDaily.partner_id == partner.partner_id)).one()
        assert row.calls == 11
    auditor = console_user(app, "audrey", ["auditor"])
    page = auditor.get(f"/console/usage?partner={partner.partner_id}")
    assert page.status_code == 200 and "<td>11</td>" in page.text
    assert "2 (2 / 0)" in page.text


def test_concurrent_calls_are_all_counted(app, http, partner):
    partner.get("/v1/partner")  # token once

    def calls() -> None:
        for _ in range(10):
            partner.get("/v1/partner")

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_all_once(app.state.database, only=["usage.flush"])
    with app.state.database.transaction() as s:
        assert s.scalars(select(UsageDaily)).one().calls == 41


@settings(max_examples=100, deadline=None)
@given(latencies=st.lists(st.floats(min_value=0.01, max_value=60_000), min_size=1, max_size=200))
def test_p95_from_the_histogram_is_within_one_bucket(latencies):
    histogram: dict[str, int] = {}
    for value in latencies:
        key = str(bucket_of(value))
        histogram[key] = histogram.get(key, 0) + 1
    ordered = sorted(latencies)
    rank = max(1, -(-95 * len(ordered) // 100))  # nearest-rank p95
    exact = ordered[rank - 1]
    estimate = percentile(histogram, 0.95)
    assert estimate is not None
    assert exact <= estimate <= max(exact * 1.1 + 1e-9, BOUNDS[0])
