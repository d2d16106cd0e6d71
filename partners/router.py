"""The partners package's routes and wiring (one entry in gateway.app.ROUTERS).

`setup(app)` configures webhook delivery for the app's database, registers the worker jobs
(`webhooks.fan_out`, `webhooks.deliver`, `usage.flush`), hooks the usage counters into the
edge middleware's call observers, serves the console's stylesheet and answers a console
request without a session with a redirect to the login page.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.jobs import register_job
from gateway.routing import Router
from partners import usage
from partners.api import router as api_router
from partners.console.router import router as console_router
from partners.console.session import LoginRequired, login_redirect
from partners.settings import get_partner_settings
from partners.webhooks import delivery
from partners.webhooks.router import events_router
from partners.webhooks.router import router as webhooks_router

router = Router()
router.include_router(api_router)
router.include_router(webhooks_router)
router.include_router(events_router)
router.include_router(console_router)


def setup(app: FastAPI) -> None:
    settings = get_partner_settings()
    delivery.configure(app.state.database, delivery.WebhookConfig.from_settings(
        app.state.settings.webhook_allow_loopback, settings))
    app.state.webhooks = delivery.config_for(app.state.database)
    usage.install(app)
    register_job("webhooks.fan_out", delivery.fan_out_job, 0.5)
    register_job("webhooks.deliver", delivery.deliver_due, 1.0)
    register_job("usage.flush", usage.flush_job, settings.usage_flush_seconds)
    app.add_exception_handler(LoginRequired, login_redirect)
    app.mount("/assets/console", StaticFiles(directory=Path(__file__).parent / "console" / "static"),
              name="console-assets")
