"""The API's documentation page, `/docs`: Swagger UI, served by the platform itself.

FastAPI's own page loads Swagger UI's script and stylesheet from a CDN, so it is blank where the
platform runs offline (a bank's network), and the platform must download nothing at run time.
Here the page's assets are package data of `fastapi-offline` (pinned in pyproject.toml; it
ships Swagger UI 5, which renders OpenAPI 3.1 as Swagger UI 4 does not), served from
`/assets/docs/` with fixed content types. ReDoc is not offered.

The page carries its own Content-Security-Policy (the edge middleware leaves HTML pages'
policies to them): scripts from the platform's origin and the page's one inline script, by its
hash; connections (the OpenAPI document, "Try it out", the token endpoint) to the same origin;
images from the origin or `data:` (Swagger UI's icons). Inline styles are allowed: Swagger UI
sets style attributes. The online validator badge is switched off (`validatorUrl: null`), so
the page makes no call elsewhere. The only OAuth flow the document declares is client
credentials, which never redirects, so there is no OAuth redirect page.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

DOCS_URL = "/docs"
ASSETS_URL = "/assets/docs"

_STATIC = Path(str(resources.files("fastapi_offline") / "static"))
# name under ASSETS_URL -> (file in the package, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": ("favicon.png", "image/png"),
}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(html: str) -> str:
    """The page's policy: its inline scripts by hash, everything else from its own origin."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html))
    return ("default-src 'none'; "
            f"script-src 'self' {hashes}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def setup(app: FastAPI) -> None:
    """Serve `/docs` and its assets (create the app with `docs_url=None`)."""

    async def docs_page(request: Request) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + str(app.openapi_url),
            title=app.title + " - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )
        html = bytes(page.body).decode()
        return HTMLResponse(html, headers={
            "Content-Security-Policy": content_security_policy(html),
            "X-Frame-Options": "DENY",
        })

    async def docs_asset(request: Request) -> Response:
        found = ASSETS.get(request.path_params["name"])
        if found is None:
            raise HTTPException(404)
        filename, media_type = found
        return FileResponse(_STATIC / filename, media_type=media_type,
                            headers={"Cache-Control": "public, max-age=86400"})

    app.add_route(DOCS_URL, docs_page, include_in_schema=False)
    app.add_route(ASSETS_URL + "/{name}", docs_asset, include_in_schema=False)
