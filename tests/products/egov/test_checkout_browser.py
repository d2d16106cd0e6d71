"""The embedded checkout in headless Chromium.

A tiny government portal, served by the test on its own origin, embeds the checkout in an
iframe. The payer pays with the keyboard only; the portal page receives the outcome through
postMessage; the return link takes the top window back to the portal with a result that
verifies against the platform's JWKS; the portal's webhook receives `egov_payment.succeeded`.
A page on a foreign origin cannot frame the checkout. Screenshots go to test-output/egov/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from standardwebhooks import Webhook

from gateway.jobs import run_all_once
from tests.products.egov.helpers import CARD, open_account, order_body
from tests.tools.api import make_app, new_partner_client
from tests.tools.live import free_port, serve

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "test-output" / "egov"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

PORTAL_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>一网通办 · 缴费</title>
<style>body{{font-family:sans-serif;margin:0;background:#eef2f7}} header{{background:#a61b1b;color:#fff;
padding:12px 16px}} main{{display:flex;gap:16px;padding:16px}} iframe{{width:420px;height:860px;
border:1px solid #999;background:#fff}} #outcome{{font-family:monospace;white-space:pre-wrap;
max-width:520px;word-break:break-all}}</style></head>
<body><header>一网通办 — 机动车驾驶证补领（门户 {origin}）</header>
<main><iframe id="checkout" title="缴费" src="{checkout}"></iframe>
<section><h2>门户收到的结果</h2><div id="outcome">等待支付…</div></section></main>
<script>
window.addEventListener("message", function (event) {{
  if (event.origin !== "{platform}") {{ return; }}
  window.__outcome = event.data;
  document.getElementById("outcome").textContent = JSON.stringify(event.data, null, 2);
}});
</script></body></html>"""


