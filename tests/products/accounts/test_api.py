"""The accounts API as a partner calls it, with real tokens (the router is mounted here until
gateway.app wires it)."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from gateway import events as events_module
from gateway.bulk import session_insert_later
from gateway.clock import SHANGHAI
from gateway.events import Event
from gateway.evidence.models import EvidenceEntry
from products.accounts import service
from products.accounts.router import router
from tests.products.accounts.factories import enterprise_account, funded_account, person_account
from tests.tools.api import new_partner_client, problem


@pytest.fixture
def api(app, partner):  # type: ignore[no-untyped-def]
    app.include_router(router)
    return partner


@pytest.fixture
def seeded(api, database):  # type: ignore[no-untyped-def]
    with database.transaction() as s:
        payer = funded_account(s, api.tenant_id, 100_000)
        payee = enterprise_account(s, api.tenant_id, name="苏州恒达精密机械有限公司")
        person = person_account(s, api.tenant_id, name="张伟")
        return {"payer": payer.id, "payee": payee.id, "person": person.id,
                "person_number": person.account_number}


def _transfer(api, body, key=None):  # type: ignore[no-untyped-def]
    return api.post("/v1/transfers", body, idempotency_key=key)


def test_accounts_are_listed_and_masked(api, seeded):
    r = api.get("/v1/accounts?limit=100")
    assert r.status_code == 200, r.text
    listed = {a["id"]: a for a in r.json()["data"]}
    person = listed[seeded["person"]]
    assert person["owner"]["name"] == "张*"
    assert seeded["person_number"] not in r.text
    assert person["account_number"].endswith(seeded["person_number"][-4:])
    assert "*" in person["owner"]["id_number"]
    one = api.get(f"/v1/accounts/{seeded['payer']}").json()
    assert one["balances"]["available"] == {"amount": "1000.00", "currency": "CNY"}
    bal = api.get(f"/v1/accounts/{seeded['payer']}/balances").json()
    assert (bal["ledger"]["amount"], bal["held"]["amount"]) == ("1000.00", "0.00")


def test_another_tenants_account_is_not_found(app, http, api, database):
    other = new_partner_client(app, http)
    with database.transaction() as s:
        theirs = enterprise_account(s, other.tenant_id).id
    problem(api.get(f"/v1/accounts/{theirs}"), 404, "account_not_found")
    problem(api.get(f"/v1/accounts/{theirs}/transactions"), 404, "account_not_found")


def test_the_banks_internal_accounts_are_hidden(api, seeded, database):
    with database.transaction() as s:
        clearing = service.internal_account(s, api.tenant_id).id
    assert clearing not in [a["id"] for a in api.get("/v1/accounts?limit=100").json()["data"]]
    for path in ("", "/balances", "/transactions"):
        problem(api.get(f"/v1/accounts/{clearing}{path}"), 404, "account_not_found")
    body = {"from_account_id": clearing, "to_account_id": seeded["payer"],
            "amount": {"amount": "1000000.00", "currency": "CNY"}}
    problem(_transfer(api, body), 404, "account_not_found")


def test_a_transfer_needs_an_idempotency_key_and_pays_once(api, seeded):
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "123.45", "currency": "CNY"}, "memo": "货款",
            "to_account_name": "苏州恒达精密机械有限公司"}
    r = api.http.post("/v1/transfers", json=body, headers=api.auth("POST", "/v1/transfers"))
    problem(r, 400, "idempotency_key_required")
    first = _transfer(api, body, key="pay-1")
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "completed" and first.json()["journal_entry_id"]
    again = _transfer(api, body, key="pay-1")
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    bal = api.get(f"/v1/accounts/{seeded['payee']}/balances").json()
    assert bal["ledger"]["amount"] == "123.45"
    got = api.get(f"/v1/transfers/{first.json()['id']}")
    assert got.status_code == 200 and got.json() == first.json()


def test_a_transfer_and_its_event_are_in_the_evidence_log_with_it(api, seeded, database):
    """The event's entry and the call's are written with the change (in one statement), the
    event's first; a refused call's change, event included, leaves only the call's entry."""
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "5.00", "currency": "CNY"}}
    r = _transfer(api, body)
    assert r.status_code == 201, r.text
    receipt = r.headers["Evidence-Entry"].split(";")[0]
    refused = _transfer(api, {**body, "to_account_id": "acct_missing"})
    problem(refused, 404, "account_not_found")
    with database.transaction() as s:
        entries = s.execute(select(EvidenceEntry.kind, EvidenceEntry.id, EvidenceEntry.resource_id)
                            .where(EvidenceEntry.tenant_id == api.tenant_id)
                            .order_by(EvidenceEntry.seq)).all()
    events = [e for e in entries if e.kind == "event"]
    assert [e.resource_id for e in events] == [r.json()["id"]]
    position = {e.id: i for i, e in enumerate(entries)}
    assert position[events[0].id] < position[receipt]
    assert refused.headers["Evidence-Entry"].split(";")[0] in position


