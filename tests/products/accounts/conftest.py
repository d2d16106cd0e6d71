"""Fixtures of the accounts tests: a vault for personal data (the app factory installs one in
the running app; service-level tests install their own)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway import pii


@pytest.fixture(autouse=True)
def vault() -> Iterator[pii.Vault]:
    try:
        previous: pii.Vault | None = pii.get_vault()
    except pii.VaultNotConfigured:
        previous = None
    installed = pii.Vault(os.urandom(32))
    pii.set_vault(installed)
    yield installed
    pii.set_vault(previous)
