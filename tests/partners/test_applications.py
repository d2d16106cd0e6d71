"""Applying: the API and the web form, sandbox credentials at once, validation, rate limit."""

from __future__ import annotations

import html

from sqlalchemy import func, select

from gateway.tenancy import Partner
from partners.models import PartnerApplication
from tests.partners.helpers import application, apply, csrf_of, make_uscc
from tests.tools.api import PartnerClient, make_app, problem


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_application_gives_sandbox_credentials_at_once(app, http):
    body = apply(http)
    assert body["status"] == "submitted"
    assert body["id"].startswith("papp_") and body["partner_id"].startswith("ptn_")
    sandbox = body["sandbox"]
    assert sandbox["client_secret"] and sandbox["token_endpoint"].endswith("/oauth/token")
    assert "webhooks:manage" in sandbox["scopes"]
    # personal data comes back masked
    contact = body["contacts"][0]
    assert contact["phone"] != "13812345678" and "5678" in contact["phone"]
    assert "zhang.wei@" not in contact["email"]

    pc = PartnerClient(http=http, client_id=sandbox["client_id"], partner_id=body["partner_id"],
                       tenant_id=sandbox["tenant_id"], secret=sandbox["client_secret"])
    profile = pc.get("/v1/partner")
    assert profile.status_code == 200, profile.text
    data = profile.json()
    assert data["status"] == "submitted" and data["products"] == ["chain_credit", "payroll"]
    envs = {e["environment"]: e for e in data["environments"]}
    assert envs["sandbox"]["status"] == "available"
    assert envs["production"]["status"] == "pending_approval"
    assert envs["production"]["tenant_id"] is None
    assert data["limits"]["rate_plan"] == "sandbox" and data["limits"]["requests_per_second"] > 0


def test_invalid_applications_are_refused_and_change_nothing(app, http):
    partners_before = _count(app, Partner)
    bad_uscc = make_uscc(1)[:-1] + ("0" if make_uscc(1)[-1] != "0" else "1")
    cases = [
        application(uscc=bad_uscc),
        application(uscc="123"),
        application(partner_type="bank"),
        application(contacts=[]),
        application(requested_products=["lottery"]),
        application(contacts=[{"name": "x", "email": "not-an-email", "phone": "13812345678"}]),
        application(contacts=[{"name": "x", "email": "a@b.example", "phone": "12345"}]),
        application(unexpected="field"),
        application(legal_name=" "),
    ]
    for body in cases:
        problem(http.post("/v1/partner-applications", json=body), 422, "validation_failed")
    problem(http.post("/v1/partner-applications", content=b"{nope",
                      headers={"content-type": "application/json"}), 400)
    assert _count(app, Partner) == partners_before
    assert _count(app, PartnerApplication) == 0


def test_duplicate_credit_code_is_accepted_and_flagged_for_reviewers(app, http):
    uscc = make_uscc(42)
    first = apply(http, uscc=uscc)
    second = apply(http, uscc=uscc)
    assert first["partner_id"] != second["partner_id"]


def test_application_endpoint_is_rate_limited_per_address(database, tmp_path):
    from starlette.testclient import TestClient

    app = make_app(database, tmp_path, public_endpoint_limits="3/minute")
    with TestClient(app, raise_server_exceptions=False) as http:
        for _ in range(3):
            apply(http)
        refused = http.post("/v1/partner-applications", json=application())
        body = problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"]
        assert body["detail"]
        # the web form shares the bucket
        page = http.get("/apply")
        form = http.post("/apply", data={"csrf_token": csrf_of(page.text)})
        assert form.status_code == 429
    assert _count(app, PartnerApplication) == 3


def test_web_form_application(app, http):
    page = http.get("/apply")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    uscc = make_uscc(7)
    form = {"legal_name": "苏州园区物业服务有限公司", "uscc": uscc, "partner_type": "park_operator",
            "products": ["collection", "accounts"], "contact_name": "李娜",
            "contact_email": "li.na@park.example", "contact_phone": "13900001111",
            "website": "", "description": ""}
    # without the form's CSRF token: refused, nothing created
    refused = http.post("/apply", data=form | {"csrf_token": "forged"})
    assert refused.status_code == 403
    assert _count(app, PartnerApplication) == 0
    # invalid input re-renders the form with the errors
    # (every rendering of the form sets a fresh token)
    invalid = http.post("/apply", data=form | {"uscc": "91320100000000000X",
                                               "csrf_token": csrf_of(refused.text)})
    assert invalid.status_code == 422 and "uscc" in invalid.text
    assert _count(app, PartnerApplication) == 0
    done = http.post("/apply", data=form | {"csrf_token": csrf_of(invalid.text)})
    assert done.status_code == 200, done.text
    assert "client-secret" in done.text and done.headers["cache-control"] == "no-store"
    with app.state.database.transaction() as s:
        row = s.scalars(select(PartnerApplication)).one()
        assert row.source == "web_form" and row.uscc == uscc
        assert row.requested_products == ["accounts", "collection"]


def test_profile_needs_a_token_and_is_per_partner(app, http, partner):
    problem(http.get("/v1/partner"), 401)
    data = partner.get("/v1/partner").json()
    assert data["id"] == partner.partner_id and data["products"] == []


def test_web_form_errors_are_plain_language(app, http):
    page = http.get("/apply")
    assert "<legend>Products</legend>" in page.text  # the checkboxes' group is named
    form = {"legal_name": "苏州园区物业服务有限公司", "uscc": "91320100000000000X",
            "partner_type": "park_operator", "products": ["collection"], "contact_name": "李娜",
            "contact_email": "li.na@park", "contact_phone": "12345", "website": "park.example",
            "description": "", "csrf_token": csrf_of(page.text)}
    invalid = http.post("/apply", data=form)
    assert invalid.status_code == 422
    text = html.unescape(invalid.text)
    for plain in ("unified social credit code printed on the business licence",
                  "contact's e-mail address", "11-digit mobile number",
                  "full address starting with https://"):
        assert plain in text, plain
    # No regular expressions, field paths or validator prefixes.
    for raw in ("pattern", "contacts.0", "Value error", "String should"):
        assert raw not in text, raw
    assert _count(app, PartnerApplication) == 0
    # An expired form tells an applicant whether to apply again.
    expired = http.post("/apply", data=form | {"csrf_token": "stale"})
    assert expired.status_code == 403 and "do not apply again" in expired.text
    assert "did not come from this console" not in expired.text