def test_a_write_refused_at_the_commit_is_a_409_that_moves_no_money_and_frees_the_key(
        api, seeded, database, monkeypatch):
    """The transfer's own writes go with the commit on PostgreSQL (`gateway.deferred`), at once
    on SQLite: a key another request took meanwhile, refused only then, fails the whole call
    with a problem, and nothing of it lands; the same key then pays, once."""
    taken = []

    def take_the_events_key(session, event):  # the event's row, stored twice
        if not taken:
            taken.append(event.id)
            session_insert_later(session, Event.__table__, [
                {c.key: getattr(event, c.key) for c in Event.__table__.columns}])

    monkeypatch.setattr(events_module, "_sinks", [*events_module._sinks, take_the_events_key])
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "12.34", "currency": "CNY"}}
    problem(_transfer(api, body, key="pay-kept"), 409, "concurrent_update")
    assert api.get(f"/v1/accounts/{seeded['payee']}/balances").json()["ledger"]["amount"] == "0.00"
    assert api.get(f"/v1/accounts/{seeded['payer']}/balances").json()["ledger"]["amount"] == "1000.00"
    assert api.get("/v1/transfers").json()["data"] == []
    with database.transaction() as s:
        assert s.get(Event, taken[0]) is None
    paid = _transfer(api, body, key="pay-kept")
    assert paid.status_code == 201 and paid.json()["status"] == "completed", paid.text
    assert api.get(f"/v1/accounts/{seeded['payee']}/balances").json()["ledger"]["amount"] == "12.34"


def test_a_refused_transfer_is_created_as_failed(api, seeded):
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "1000.01", "currency": "CNY"}}
    r = _transfer(api, body)
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["failure_code"]) == ("failed", "insufficient_funds")
    assert api.get(f"/v1/transfers/{r.json()['id']}").json()["status"] == "failed"
    assert api.get(f"/v1/accounts/{seeded['payer']}/balances").json()["ledger"]["amount"] == "1000.00"


@pytest.mark.parametrize(("patch", "status", "code"), [
    ({"amount": {"amount": 12.5, "currency": "CNY"}}, 422, "validation_failed"),
    ({"amount": {"amount": "0.00", "currency": "CNY"}}, 422, "validation_failed"),
    ({"amount": {"amount": "1.00", "currency": "USD"}}, 422, "validation_failed"),
    ({"to_account_id": "acct_missing"}, 404, "account_not_found"),
    ({"unexpected": True}, 422, "validation_failed"),
])
def test_invalid_transfers_are_problems(api, seeded, patch, status, code):
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "1.00", "currency": "CNY"}, **patch}
    problem(_transfer(api, body), status, code)
    assert api.get("/v1/transfers").json()["data"] == []


def test_same_account_is_a_problem(api, seeded):
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payer"],
            "amount": {"amount": "1.00", "currency": "CNY"}}
    problem(_transfer(api, body), 422, "same_account")


def test_transfers_need_the_write_scope(app, http, seeded, api):
    reader = new_partner_client(app, http, scopes=["accounts:read"],
                                partner=None)
    body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
            "amount": {"amount": "1.00", "currency": "CNY"}}
    problem(reader.post("/v1/transfers", body), 403, "insufficient_scope")


