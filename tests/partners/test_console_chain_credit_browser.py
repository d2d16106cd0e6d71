"""The chain-credit pages in headless Chromium: an approver finds the tenant through the
console's navigation and grants its core enterprise a facility through the form. Screenshots go
to test-output/partners-console/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from tests.partners.helpers import PASSWORD, make_operator
from tests.partners.test_console_browser import ARGS, CHROMIUM, SHOTS
from tests.products.chain_credit.helpers import BASE, money, register, today
from tests.tools.api import make_app, new_partner_client
from tests.tools.live import free_port, serve


@pytest.mark.browser
def test_an_approver_grants_a_facility_through_the_form(database, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app = make_app(database, tmp_path, issuer=f"http://127.0.0.1:{port}")
    make_operator(app, "alan", ["approver"])
    pc = new_partner_client(app, TestClient(app, raise_server_exceptions=False),
                            name="链通供应链平台")
    core = register(app, pc, name="华东核心装备集团有限公司", role="core_enterprise", upstream=None)
    expires_on = (today(app, pc.tenant_id) + timedelta(days=365)).isoformat()

    with serve(app, port) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(base + "/console/login")
            page.fill("#username", "alan")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.get_by_test_id("whoami")).to_contain_text("Alan")
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Chain credit").click()
            page.get_by_label("Environment").select_option("sandbox")
            page.get_by_role("button", name="Filter").click()
            page.get_by_role("link", name="链通供应链平台").click()
            expect(page.get_by_test_id("tenant-id")).to_have_text(pc.tenant_id)
            form = page.locator("form[data-action=grant]")
            form.get_by_label("Core enterprise").select_option(core.id)
            form.get_by_label("Limit").fill("3000000.00")
            form.get_by_label("Expiry date").fill(expires_on)
            form.get_by_label("Guarantee circle").fill("gc-sz-elec-01")
            form.get_by_label("Discount rate").fill("0.0385")
            page.screenshot(path=str(SHOTS / "20-chain-credit-grant-form.png"), full_page=True)
            form.get_by_role("button", name="Grant facility").click()
            expect(page.get_by_role("status")).to_have_text("Facility granted.")
            row = page.locator("tr[data-facility]")
            expect(row).to_have_count(1)
            expect(row.get_by_test_id("facility-status")).to_have_text("active")
            expect(row).to_contain_text("3000000.00")
            expect(row).to_contain_text("GC-SZ-ELEC-01")
            page.screenshot(path=str(SHOTS / "21-chain-credit-granted.png"), full_page=True)
        finally:
            browser.close()

    [facility] = pc.get(f"{BASE}/facilities").json()["data"]
    assert facility["core_enterprise_id"] == core.id and facility["limit"] == money("3000000.00")
    assert facility["expires_on"] == expires_on and facility["guarantee_circle"] == "GC-SZ-ELEC-01"
    assert (SHOTS / "21-chain-credit-granted.png").stat().st_size > 5_000
