"""The onboarding workflow through the console: maker-checker, production clients, suspension,
offboarding, the transition table, and auditors who read everything and change nothing."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from gateway.events import Event
from gateway.evidence.models import EvidenceEntry
from gateway.oauth.models import OAuthClient
from partners.models import PartnerTransition
from partners.operations import BANK_PARTNER_ID
from partners.webhooks.models import WebhookEndpoint
from tests.partners.helpers import apply, console_user, partner_status
from tests.tools.api import (
    ISSUER,
    PartnerClient,
    client_assertion,
    dpop_proof,
    new_ec_key,
    public_jwks,
)


def sandbox_client(http, applied) -> PartnerClient:  # type: ignore[no-untyped-def]
    sandbox = applied["sandbox"]
    return PartnerClient(http=http, client_id=sandbox["client_id"],
                         partner_id=applied["partner_id"], tenant_id=sandbox["tenant_id"],
                         secret=sandbox["client_secret"])


def issue_production_client(approver, http, partner_id: str) -> PartnerClient:  # type: ignore[no-untyped-def]
    key, dpop_key = new_ec_key(), new_ec_key()
    approver.get(f"/console/partners/{partner_id}/clients/new")
    assert approver.last.status_code == 200, approver.last.text
    page = approver.post(f"/console/partners/{partner_id}/clients", {
        "name": "ERP production", "environment": "production",
        "scopes": ["payroll:read", "payroll:write", "webhooks:manage"],
        "jwks": json.dumps(public_jwks(key)), "jwks_uri": "", "rate_plan": "unlimited",
        "require_dpop": "true"})
    assert page.status_code == 303, page.text  # Post/Redirect/Get
    page = approver.get(page.headers["location"])
    assert page.status_code == 200, page.text
    client_id = page.text.split('data-testid="client-id">')[1].split("<")[0]
    assert client_id.startswith("cli_")
    return PartnerClient(http=http, client_id=client_id, partner_id=partner_id, tenant_id="",
                         key=key, dpop_key=dpop_key)


def onboard(app, http, reviewer, approver) -> tuple[dict, PartnerClient, PartnerClient]:  # type: ignore[no-untyped-def]
    applied = apply(http)
    pid = applied["partner_id"]
    assert reviewer.transition(pid, "review", "KYC documents checked").status_code == 303
    assert approver.transition(pid, "approve", "Contract signed").status_code == 303
    production = issue_production_client(approver, http, pid)
    return applied, sandbox_client(http, applied), production


def test_maker_checker_approval_and_a_production_client(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    both = console_user(app, "bo", ["reviewer", "approver"])
    applied = apply(http)
    pid = applied["partner_id"]

    queue = reviewer.get("/console/applications")
    assert queue.status_code == 200 and applied["legal_name"] in queue.text

    # a reviewer cannot approve; an approver cannot approve what nobody reviewed
    refused = reviewer.transition(pid, "approve", "looks fine")
    assert refused.status_code == 403 and "role_required" in refused.text
    early = approver.transition(pid, "approve", "looks fine")
    assert early.status_code == 409 and "transition_not_allowed" in early.text
    assert partner_status(app, pid) == "submitted"

    assert both.transition(pid, "review", "documents complete").status_code == 303
    assert partner_status(app, pid) == "in_review"
    # maker-checker: the reviewer may hold the approver role, still not for its own review
    page = both.get(f"/console/partners/{pid}")
    assert 'data-action="approve"' not in page.text and "maker-checker" in page.text
    forged = both.post(f"/console/partners/{pid}/transitions",
                       {"action": "approve", "reason": "self-approval"})
    assert forged.status_code == 409 and "maker_checker_violation" in forged.text
    assert partner_status(app, pid) == "in_review"
    # an approver without the reviewer role cannot review
    other = apply(http)
    assert approver.transition(other["partner_id"], "review", "x").status_code == 403
    assert partner_status(app, other["partner_id"]) == "submitted"

    assert approver.transition(pid, "approve", "contract signed").status_code == 303
    assert partner_status(app, pid) == "approved"

    production = issue_production_client(approver, http, pid)
    assert partner_status(app, pid) == "active"  # the first production client activates
    profile = production.get("/v1/partner")
    assert profile.status_code == 200, profile.text
    envs = {e["environment"]: e["status"] for e in profile.json()["environments"]}
    assert envs == {"sandbox": "available", "production": "available"}

    with app.state.database.transaction() as s:
        history = list(s.scalars(select(PartnerTransition).where(
            PartnerTransition.partner_id == pid).order_by(PartnerTransition.at,
                                                         PartnerTransition.id)))
        assert [(h.action, h.from_status, h.to_status) for h in history] == [
            ("submit", None, "submitted"), ("review", "submitted", "in_review"),
            ("approve", "in_review", "approved"), ("activate", "approved", "active")]
        actors = [h.actor for h in history]
        assert actors[0] == "applicant" and actors[1] != actors[2] and actors[2] == actors[3]
        assert history[2].reason == "contract signed"
        # every transition is an event of the bank's operations tenant, and an evidence entry
        for h in history:
            event = s.get(Event, h.event_id)
            assert event is not None and event.resource_id == pid
            assert event.type == f"partner.{ {'submit': 'submitted', 'review': 'reviewed', 'approve': 'approved', 'activate': 'activated'}[h.action] }"  # noqa: E501
            entries = [e for e in s.scalars(select(EvidenceEntry).where(
                EvidenceEntry.resource_id == pid, EvidenceEntry.kind == "event"))
                if h.event_id.encode() in e.canonical]
            assert len(entries) == 1 and entries[0].tenant_id == event.tenant_id
        issued = s.scalars(select(Event).where(Event.type == "partner_client.issued")).one()
        assert issued.actor == actors[2]


def test_production_client_needs_an_approved_partner(app, http):
    approver = console_user(app, "alan", ["approver"])
    applied = apply(http)
    pid = applied["partner_id"]
    approver.get(f"/console/partners/{pid}/clients/new")
    page = approver.post(f"/console/partners/{pid}/clients", {
        "name": "too early", "environment": "production", "scopes": ["payroll:read"],
        "jwks": json.dumps(public_jwks(new_ec_key())), "rate_plan": "standard",
        "require_dpop": "true"})
    assert page.status_code == 409 and "approved or active" in page.text
    with app.state.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OAuthClient).where(
            OAuthClient.partner_id == pid, OAuthClient.environment == "production")) == 0


def test_bad_client_forms_are_refused(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    applied = apply(http)
    pid = applied["partner_id"]
    reviewer.transition(pid, "review", "ok")
    approver.transition(pid, "approve", "ok")
    approver.get(f"/console/partners/{pid}/clients/new")
    base = {"name": "x", "environment": "production", "scopes": ["payroll:read"],
            "rate_plan": "standard", "require_dpop": "true"}
    private = new_ec_key().as_dict(private=True)
    cases = [
        ({"jwks": ""}, "jwks"),  # production needs keys
        ({"jwks": "{not json"}, "not valid JSON"),
        ({"jwks": '{"keys": ' + "[" * 5000 + "]" * 5000 + "}"}, "not valid JSON"),  # too deep
        ({"jwks": json.dumps({"keys": [private]})}, "public keys only"),
        ({"jwks": "", "jwks_uri": "https://127.0.0.1/jwks"}, "URL refused"),
        ({"jwks": json.dumps(public_jwks(new_ec_key())), "scopes": ["operations:write"]},
         "not grantable"),
        ({"jwks": json.dumps(public_jwks(new_ec_key())), "rate_plan": "galactic"}, "rate plan"),
        ({"jwks": json.dumps(public_jwks(new_ec_key())), "scopes": ["payroll:supervise"]},
         "regulators"),
    ]
    for extra, message in cases:
        page = approver.post(f"/console/partners/{pid}/clients", base | extra)
        assert page.status_code == 422, (extra, page.status_code, page.text[:300])
        assert message in page.text, (message, page.text)
    assert partner_status(app, pid) == "approved"
    with app.state.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OAuthClient).where(
            OAuthClient.partner_id == pid, OAuthClient.environment == "production")) == 0


def test_suspension_refuses_tokens_at_once_and_reactivation_restores_them(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    applied, sandbox, production = onboard(app, http, reviewer, approver)
    pid = applied["partner_id"]
    assert sandbox.get("/v1/partner").status_code == 200
    assert production.get("/v1/partner").status_code == 200

    # a reason is required; without it nothing changes
    approver.get(f"/console/partners/{pid}")
    no_reason = approver.post(f"/console/partners/{pid}/transitions",
                              {"action": "suspend", "reason": "  "})
    assert no_reason.status_code == 422 and "reason_required" in no_reason.text
    assert partner_status(app, pid) == "active"

    assert approver.transition(pid, "suspend", "suspected credential leak").status_code == 303
    # the very tokens issued before the suspension are refused on the next call
    for client in (sandbox, production):
        refused = client.get("/v1/partner")
        assert refused.status_code == 401 and "not active" in refused.json()["detail"]
    assert approver.transition(pid, "reactivate", "keys rotated").status_code == 303
    assert sandbox.get("/v1/partner").status_code == 200
    assert production.get("/v1/partner").status_code == 200
    assert partner_status(app, pid) == "active"


def test_offboarding_revokes_every_client_and_disables_webhooks(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    admin = console_user(app, "ada", ["admin"])
    applied, sandbox, production = onboard(app, http, reviewer, approver)
    pid = applied["partner_id"]
    created = sandbox.post("/v1/webhook-endpoints", {"url": "https://93.184.215.14/hooks",
                                                     "event_types": ["*"]})
    assert created.status_code == 201, created.text
    for client in (sandbox, production):  # tokens in hand before the offboarding
        assert client.get("/v1/partner").status_code == 200
    # only admins offboard
    assert approver.transition(pid, "offboard", "contract ended").status_code == 403
    assert partner_status(app, pid) == "active"
    assert admin.transition(pid, "offboard", "contract ended").status_code == 303
    assert partner_status(app, pid) == "offboarded"
    for client in (sandbox, production):
        assert client.get("/v1/partner").status_code == 401
    with app.state.database.transaction() as s:
        statuses = {c.status for c in s.scalars(select(OAuthClient).where(
            OAuthClient.partner_id == pid))}
        assert statuses == {"revoked"}
        endpoint = s.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.partner_id == pid)).one()
        assert (endpoint.status, endpoint.disabled_reason) == ("disabled", "partner_offboarded")
        event = s.scalars(select(Event).where(Event.type == "partner.offboarded")).one()
        assert set(event.data["revoked_clients"]) == {sandbox.client_id, production.client_id}
    # offboarded is final
    assert admin.transition(pid, "reactivate", "changed my mind").status_code == 409
    assert partner_status(app, pid) == "offboarded"


def test_rotate_and_revoke_clients(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    applied, sandbox, production = onboard(app, http, reviewer, approver)
    pid = applied["partner_id"]
    old_key = production.key
    # production rotation replaces the keys: assertions signed with the old key are refused
    new_key = new_ec_key()
    approver.get(f"/console/partners/{pid}/clients/{production.client_id}/rotate")
    rotated = approver.post(f"/console/partners/{pid}/clients/{production.client_id}/rotate",
                            {"jwks": json.dumps(public_jwks(new_key))})
    assert rotated.status_code == 303, rotated.text
    stale = http.post("/oauth/token", data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(production.client_id, old_key)},
        headers={"DPoP": dpop_proof(production.dpop_key, "POST", ISSUER + "/oauth/token")})
    assert stale.status_code in (400, 401) and stale.json()["error"] == "invalid_client"
    production.key, production._token = new_key, None
    assert production.get("/v1/partner").status_code == 200
    # sandbox rotation gives a new secret, shown once; the old one stops working
    approver.get(f"/console/partners/{pid}/clients/{sandbox.client_id}/rotate")
    page = approver.post(f"/console/partners/{pid}/clients/{sandbox.client_id}/rotate")
    assert page.status_code == 303
    page = approver.get(page.headers["location"])
    secret = page.text.split('data-testid="client-secret">')[1].split("<")[0]
    old = sandbox.secret
    sandbox.secret, sandbox._token = secret, None
    assert sandbox.get("/v1/partner").status_code == 200
    stale = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                      auth=(sandbox.client_id, old or ""))
    assert stale.status_code in (400, 401) and stale.json()["error"] == "invalid_client"
    # revoke
    approver.get(f"/console/partners/{pid}")
    assert approver.post(f"/console/partners/{pid}/clients/{sandbox.client_id}/revoke"
                         ).status_code == 303
    assert sandbox.get("/v1/partner").status_code == 401
    # a client of another partner is not found through this partner
    other = apply(http)
    approver.get(f"/console/partners/{pid}")
    assert approver.post(f"/console/partners/{pid}/clients/{other['sandbox']['client_id']}/revoke"
                         ).status_code == 404


def test_auditors_read_everything_and_change_nothing(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    approver = console_user(app, "alan", ["approver"])
    auditor = console_user(app, "audrey", ["auditor"])
    applied, sandbox, production = onboard(app, http, reviewer, approver)
    pid = applied["partner_id"]
    pending = apply(http)
    created = sandbox.post("/v1/webhook-endpoints", {"url": "https://93.184.215.14/hooks",
                                                     "event_types": ["*"]})
    eid = created.json()["id"]
    for path in ["/console/applications", "/console/applications?status=all",
                 "/console/partners", f"/console/partners/{pid}", "/console/usage",
                 f"/console/evidence?q={pid}", f"/console/partners/{pid}/webhooks/{eid}",
                 "/console/account"]:
        page = auditor.get(path)
        assert page.status_code == 200, (path, page.status_code)
    partner_page = auditor.get(f"/console/partners/{pid}")
    assert "/transitions" not in partner_page.text and "Revoke" not in partner_page.text
    assert auditor.get("/console/operators").status_code == 403

    def state() -> tuple:  # type: ignore[type-arg]
        with app.state.database.transaction() as s:
            return (partner_status(app, pid), partner_status(app, pending["partner_id"]),
                    sorted((c.id, c.status) for c in s.scalars(select(OAuthClient))),
                    s.scalar(select(func.count()).select_from(PartnerTransition)),
                    s.scalar(select(func.count()).select_from(Event).where(
                        Event.tenant_id != sandbox.tenant_id)))

    before = state()
    auditor.get(f"/console/partners/{pid}")
    attempts = [
        (f"/console/partners/{pending['partner_id']}/transitions", {"action": "review", "reason": "x"}),
        (f"/console/partners/{pid}/transitions", {"action": "suspend", "reason": "x"}),
        (f"/console/partners/{pid}/transitions", {"action": "offboard", "reason": "x"}),
        (f"/console/partners/{pid}/clients", {"name": "x", "environment": "sandbox",
                                             "scopes": ["payroll:read"]}),
        (f"/console/partners/{pid}/clients/{production.client_id}/revoke", {}),
        (f"/console/partners/{pid}/clients/{sandbox.client_id}/rotate", {}),
        ("/console/operators", {"username": "mallory", "roles": ["admin"],
                                "password": "a long enough password 1"}),
    ]
    for path, form in attempts:
        response = auditor.post(path, form)
        assert response.status_code == 403, (path, response.status_code, response.text[:300])
    assert state() == before


def test_partner_and_console_lookups_of_unknown_ids(app, http):
    admin = console_user(app, "ada", ["admin"])
    assert admin.get("/console/partners/ptn_nope").status_code == 404
    assert admin.get(f"/console/partners/{BANK_PARTNER_ID}").status_code == 404
    admin.get("/console/applications")
    response = admin.post("/console/partners/ptn_nope/transitions",
                          {"action": "review", "reason": "x"})
    assert response.status_code == 404
    applied = apply(http)
    admin.get(f"/console/partners/{applied['partner_id']}")
    unknown = admin.post(f"/console/partners/{applied['partner_id']}/transitions",
                         {"action": "teleport", "reason": "x"})
    assert unknown.status_code == 409 and "unknown_action" in unknown.text


def test_evidence_look_up_by_request_id(app, http):
    reviewer = console_user(app, "rita", ["reviewer"])
    auditor = console_user(app, "audrey", ["auditor"])
    applied = apply(http)
    pid = applied["partner_id"]
    response = reviewer.transition(pid, "review", "documents complete")
    request_id = response.headers["x-request-id"]
    page = auditor.get(f"/console/evidence?request_id={request_id}")
    assert page.status_code == 200
    assert request_id in page.text and "/console/partners/{partner_id}/transitions" in page.text
    by_partner = auditor.get(f"/console/evidence?q={pid}")
    assert "partner.reviewed" in by_partner.text and "partner.submitted" in by_partner.text
    assert "No evidence entries match" in auditor.get("/console/evidence?q=req_unknown").text


def test_two_approvers_at_once_approve_exactly_once(app, http):
    import threading

    reviewer = console_user(app, "rita", ["reviewer"])
    approvers = [console_user(app, name, ["approver"]) for name in ("alan", "anna")]
    applied = apply(http)
    pid = applied["partner_id"]
    reviewer.transition(pid, "review", "ok")
    for a in approvers:
        a.get(f"/console/partners/{pid}")
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def approve(user) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        statuses.append(user.post(f"/console/partners/{pid}/transitions",
                                  {"action": "approve", "reason": "signed"}).status_code)

    threads = [threading.Thread(target=approve, args=(a,)) for a in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [303, 409]
    with app.state.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PartnerTransition).where(
            PartnerTransition.partner_id == pid, PartnerTransition.action == "approve")) == 1


def _apply_many(app, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """`n` applications, one second apart (the queue's order), through the service."""
    from datetime import timedelta

    from partners import applications
    from partners.schemas import ApplicationIn
    from tests.partners.helpers import application

    names = []
    with app.state.database.transaction() as s:
        for i in range(n):
            applied = applications.apply(s, ApplicationIn.model_validate(
                application(legal_name=f"排队测试有限公司 {i:03d}")), source="api")
            applied.application.submitted_at += timedelta(seconds=i)
            names.append(applied.application.legal_name)
    return names


def test_the_application_queue_reaches_every_application_and_counts_them(app, http):
    names = _apply_many(app, 53)
    rita = console_user(app, "rita", ["reviewer"])
    queue = rita.get("/console/applications")
    # Oldest first, the order the queue is worked in, with the count.
    assert "1–50 of 53 applications" in queue.text
    assert names[0] in queue.text and names[49] in queue.text and names[50] not in queue.text
    assert queue.text.index(names[0]) < queue.text.index(names[1])
    last = rita.get("/console/applications?status=open&order=oldest&page=2")
    assert 'href="?status=open&amp;order=oldest&amp;page=2"' in queue.text  # "Next" and "Last"
    assert "51–53 of 53 applications" in last.text and names[52] in last.text
    assert names[0] not in last.text and 'href="?status=open&amp;order=oldest&amp;page=1"' in last.text
    # The newest first, on request.
    newest = rita.get("/console/applications?order=newest")
    assert newest.text.index(names[52]) < newest.text.index(names[51]) and names[2] not in newest.text
    # A page past the end is the last page; a page that is not a number is the first.
    assert names[52] in rita.get("/console/applications?page=99").text
    assert names[0] in rita.get("/console/applications?page=abc").text
    assert "1–50 of 53 applications" in rita.get("/console/applications?status=all").text
    # The partners list pages the same way (newest first), its count agreeing with the queue.
    partners = rita.get("/console/partners?status=submitted")
    assert "1–50 of 53 partners" in partners.text and "submitted (53)" in partners.text
    assert names[0] in rita.get("/console/partners?status=submitted&page=2").text
    # `%` and `_` typed in the search are characters, not wildcards.
    assert "0 partners" in rita.get("/console/partners?q=_").text


def _count_clients(app, pid: str, environment: str) -> int:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(OAuthClient).where(
            OAuthClient.partner_id == pid, OAuthClient.environment == environment,
            OAuthClient.status == "active")) or 0)


