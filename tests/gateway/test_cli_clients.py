"""`quanlian clients create` grants supervisor scopes as the console does: to government_portal
partners only (`partners.credentials.check_supervisor_scopes`, the one rule)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.oauth.models import OAuthClient
from gateway.settings import get_settings
from gateway.tenancy import Partner


@pytest.fixture
def run(database, tmp_path, monkeypatch):
    monkeypatch.setenv("QUANLIAN_DATABASE_URL", database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["clients", "create", *args])

    yield invoke
    get_settings.cache_clear()


def _error(result) -> str:
    """The usage error's text, out of the box the terminal may draw around it."""
    assert result.exit_code == 2, result.output
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


def _counts(database) -> tuple[int, int]:
    with database.transaction() as s:
        return (s.scalar(select(func.count()).select_from(Partner)),
                s.scalar(select(func.count()).select_from(OAuthClient)))


def test_supervisor_scopes_are_refused_to_a_partner_that_is_no_government_portal(run, database):
    error = _error(run("--name", "某区人社局QA", "--scopes", "payroll:supervise egov:supervise"))
    assert "--scopes" in error and "invalid_scope" in error
    assert "payroll:supervise egov:supervise: supervisor scopes are for regulators' portals " \
           "(government_portal partners) only, not a software_vendor partner." in error
    assert _counts(database) == (0, 0)  # nothing written: neither the partner nor a client

    # An existing software vendor gets partner scopes, never supervisor ones.
    assert run("--name", "Vendor", "--scopes", "accounts:read").exit_code == 0
    assert "not a software_vendor partner" in _error(run("--name", "Vendor", "--scopes",
                                                         "accounts:read egov:supervise"))
    assert _counts(database) == (1, 1)
    # Its type is not changed on the way.
    error = _error(run("--name", "Vendor", "--partner-type", "government_portal",
                       "--scopes", "egov:supervise"))
    assert "--partner-type" in error and "exists as a software_vendor partner" in error
    assert _counts(database) == (1, 1)


def test_a_government_portal_partner_gets_supervisor_scopes(run, database):
    result = run("--name", "某区教育局", "--partner-type", "government_portal",
                 "--scopes", "payroll:supervise egov:supervise")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["scopes"] == ["egov:supervise", "payroll:supervise"]
    with database.transaction() as s:
        assert s.get(Partner, out["partner_id"]).partner_type == "government_portal"
    again = run("--name", "某区教育局", "--scopes", "egov:supervise")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["partner_id"] == out["partner_id"]
    assert "government_portal" in _error(run("--name", "X", "--partner-type", "bank",
                                              "--scopes", "accounts:read"))
    assert _counts(database) == (1, 2)
