"""Webhook delivery to real local receivers: the app here lets sandbox endpoints point at them."""

from __future__ import annotations

import pytest

from tests.partners.helpers import Receiver
from tests.tools.api import make_app


@pytest.fixture
def app(database, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Sandbox endpoints may point at the local receivers here."""
    application = make_app(database, tmp_path_factory.mktemp("data"), webhook_allow_loopback=True)
    application.state.webhooks.timeout = 2.0
    return application


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    r = Receiver().start()
    yield r
    r.stop()