class Portal:
    """A portal's web server: its payment page, its return URL and its webhook receiver."""

    def __init__(self) -> None:
        self.page = ""
        self.returns: list[str] = []
        self.webhooks: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/pay"):
                    self._send(200, portal.page)
                elif self.path.startswith("/done"):
                    with portal.lock:
                        portal.returns.append(self.path)
                    self._send(200, "<!doctype html><html lang='zh-CN'><meta charset='utf-8'>"
                                    "<h1 id='returned'>已返回门户</h1></html>")
                else:
                    self._send(404, "not found", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with portal.lock:
                    portal.webhooks.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self._send(204, "", "text/plain")

        return Handler


@contextmanager
def run_portal(portal: Portal, port: int) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", port), portal.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.browser
def test_embedded_checkout_pays_and_tells_the_portal(database, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    port, portal_port, foreign_port = free_port(), free_port(), free_port()
    app = make_app(database, tmp_path, issuer=f"http://127.0.0.1:{port}", webhook_allow_loopback=True)
    portal, foreign = Portal(), Portal()

    with serve(app, port) as base, run_portal(portal, portal_port) as portal_origin, \
            run_portal(foreign, foreign_port) as foreign_origin, \
            httpx.Client(base_url=base, timeout=30) as api, sync_playwright() as pw:
        pc = new_partner_client(app, api)
        payee = open_account(app, pc.tenant_id, name="上海市财政局非税收入专户")
        setup = pc.request("PUT", "/v1/egov/portal", json={
            "name": "一网通办", "payee_name": "上海市公安局交通警察总队", "payee_account_id": payee,
            "origins": [portal_origin]})
        assert setup.status_code == 200, setup.text
        hook = pc.post("/v1/webhook-endpoints", {"url": portal_origin + "/webhook",
                                                 "event_types": ["egov_payment.*"]})
        assert hook.status_code == 201, hook.text
        order_response = pc.post("/v1/egov/payment-orders", order_body(
            return_url=portal_origin + "/done?case=J2026-001",
            amount={"amount": "10.00", "currency": "CNY"}))
        assert order_response.status_code == 201, order_response.text
        order = order_response.json()
        checkout = order["checkout_url"]
        portal.page = PORTAL_PAGE.format(origin=portal_origin, checkout=checkout, platform=base)
        foreign.page = PORTAL_PAGE.format(origin=foreign_origin, checkout=checkout, platform=base)

        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 920}, locale="zh-CN")
            page = context.new_page()
            page.goto(portal_origin + "/pay")
            frame = page.frame_locator("iframe#checkout")
            expect(frame.locator("#amount")).to_contain_text("10.00")
            expect(frame.locator("#item")).to_contain_text("机动车驾驶证工本费")
            expect(frame.locator("#payee")).to_contain_text("上海市公安局交通警察总队")
            page.screenshot(path=str(SHOTS / "01-portal-embeds-checkout.png"))

            # Keyboard only: labelled fields, Tab between them, Enter submits.
            frame.get_by_label("银行卡号/账号").focus()
            page.keyboard.type(CARD)
            page.keyboard.press("Tab")
            page.keyboard.type("123456")
            expect(frame.get_by_label("网银密码")).to_be_focused()
            page.screenshot(path=str(SHOTS / "02-payer-enters-card.png"))
            page.keyboard.press("Enter")

            expect(frame.locator("#outcome")).to_have_attribute("data-status", "paid")
            page.wait_for_function("window.__outcome !== undefined", timeout=15000)
            outcome = page.evaluate("window.__outcome")
            expect(page.locator("#outcome")).to_contain_text("paid")
            page.screenshot(path=str(SHOTS / "03-portal-receives-outcome.png"))
            assert outcome["type"] == "quanlian.egov.checkout" and outcome["status"] == "paid"
            assert outcome["order_id"] == order["id"]

            jwks = KeySet.import_key_set(api.get("/oauth/jwks").json())
            claims = jwt.decode(outcome["result"], jwks, algorithms=["ES256"]).claims
            assert claims["status"] == "paid" and claims["aud"] == pc.client_id
            assert claims["iss"] == base and claims["order_id"] == order["id"]

            # The return link takes the top window back to the portal with the signed result.
            frame.locator("#return-link").click()
            expect(page.locator("#returned")).to_be_visible()
            page.screenshot(path=str(SHOTS / "04-returned-to-portal.png"))
            assert page.url.startswith(portal_origin + "/done?case=J2026-001")
            returned = parse_qs(urlsplit(portal.returns[-1]).query)
            assert returned["case"] == ["J2026-001"]
            decoded = jwt.decode(returned["egov_result"][0], jwks, algorithms=["ES256"])
            assert decoded.header["typ"] == "egov-result+jwt"
            assert decoded.claims["order_id"] == order["id"] and decoded.claims["status"] == "paid"

            # English toggle and a mobile viewport, on the settled order.
            mobile = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone = mobile.new_page()
            phone.goto(checkout + "?lang=en")
            expect(phone.locator("#outcome")).to_contain_text("Payment successful")
            phone.screenshot(path=str(SHOTS / "05-mobile-english-result.png"), full_page=True)
            mobile.close()

            # A foreign origin cannot frame the checkout (CSP frame-ancestors).
            blocked = context.new_page()
            violations: list[str] = []
            blocked.on("console", lambda msg: violations.append(msg.text))
            blocked.goto(foreign_origin + "/pay")
            blocked.wait_for_timeout(1000)
            framed = [f for f in blocked.frames if f != blocked.main_frame]
            assert framed, "the foreign page has no iframe"
            assert framed[0].locator("#outcome, #bank-form").count() == 0
            assert any("frame-ancestors" in v for v in violations), violations
            blocked.screenshot(path=str(SHOTS / "06-foreign-origin-blocked.png"))
            context.close()
        finally:
            browser.close()

        # The portal's webhook receives the payment, signed (Standard Webhooks).
        for _ in range(10):
            run_all_once(app.state.database, only=["webhooks.fan_out", "webhooks.deliver"])
            if any(json.loads(body)["type"] == "egov_payment.succeeded" for _, body in portal.webhooks):
                break
        delivered = [(h, b) for h, b in portal.webhooks if json.loads(b)["type"] == "egov_payment.succeeded"]
        assert len(delivered) == 1, [json.loads(b)["type"] for _, b in portal.webhooks]
        headers, body = delivered[0]
        payload = Webhook(hook.json()["secret"]).verify(body, headers)
        assert payload["data"]["id"] == order["id"] and payload["data"]["status"] == "paid"
