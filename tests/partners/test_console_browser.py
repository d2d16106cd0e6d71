"""The console in headless Chromium: an applicant applies through the web form, two operators
take the application through maker-checker approval, and the approver issues a production
client. Screenshots go to test-output/partners-console/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.oauth.models import OAuthClient
from gateway.tenancy import Partner
from tests.partners.helpers import PASSWORD, make_operator, make_uscc
from tests.tools.api import make_app, new_ec_key, public_jwks
from tests.tools.live import free_port, serve

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "partners-console"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.mark.browser
def test_two_operators_approve_an_application_and_issue_a_production_client(database, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app = make_app(database, tmp_path, issuer=f"http://127.0.0.1:{port}")
    make_operator(app, "rita", ["reviewer"])
    make_operator(app, "alan", ["approver"])
    legal_name = "苏州工业园区智慧食堂科技有限公司"
    jwks = json.dumps(public_jwks(new_ec_key()))

    with serve(app, port) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            # the applicant
            applicant = browser.new_context(viewport={"width": 1280, "height": 900})
            page = applicant.new_page()
            page.goto(base + "/apply")
            page.fill("#legal_name", legal_name)
            page.fill("#uscc", make_uscc(2024))
            page.select_option("#partner_type", "canteen_platform")
            page.check("input[name=products][value=collection]")
            page.check("input[name=products][value=accounts]")
            page.fill("#contact_name", "王芳")
            page.fill("#contact_email", "wang.fang@canteen.example")
            page.fill("#contact_phone", "13700001234")
            page.screenshot(path=str(SHOTS / "01-apply-form.png"), full_page=True)
            page.click("button[type=submit]")
            expect(page.get_by_test_id("client-secret")).to_be_visible()
            page.screenshot(path=str(SHOTS / "02-application-received.png"), full_page=True)
            applicant.close()

            # the reviewer (maker)
            reviewer = browser.new_context(viewport={"width": 1280, "height": 900})
            page = reviewer.new_page()
            page.goto(base + "/console")
            expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole")
            page.fill("#username", "rita")
            page.fill("#password", PASSWORD)
            page.screenshot(path=str(SHOTS / "03-login.png"))
            page.click("button[type=submit]")
            expect(page.get_by_test_id("whoami")).to_contain_text("Rita")
            page.screenshot(path=str(SHOTS / "04-application-queue.png"), full_page=True)
            page.get_by_role("link", name=legal_name).click()
            expect(page.get_by_test_id("partner-status")).to_have_text("submitted")
            form = page.locator("form[data-action=review]")
            form.locator("textarea").fill("营业执照与统一社会信用代码核验一致; contacts verified by phone.")
            form.locator("button").click()
            expect(page.get_by_test_id("partner-status")).to_have_text("in_review")
            assert page.locator("form[data-action=approve]").count() == 0  # reviewers cannot
            page.screenshot(path=str(SHOTS / "05-reviewed.png"), full_page=True)
            partner_url = page.url.split("?")[0]
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(base + "/console/login")
            reviewer.close()

            # the approver (checker)
            approver = browser.new_context(viewport={"width": 1280, "height": 900})
            page = approver.new_page()
            page.goto(base + "/console/login")
            page.fill("#username", "alan")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.get_by_test_id("whoami")).to_contain_text("Alan")
            page.goto(partner_url)
            form = page.locator("form[data-action=approve]")
            form.locator("textarea").fill("Cooperation agreement signed; risk rating B.")
            form.locator("button").click()
            expect(page.get_by_test_id("partner-status")).to_have_text("approved")
            page.screenshot(path=str(SHOTS / "06-approved.png"), full_page=True)

            page.get_by_role("link", name="Issue a production client").click()
            expect(page.locator("h1")).to_contain_text("Issue a client")
            page.check("input[name=scopes][value='collection:read']")
            page.check("input[name=scopes][value='collection:write']")
            page.check("input[name=scopes][value='webhooks:manage']")
            page.fill("#jwks", jwks)
            page.select_option("#rate_plan", "standard")
            page.screenshot(path=str(SHOTS / "07-issue-client-form.png"), full_page=True)
            page.get_by_role("button", name="Issue client").click()
            client_id = page.get_by_test_id("client-id").inner_text().strip()
            assert client_id.startswith("cli_")
            page.screenshot(path=str(SHOTS / "08-client-issued.png"), full_page=True)
            page.goto(partner_url)
            expect(page.get_by_test_id("partner-status")).to_have_text("active")
            page.screenshot(path=str(SHOTS / "09-partner-active.png"), full_page=True)
            approver.close()
        finally:
            browser.close()

    with database.transaction() as s:
        partner = s.scalars(select(Partner).where(Partner.name == legal_name)).one()
        assert partner.status == "active"
        client = s.get(OAuthClient, client_id)
        assert client is not None and client.environment == "production"
        assert client.require_dpop and client.scopes.split() == [
            "collection:read", "collection:write", "webhooks:manage"]
    for name in ("01-apply-form", "04-application-queue", "05-reviewed", "06-approved",
                 "08-client-issued", "09-partner-active"):
        assert (SHOTS / f"{name}.png").stat().st_size > 5_000