def test_transactions_and_statements(api, seeded, database):
    for i in range(3):
        body = {"from_account_id": seeded["payer"], "to_account_id": seeded["payee"],
                "amount": {"amount": f"{i + 1}.00", "currency": "CNY"}, "memo": "=SUM(A1)"}
        assert _transfer(api, body).json()["status"] == "completed"
    page = api.get(f"/v1/accounts/{seeded['payee']}/transactions?limit=2").json()
    assert [t["amount"]["amount"] for t in page["data"]] == ["3.00", "2.00"]
    rest = api.get(f"/v1/accounts/{seeded['payee']}/transactions?limit=2&cursor={page['next_cursor']}").json()
    assert [t["amount"]["amount"] for t in rest["data"]] == ["1.00"] and rest["next_cursor"] is None
    assert rest["data"][0]["direction"] == "credit"
    assert rest["data"][0]["counterparty_account_id"] == seeded["payer"]
    problem(api.get(f"/v1/accounts/{seeded['payee']}/transactions?cursor=bogus"), 422, "invalid_cursor")
    problem(api.get(f"/v1/accounts/{seeded['payee']}/transactions?from=2026-01-01T00:00:00"),
            422, "invalid_period")

    with database.transaction() as s:
        today = service.get_core_banking().balance(s, api.tenant_id, seeded["payee"]).as_of
    day = today.astimezone(SHANGHAI).date()
    # A day either side: the test may run across a Shanghai midnight.
    base = f"/v1/accounts/{seeded['payee']}/statement"
    url = f"{base}?from={day - timedelta(days=1)}&to={day + timedelta(days=1)}"
    r = api.get(url)  # CSV unless JSON is asked for
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "type" and rows[1][0] == "opening_balance" and rows[-1][0] == "closing_balance"
    assert (rows[1][5], rows[-1][5]) == ("0.00", "6.00")
    assert [row[4] for row in rows[2:-1]] == ["1.00", "2.00", "3.00"]
    assert all(row[-1] == "'=SUM(A1)" for row in rows[2:-1])  # no formula injection
    assert api.get(url, headers={"Accept": "text/csv, application/json"}).headers[
        "content-type"].startswith("text/csv")
    for asked, headers in ((url + "&format=json", {}), (url, {"Accept": "application/json"})):
        st = api.get(asked, headers=headers).json()
        assert (st["opening_balance"]["amount"], st["closing_balance"]["amount"]) == ("0.00", "6.00")
        assert st["total_credits"]["amount"] == "6.00" and len(st["transactions"]) == 3
    # The former parameter names still answer the same statement.
    former = api.get(f"{base}?start_date={day - timedelta(days=1)}"
                     f"&end_date={day + timedelta(days=1)}&format=json").json()
    assert former["closing_balance"]["amount"] == "6.00"
    missing = problem(api.get(f"{base}?from={day}"), 422, "validation_failed")
    assert [e["field"] for e in missing["errors"]] == ["query.to"]
    problem(api.get(f"{base}?from={day}&to={date(2020, 1, 1).isoformat()}"), 422,
            "invalid_period")


def test_a_date_beyond_the_calendar_in_utc_is_a_422_not_a_500(api, seeded):
    """0001-01-01 at +01:00 and 9999-12-31 at -01:00 leave the calendar when turned to UTC."""
    base = f"/v1/accounts/{seeded['payee']}/transactions"
    for query in ("from=0001-01-01T00:00:00%2B01:00", "to=9999-12-31T23:59:59-01:00"):
        body = problem(api.get(f"{base}?{query}"), 422, "value_out_of_range")
        assert "Traceback" not in str(body)


def test_statement_negotiates_by_accept_with_q_values_and_varies_on_it(api, seeded):
    """RFC 9110: q=0 refuses a type, the higher q wins, media types ignore case, nothing
    acceptable is a 406; the answer depends on Accept, so it says `Vary: Accept`. CSV stays
    the default (no Accept, `*/*`)."""
    day = date.today()
    url = (f"/v1/accounts/{seeded['payee']}/statement"
           f"?from={day - timedelta(days=1)}&to={day + timedelta(days=1)}")

    def kind(accept: str | None) -> str:
        response = api.get(url, headers={"Accept": accept} if accept is not None else {})
        assert response.status_code == 200, response.text
        assert response.headers["vary"] == "Accept"
        return response.headers["content-type"].split(";")[0]

    assert kind(None) == kind("*/*") == "text/csv"
    assert kind("text/csv;q=0, application/json") == "application/json"
    assert kind("text/csv;q=0.2, application/json;q=0.8") == "application/json"
    assert kind("application/json;q=0.2, text/csv") == "text/csv"
    assert kind("APPLICATION/JSON") == "application/json"
    refused = problem(api.get(url, headers={"Accept": "application/pdf, text/csv;q=0"}), 406,
                      "not_acceptable")
    assert refused["available"] == ["text/csv", "application/json"]
    # An explicit format= is not negotiated.
    assert api.get(url + "&format=json", headers={"Accept": "text/csv"}).headers[
        "content-type"].startswith("application/json")
