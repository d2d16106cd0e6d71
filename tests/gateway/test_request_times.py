"""Dates and times in requests are written one way: a date YYYY-MM-DD, a moment in RFC 3339.
pydantic alone reads a number, or a string of digits, as Unix seconds, so "20261210" as a
moment was 1970-08-23T12:06:50Z, and as a date an error about "zero time"."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway.clock import SHANGHAI
from tests.tools.api import problem


@pytest.mark.parametrize("moment", ["20261210", 1765324800, "1765324800", "2026-12-10", True])
def test_a_moment_that_is_not_rfc_3339_is_refused_saying_how_to_write_it(partner, moment):
    before = partner.get("/sandbox/v1/clock").json()
    body = problem(partner.post("/sandbox/v1/clock/advance", {"to": moment}), 422)
    [error] = body["errors"]
    assert error["field"] == "body.to" and "RFC 3339" in error["message"]
    # Nothing moved (the offset: `now` itself follows real time between the two reads).
    assert partner.get("/sandbox/v1/clock").json()["offset_seconds"] == before["offset_seconds"]


def test_a_moment_in_rfc_3339_is_taken(partner):
    now = datetime.fromisoformat(partner.get("/sandbox/v1/clock").json()["now"])
    later = (now + timedelta(days=1)).astimezone(SHANGHAI).isoformat()  # "+08:00"
    moved = partner.post("/sandbox/v1/clock/advance", {"to": later})
    assert moved.status_code == 200, moved.text
    assert datetime.fromisoformat(moved.json()["now"]) == now + timedelta(days=1)


@pytest.mark.parametrize("day", ["20261210", 20261210, "2026-12-10T00:00:00", "10/12/2026"])
def test_a_date_that_is_not_yyyy_mm_dd_is_refused_saying_how_to_write_it(partner, day):
    response = partner.post("/v1/collection/mandates", {
        "payer_account_id": "acc_00000000000000000000000000", "per_debit_limit": {"amount": "10.00",
                                                                   "currency": "CNY"},
        "monthly_limit": {"amount": "100.00", "currency": "CNY"}, "expires_on": day})
    body = problem(response, 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert "YYYY-MM-DD" in fields["body.expires_on"]


def test_a_payment_order_expiry_given_as_unix_seconds_is_refused(partner):
    from tests.products.egov.helpers import order_body

    body = problem(partner.post("/v1/egov/payment-orders", order_body(expires_at=1234567890)),
                   422)
    assert any(e["field"] == "body.expires_at" and "RFC 3339" in e["message"]
               for e in body["errors"])


@pytest.mark.parametrize("day", ["1765152000", "2026-12-08T00:00:00Z", "20261208",
                                 "２０２６-１２-０８"])
@pytest.mark.parametrize("where", [
    "/v1/collection/settlements?settlement_date={}",
    "/v1/collection/reconciliation/{}",
    "/v1/egov/reconciliation/{}",
    "/v1/chain-credit/payables-certificates?maturity_from={}",
    "/v1/accounts/acc_00000000000000000000000000/statement?from={}&to=2026-12-31",
])
def test_a_date_in_the_url_is_written_yyyy_mm_dd_too(partner, where, day):
    # Read as Unix seconds, "1765152000" was 2025-12-08: a silently empty answer.
    body = problem(partner.get(where.format(day)), 422)
    assert any("YYYY-MM-DD" in e["message"] for e in body["errors"]), body


def test_a_date_in_the_url_written_yyyy_mm_dd_is_taken(partner):
    listed = partner.get("/v1/collection/settlements?settlement_date=2026-12-08")
    assert listed.status_code == 200, listed.text


def test_a_moment_without_a_zone_names_its_field(partner):
    body = problem(partner.post("/sandbox/v1/clock/advance", {"to": "2030-12-07T23:00:00"}), 422)
    assert [e["field"] for e in body["errors"]] == ["body.to"]
    assert "time zone" in body["errors"][0]["message"]


@pytest.mark.parametrize("seconds", [True, "60", 60.0])
def test_a_whole_number_is_sent_as_a_json_integer(partner, seconds):
    # Read laxly, `true` was 1 and "60" was 60: a count or a duration is a JSON integer.
    before = partner.get("/sandbox/v1/clock").json()["offset_seconds"]
    body = problem(partner.post("/sandbox/v1/clock/advance", {"seconds": seconds}), 422)
    assert [e["field"] for e in body["errors"]] == ["body.seconds"]
    assert partner.get("/sandbox/v1/clock").json()["offset_seconds"] == before
