"""The console's chain-credit pages, over HTTP with logged-in operators: granting (and refused
grants with the service's message), freezing, approving financing (money checked through the
accounts API), recording risk events, and operators who may only read."""

from __future__ import annotations

import html
from datetime import timedelta

from sqlalchemy import select

from gateway.events import Event
from gateway.evidence.models import EvidenceEntry
from products.chain_credit.models import CreditFacility
from tests.partners.helpers import console_user
from tests.products.chain_credit.helpers import (
    BASE,
    balance,
    build_chain,
    money,
    register,
    today,
)
from tests.tools.api import new_partner_client


def _facilities(pc):
    response = pc.get(f"{BASE}/facilities")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _events(app, resource_id):
    with app.state.database.transaction() as s:
        events = list(s.scalars(select(Event).where(Event.resource_id == resource_id)
                                .order_by(Event.created_at)))
        entries = list(s.scalars(select(EvidenceEntry).where(
            EvidenceEntry.resource_id == resource_id)))
        return [(e.type, e.actor) for e in events], len(entries)


def _grant_form(core_id, start, **overrides):
    form = {"core_enterprise_id": core_id, "limit": "2000000.00",
            "expires_on": (start + timedelta(days=365)).isoformat(),
            "guarantee_circle": "gc-console-01", "discount_rate": "0.0385"}
    form.update(overrides)
    return form


def test_approver_grants_a_facility_and_refusals_show_the_services_message(app, http, monkeypatch):
    pc = new_partner_client(app, http)
    core = register(app, pc, name="华东核心装备集团有限公司", role="core_enterprise", upstream=None)
    supplier = register(app, pc, name="昆山精密零件有限公司", role="supplier", upstream=core.id)
    alan = console_user(app, "alan", ["approver"])
    start = today(app, pc.tenant_id)

    listing = alan.get("/console/chain-credit?environment=sandbox")
    assert listing.status_code == 200 and f"/console/chain-credit/{pc.tenant_id}/facilities" in listing.text
    assert 'href="/console/chain-credit"' in listing.text  # the navigation's link
    page = alan.get(f"/console/chain-credit/{pc.tenant_id}/facilities")
    assert page.status_code == 200, page.text
    assert '<label for="core_enterprise_id">' in page.text and '<label for="limit">' in page.text
    # Only core enterprises are offered.
    assert f'value="{core.id}"' in page.text and f'value="{supplier.id}"' not in page.text

    granted = alan.post(f"/console/chain-credit/{pc.tenant_id}/facilities", _grant_form(core.id, start))
    assert granted.status_code == 303, granted.text
    page = alan.get(granted.headers["location"])
    assert "Facility granted." in page.text and "GC-CONSOLE-01" in page.text
    [facility] = _facilities(pc)
    assert facility["core_enterprise_id"] == core.id and facility["limit"] == money("2000000.00")
    assert facility["guarantee_circle"] == "GC-CONSOLE-01" and facility["discount_rate"] == "0.0385"
    assert facility["status"] == "active" and facility["available"] == money("2000000.00")
    # The API's event and evidence, with the operator as the actor.
    events, entries = _events(app, facility["id"])
    assert events == [("credit_facility.granted", alan_id(app, "alan"))] and entries >= 1

    # A second grant: the service's 409, on the page, the form kept, nothing written.
    again = alan.post(f"/console/chain-credit/{pc.tenant_id}/facilities",
                      _grant_form(core.id, start, limit="1.00"))
    assert again.status_code == 409, again.text
    text = html.unescape(again.text)
    assert f"already has a credit facility, {facility['id']}" in text and 'value="1.00"' in text
    assert 'class="flash error"' in again.text

    # The guarantee circle's cap (here 2.5 million): refused with the cap in the message.
    monkeypatch.setenv("QUANLIAN_CHAIN_CREDIT_GUARANTEE_CIRCLE_SHARE", "0.000025")
    other = register(app, pc, name="华东第二核心集团有限公司", role="core_enterprise", upstream=None)
    alan.get(f"/console/chain-credit/{pc.tenant_id}/facilities")
    capped = alan.post(f"/console/chain-credit/{pc.tenant_id}/facilities",
                       _grant_form(other.id, start, limit="500000.01", guarantee_circle="GC-CONSOLE-01"))
    assert capped.status_code == 409, capped.text
    assert "Guarantee circle GC-CONSOLE-01 has 2000000.00 CNY granted" in html.unescape(capped.text)
    # The API's own form checks, named by the form's labels.
    invalid = alan.post(f"/console/chain-credit/{pc.tenant_id}/facilities",
                        _grant_form(other.id, start, discount_rate="seven", limit="-3"))
    assert invalid.status_code == 422 and "Discount rate:" in invalid.text and "Limit:" in invalid.text
    assert len(_facilities(pc)) == 1


