"""/docs works offline: Swagger UI comes from the platform itself, never from a CDN.

The platform downloads nothing at run time, and a partner developer behind a bank's network
must still be able to read the API's documentation.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.tools.api import make_app, problem
from tests.tools.live import free_port, serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _referenced_urls(html: str) -> list[str]:
    """Every URL the page makes the browser load: src/href attributes and the spec's `url:`."""
    return (re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
            + re.findall(r"""\burl:\s*["']([^"']+)["']""", html))


def test_docs_references_only_same_origin_urls_that_answer(http):
    page = http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle(" in html
    assert "cdn." not in html and "http://" not in html and "https://" not in html
    urls = _referenced_urls(html)
    assert len(urls) >= 4, urls  # stylesheet, icon, script, the OpenAPI document
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
    assets = [u for u in urls if Path(urlsplit(u).path).suffix in ASSET_TYPES]
    assert {Path(u).suffix for u in assets} == set(ASSET_TYPES), assets
    for url in assets:
        answer = http.get(url)
        assert answer.status_code == 200, url
        assert answer.headers["content-type"].split(";")[0] == ASSET_TYPES[Path(url).suffix], url
        assert answer.headers["x-content-type-options"] == "nosniff"
    script = http.get(next(u for u in assets if u.endswith(".js"))).text
    assert "SwaggerUIBundle" in script and 'PACKAGE_VERSION:"5.' in script  # Swagger UI 5: OAS 3.1
    assert ".swagger-ui" in http.get(next(u for u in assets if u.endswith(".css"))).text
    spec = http.get(next(u for u in urls if u.endswith("openapi.json")))
    assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")


def test_docs_page_policy_allows_its_own_scripts_only(http):
    page = http.get("/docs")
    policy = dict(part.strip().split(" ", 1)
                  for part in page.headers["content-security-policy"].split(";"))
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"].split() == ["'self'", f"'sha256-{digest}'"]
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "http" not in page.headers["content-security-policy"]


def test_unknown_docs_asset_is_a_problem(http):
    problem(http.get("/assets/docs/redoc.standalone.js"), 404)
    problem(http.get("/assets/docs/..%2F__init__.py"), 404)
    # FastAPI's default pages are not served: ReDoc is off, and client credentials never
    # redirect to an OAuth redirect page.
    problem(http.get("/redoc"), 404)
    problem(http.get("/docs/oauth2-redirect"), 404)


@pytest.mark.browser
def test_docs_render_in_a_browser_that_cannot_reach_the_internet(database, tmp_path):
    """Headless Chromium with every request off the platform's origin refused: Swagger UI
    renders the operations, and the page's policy blocks nothing it needs."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    app = make_app(database, tmp_path, issuer=f"http://127.0.0.1:{port}")
    with serve(app, port) as base, httpx.Client(base_url=base) as api, sync_playwright() as pw:
        operations = sum(len(item) for item in api.get("/openapi.json").json()["paths"].values())
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            elsewhere: list[str] = []
            messages: list[str] = []

            def route(r):  # type: ignore[no-untyped-def]
                if r.request.url.startswith(base + "/"):
                    r.continue_()
                else:
                    elsewhere.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("console", lambda msg: messages.append(msg.text))
            page.goto(base + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("Quanlian API")
            expect(page.locator(".opblock")).to_have_count(operations, timeout=20000)
            assert elsewhere == []
            assert not [m for m in messages if "Content Security Policy" in m], messages
        finally:
            browser.close()