def test_issuing_a_client_acts_once_and_shows_the_secret_once(app, http):
    approver = console_user(app, "alan", ["approver"])
    applied = apply(http)
    pid = applied["partner_id"]
    approver.get(f"/console/partners/{pid}/clients/new")
    form = {"name": "Test harness", "environment": "sandbox", "scopes": ["payroll:read"],
            "rate_plan": "standard"}
    first = approver.post(f"/console/partners/{pid}/clients", form)
    assert first.status_code == 303, first.text  # Post/Redirect/Get
    # The same form again (double click, back and resubmit): no second client, the same result.
    again = approver.post(f"/console/partners/{pid}/clients", form)
    assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
    assert _count_clients(app, pid, "sandbox") == 2  # the application's own, and this one
    page = approver.get(first.headers["location"])
    assert page.status_code == 200 and "Client issued" in page.text
    client_id = page.text.split('data-testid="client-id">')[1].split("<")[0]
    secret = page.text.split('data-testid="client-secret">')[1].split("<")[0]
    client = PartnerClient(http=http, client_id=client_id, partner_id=pid, tenant_id="",
                           secret=secret)
    assert client.get("/v1/partner").status_code == 200
    # A reload shows the client, never the secret again, and issues nothing.
    reload = approver.get(first.headers["location"])
    assert reload.status_code == 200 and client_id in reload.text
    assert secret not in reload.text and 'data-testid="secret-gone"' in reload.text
    assert _count_clients(app, pid, "sandbox") == 2
    # Another operator cannot read the secret through the result page.
    other = console_user(app, "anna", ["approver"])
    assert secret not in other.get(first.headers["location"]).text
    with app.state.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(
            Event.type == "partner_client.issued", Event.resource_id == client_id)) == 1

    # Rotating: a repeated post does not rotate again (which would kill the secret just shown).
    approver.get(f"/console/partners/{pid}/clients/{client_id}/rotate")
    rotated = approver.post(f"/console/partners/{pid}/clients/{client_id}/rotate")
    repeated = approver.post(f"/console/partners/{pid}/clients/{client_id}/rotate")
    assert rotated.status_code == repeated.status_code == 303
    assert repeated.headers["location"] == rotated.headers["location"]
    page = approver.get(rotated.headers["location"])
    assert "Credentials rotated" in page.text
    client.secret, client._token = page.text.split('data-testid="client-secret">')[1].split("<")[0], None
    assert client.get("/v1/partner").status_code == 200
    assert 'data-testid="client-secret"' not in approver.get(rotated.headers["location"]).text