def alan_id(app, username):
    from partners.operators import find_operator

    with app.state.database.transaction() as s:
        return find_operator(s, username).id


def test_freeze_and_unfreeze(app, http):
    chain = build_chain(app, http)
    alan = console_user(app, "alan", ["approver"])
    path = f"/console/chain-credit/{chain.tenant_id}/facilities"
    page = alan.get(path)
    assert 'data-action="freeze"' in page.text
    frozen = alan.post(f"{path}/{chain.facility_id}/freeze", {"reason": "court filing against the core"})
    assert frozen.status_code == 303, frozen.text
    assert chain.facility()["status"] == "frozen"
    assert chain.facility()["frozen_reason"] == "court filing against the core"
    assert chain.issue("10.00").json()["code"] == "credit_facility_frozen"
    page = alan.get(frozen.headers["location"])
    assert "Facility frozen" in page.text and 'data-action="unfreeze"' in page.text

    # Freezing again is the service's refusal, shown on the page (never a 500).
    twice = alan.post(f"{path}/{chain.facility_id}/freeze", {"reason": "again"})
    assert twice.status_code == 409 and 'class="flash error"' in twice.text
    no_reason = alan.post(f"{path}/{chain.facility_id}/unfreeze", {"reason": " "})
    assert no_reason.status_code == 422 and "Reason:" in no_reason.text
    alan.get(path)
    assert alan.post(f"{path}/{chain.facility_id}/unfreeze", {"reason": "settled"}).status_code == 303
    assert chain.facility()["status"] == "active"
    events, _ = _events(app, chain.facility_id)
    assert [t for t, _ in events] == ["credit_facility.granted", "credit_facility.frozen",
                                      "credit_facility.unfrozen"]


def test_approving_an_application_disburses_and_declining_records_the_reason(app, http):
    chain = build_chain(app, http)
    applicant = chain.t1
    created = [chain.pc.post(f"{BASE}/financing-applications", {
        "acting_member_id": applicant.id, "kind": "factoring", "amount": money("50000.00"),
        "invoice_numbers": [f"INV-CONSOLE-{i}"]}).json() for i in (1, 2)]
    balance_path = f"/v1/accounts/{applicant.account_id}/balances"
    before = chain.pc.get(balance_path).json()["ledger"]["amount"]
    assert before == "0.00"

    alan = console_user(app, "alan", ["admin"])
    path = f"/console/chain-credit/{chain.tenant_id}/applications"
    page = alan.get(path)
    assert page.status_code == 200 and all(a["id"] in page.text for a in created)
    assert f'<label for="rate-{created[0]["id"]}">' in page.text
    due = (chain.today() + timedelta(days=60)).isoformat()
    too_much = alan.post(f"{path}/{created[0]['id']}/approve",
                         {"amount": "50000.01", "annual_rate": "0.072", "due_date": due})
    assert too_much.status_code == 422
    assert "cannot exceed the requested amount" in too_much.text
    alan.get(path)
    approved = alan.post(f"{path}/{created[0]['id']}/approve",
                         {"amount": "40000.00", "annual_rate": "0.072", "due_date": due})
    assert approved.status_code == 303, approved.text
    out = chain.pc.get(f"{BASE}/financing-applications/{created[0]['id']}").json()
    assert out["status"] == "disbursed" and out["interest"] == money("480.00")
    # The money, seen through the accounts API.
    assert chain.pc.get(balance_path).json()["ledger"] == money("40000.00")
    again = alan.post(f"{path}/{created[0]['id']}/approve",
                      {"amount": "40000.00", "annual_rate": "0.072", "due_date": due})
    assert again.status_code == 409  # nothing is disbursed twice
    assert chain.pc.get(balance_path).json()["ledger"] == money("40000.00")

    alan.get(path)
    declined = alan.post(f"{path}/{created[1]['id']}/decline", {"reason": "invoice disputed"})
    assert declined.status_code == 303, declined.text
    out = chain.pc.get(f"{BASE}/financing-applications/{created[1]['id']}").json()
    assert out["status"] == "declined" and out["decline_reason"] == "invoice disputed"
    page = alan.get(declined.headers["location"])
    assert "Application declined." in page.text and created[1]["id"] not in page.text
    events, entries = _events(app, created[0]["id"])
    assert [t for t, _ in events] == ["financing_application.submitted",
                                      "financing_application.disbursed"]
    assert events[1][1] == alan_id(app, "alan") and entries >= 2


