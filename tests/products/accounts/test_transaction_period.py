"""`GET /v1/accounts/{id}/transactions?from=&to=`: each bound is an RFC 3339 instant or a
business date (Asia/Shanghai), as the statement takes; a date `to` includes its whole day."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from products.accounts import service
from tests.products.accounts.factories import enterprise_account
from tests.tools.api import problem

# Postings either side of two Shanghai midnights (UTC+8): 2026-12-01 00:00 and 2027-01-01 00:00.
POSTED = {
    "2026-11-30 23:59:59 Shanghai": (datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC), "1.00"),
    "2026-12-01 00:00:00 Shanghai": (datetime(2026, 11, 30, 16, 0, 0, tzinfo=UTC), "2.00"),
    "2026-12-31 23:59:59 Shanghai": (datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC), "3.00"),
    "2027-01-01 00:00:00 Shanghai": (datetime(2026, 12, 31, 16, 0, 0, tzinfo=UTC), "4.00"),
}


@pytest.fixture
def account(partner, database):  # type: ignore[no-untyped-def]
    with database.transaction() as s:
        account = enterprise_account(s, partner.tenant_id)
        for at, amount in POSTED.values():
            service.deposit(s, partner.tenant_id, account.id, int(amount.replace(".", "")),
                            journal_ref=f"test:{at.isoformat()}", at=at)
        return account.id


def _amounts(partner, account, query):  # type: ignore[no-untyped-def]
    r = partner.get(f"/v1/accounts/{account}/transactions?limit=100&{query}")
    assert r.status_code == 200, r.text
    return sorted(t["amount"]["amount"] for t in r.json()["data"])


def test_business_dates_bound_whole_shanghai_days_and_instants_work_as_before(partner, account):
    assert _amounts(partner, account, "from=2026-12-01&to=2026-12-31") == ["2.00", "3.00"]
    assert _amounts(partner, account, "from=2026-12-01&to=2026-12-01") == ["2.00"]
    assert _amounts(partner, account, "from=2026-12-31") == ["3.00", "4.00"]
    assert _amounts(partner, account, "to=2026-11-30") == ["1.00"]
    # A date and an instant mixed: the date `to` reaches the next day's start, exclusive.
    assert _amounts(partner, account, "from=" + quote("2026-11-30T15:59:59Z")
                    + "&to=2026-12-31") == ["1.00", "2.00", "3.00"]
    # Instants work as before: `from` inclusive, `to` exclusive.
    start, end = quote("2026-11-30T16:00:00Z"), quote("2026-12-31T15:59:59Z")
    assert _amounts(partner, account, f"from={start}&to={end}") == ["2.00"]
    shanghai = quote("2026-12-01T00:00:00+08:00")
    assert _amounts(partner, account, f"from={shanghai}") == ["2.00", "3.00", "4.00"]
    # An instant without an offset is not a day: still refused.
    problem(partner.get(f"/v1/accounts/{account}/transactions?from=2026-12-01T00:00:00"),
            422, "invalid_period")


def test_bad_bounds_are_problems(partner, account):
    base = f"/v1/accounts/{account}/transactions"
    problem(partner.get(f"{base}?from=2026-12-31&to=2026-12-01"), 422, "invalid_period")
    for query, field in (("from=2026-02-30", "query.from"), ("to=yesterday", "query.to"),
                         ("from=2026-12-1", "query.from")):
        body = problem(partner.get(f"{base}?{query}"), 422, "validation_failed")
        assert [e["field"] for e in body["errors"]] == [field], body
        assert "RFC 3339 instant" in body["errors"][0]["message"]
        assert "business date" in body["errors"][0]["message"]
    for query in ("to=9999-12-31", "from=0001-01-01"):
        problem(partner.get(f"{base}?{query}"), 422, "value_out_of_range")


def test_both_forms_are_documented(http):
    operation = http.get("/openapi.json").json()["paths"][
        "/v1/accounts/{account_id}/transactions"]["get"]
    assert "YYYY-MM-DD" in operation["description"] and "RFC 3339" in operation["description"]
    for parameter in operation["parameters"]:
        if parameter["name"] in ("from", "to"):
            formats = {s.get("format") for s in parameter["schema"]["anyOf"]}
            assert {"date", "date-time"} <= formats, parameter
            assert "YYYY-MM-DD" in parameter["description"]