def test_recording_a_risk_event_freezes_the_facility(app, http):
    chain = build_chain(app, http)
    alan = console_user(app, "alan", ["approver"])
    path = f"/console/chain-credit/{chain.tenant_id}/risk-events"
    page = alan.get(path)
    assert '<label for="risk-type">' in page.text and f'value="{chain.core.id}"' in page.text
    wrong = alan.post(path, {"core_enterprise_id": chain.t1.id, "type": "lawsuit",
                             "description": "not a core"})
    assert wrong.status_code == 422 and "No core enterprise" in wrong.text
    alan.get(path)
    recorded = alan.post(path, {"core_enterprise_id": chain.core.id, "type": "lawsuit",
                                "description": "Sued by a creditor for 30 million CNY"})
    assert recorded.status_code == 303, recorded.text
    [event] = chain.pc.get(f"{BASE}/risk-events").json()["data"]
    assert event["type"] == "lawsuit" and event["source"] == "operations" and event["froze_facility"]
    assert chain.facility()["status"] == "frozen"
    page = alan.get(recorded.headers["location"])
    assert "Risk event recorded." in page.text and "Sued by a creditor" in page.text
    events, entries = _events(app, event["id"])
    assert events == [("chain_risk_event.recorded", alan_id(app, "alan"))] and entries >= 1


def test_operators_who_may_not_decide_read_only(app, http):
    chain = build_chain(app, http)
    core = register(app, chain.pc, name="无授信核心企业有限公司", role="core_enterprise", upstream=None)
    application = chain.pc.post(f"{BASE}/financing-applications", {
        "acting_member_id": chain.t1.id, "kind": "factoring", "amount": money("100.00"),
        "invoice_numbers": ["INV-RO-1"]}).json()
    base = f"/console/chain-credit/{chain.tenant_id}"
    due = (chain.today() + timedelta(days=30)).isoformat()
    for username, roles in (("rita", ["reviewer"]), ("audrey", ["auditor"])):
        user = console_user(app, username, roles)
        page = user.get(f"{base}/facilities")
        assert page.status_code == 200 and chain.facility_id in page.text
        assert 'data-action="grant"' not in page.text and 'data-action="freeze"' not in page.text
        assert 'data-action="approve"' not in user.get(f"{base}/applications").text
        assert 'data-action="record-risk"' not in user.get(f"{base}/risk-events").text
        # Forged posts with a valid CSRF token are refused as well.
        for post_path, form in (
                (f"{base}/facilities", _grant_form(core.id, chain.today())),
                (f"{base}/facilities/{chain.facility_id}/freeze", {"reason": "x"}),
                (f"{base}/applications/{application['id']}/approve",
                 {"amount": "100.00", "annual_rate": "0.05", "due_date": due}),
                (f"{base}/risk-events", {"core_enterprise_id": chain.core.id, "type": "lawsuit",
                                         "description": "x"})):
            refused = user.post(post_path, form)
            assert refused.status_code == 403, (post_path, refused.text)
            assert "This needs one of the roles: admin, approver." in refused.text
    # A post without the session's CSRF token is refused even for an approver.
    alan = console_user(app, "alan", ["approver"])
    forged = alan.post(f"{base}/facilities", _grant_form(core.id, chain.today()), csrf="nope")
    assert forged.status_code == 403 and "The form expired" in forged.text
    with app.state.database.transaction() as s:
        assert s.scalars(select(CreditFacility).where(
            CreditFacility.core_enterprise_id == core.id)).first() is None
    assert chain.facility()["status"] == "active"
    assert chain.pc.get(f"{BASE}/financing-applications/{application['id']}").json()["status"] == "submitted"
    assert chain.pc.get(f"{BASE}/risk-events").json()["data"] == []
    # Not logged in: the login page.
    anonymous = console_user(app, "nobody", ["auditor"], login=False)
    assert anonymous.get(f"{base}/facilities").status_code == 303


def _status_of(app, model, row_id):
    with app.state.database.transaction() as s:
        return s.get(model, row_id).status


def test_credit_is_refused_in_the_tenant_of_a_partner_that_is_not_active(app, http):
    """Offboarded (or suspended) partners' tokens are refused by the gateway; the console refuses
    them new credit and disbursements too, and says why. What lowers the bank's exposure stays."""
    from gateway.tenancy import Partner
    from products.chain_credit.models import FinancingApplication

    chain = build_chain(app, http)
    created = [chain.pc.post(f"{BASE}/financing-applications", {
        "acting_member_id": chain.t1.id, "kind": "factoring", "amount": money("1000.00"),
        "invoice_numbers": [f"INV-OFF-{i}"]}).json() for i in (1, 2)]
    admin = console_user(app, "ada", ["admin"])
    assert admin.transition(chain.pc.partner_id, "offboard", "fraud suspected").status_code == 303
    base = f"/console/chain-credit/{chain.tenant_id}"
    due = (chain.today() + timedelta(days=30)).isoformat()

    page = admin.get(f"{base}/applications")
    assert page.status_code == 200 and created[0]["id"] in page.text  # reads stay allowed
    assert 'data-testid="partner-status">partner offboarded' in page.text
    assert 'data-testid="partner-not-in-service"' in page.text
    assert 'data-action="approve"' not in page.text and 'data-action="decline"' in page.text
    listing = admin.get("/console/chain-credit?environment=sandbox")
    assert '<span class="badge offboarded">offboarded</span>' in listing.text

    approved = admin.post(f"{base}/applications/{created[0]['id']}/approve",
                          {"amount": "1000.00", "annual_rate": "0.05", "due_date": due})
    assert approved.status_code == 409, approved.text
    assert "The partner is offboarded: no facility can be granted" in approved.text
    assert _status_of(app, FinancingApplication, created[0]["id"]) == "submitted"
    assert balance(app, chain.tenant_id, chain.t1.account_id) == 0  # no money moved
    admin.get(f"{base}/facilities")
    granted = admin.post(f"{base}/facilities", _grant_form(chain.core.id, chain.today()))
    assert granted.status_code == 409 and "The partner is offboarded" in granted.text

    # Lowering exposure is still possible: freeze, decline, record a risk event; not unfreeze.
    assert admin.post(f"{base}/facilities/{chain.facility_id}/freeze",
                      {"reason": "partner offboarded"}).status_code == 303
    assert 'data-action="unfreeze"' not in admin.get(f"{base}/facilities").text
    unfrozen = admin.post(f"{base}/facilities/{chain.facility_id}/unfreeze", {"reason": "x"})
    assert unfrozen.status_code == 409 and "The partner is offboarded" in unfrozen.text
    assert _status_of(app, CreditFacility, chain.facility_id) == "frozen"
    admin.get(f"{base}/applications")
    assert admin.post(f"{base}/applications/{created[1]['id']}/decline",
                      {"reason": "partner offboarded"}).status_code == 303
    admin.get(f"{base}/risk-events")
    assert admin.post(f"{base}/risk-events", {"core_enterprise_id": chain.core.id,
                                              "type": "lawsuit", "description": "fraud"}
                      ).status_code == 303

    # A suspended partner's tenant: the same refusal (the gateway refuses its tokens too).
    with app.state.database.transaction() as s:
        s.get(Partner, chain.pc.partner_id).status = "suspended"
    page = admin.get(f"{base}/applications")
    assert "partner suspended" in page.text and 'data-action="approve"' not in page.text
    refused = admin.post(f"{base}/applications/{created[0]['id']}/approve",
                         {"amount": "1000.00", "annual_rate": "0.05", "due_date": due})
    assert refused.status_code == 409 and "The partner is suspended" in refused.text
    assert _status_of(app, FinancingApplication, created[0]["id"]) == "submitted"


def test_a_risk_event_form_posted_twice_records_one_event(app, http):
    chain = build_chain(app, http)
    alan = console_user(app, "alan", ["approver"])
    path = f"/console/chain-credit/{chain.tenant_id}/risk-events"
    alan.get(path)
    form = {"core_enterprise_id": chain.core.id, "type": "lawsuit",
            "description": "Sued by a creditor"}
    first = alan.post(path, form)
    second = alan.post(path, form)  # the same form again: a retry, a second tab, a reload
    assert first.status_code == second.status_code == 303
    assert second.headers["location"] == first.headers["location"]
    assert "Risk event recorded." in alan.get(second.headers["location"]).text
    [event] = chain.pc.get(f"{BASE}/risk-events").json()["data"]
    events, entries = _events(app, event["id"])
    assert len(events) == 1 and entries == 1
    # A new form (a fresh page) records a new event; a form without its token records nothing.
    alan.get(path)
    assert alan.post(path, form).status_code == 303
    assert len(chain.pc.get(f"{BASE}/risk-events").json()["data"]) == 2
    alan.get(path)
    stale = alan.post(path, form | {"form_token": ""})
    assert stale.status_code == 422
    assert len(chain.pc.get(f"{BASE}/risk-events").json()["data"]) == 2
