"""Rows deleted under a request or a job (a sandbox reset deletes a tenant's collection data
while its other calls run): the call gets a 409 it may retry and writes nothing, a job skips
the tenant, and never a 500. Also: a park tenant's longest name and unit fit its account."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update

from gateway.errors import Conflict
from products.accounts import service as accounts
from products.accounts.models import Account
from products.collection import service, settlement
from products.collection.models import CollectionSettings, VirtualAccount
from tests.products.collection.support import setup_platform, uscc
from tests.tools.api import problem
from tests.tools.databases import PG_URL

# On SQLite a transaction reads one snapshot: a row deleted after its first read is still seen,
# and its write is refused as busy (already a 409). PostgreSQL reads each statement afresh.
pg_only = pytest.mark.skipif(not PG_URL, reason="needs a fresh read per statement")


def virtual_accounts(p) -> int:
    with p.database.transaction() as s:
        return s.scalar(select(func.count()).select_from(VirtualAccount)
                        .where(VirtualAccount.tenant_id == p.tenant_id))


def test_a_platform_account_deleted_before_a_virtual_account_is_opened_is_a_422(app, http):
    p = setup_platform(app, http, mandate=False)
    with p.database.transaction() as s:
        s.execute(delete(Account).where(Account.id == p.platform_account))
    problem(p.post("/virtual-accounts", {"label": "付款人 10023"}), 422,
            "parent_account_not_found")
    assert virtual_accounts(p) == 0


@pg_only
def test_a_platform_account_deleted_while_a_virtual_account_is_opened_is_a_409(
        app, http, monkeypatch):
    """The parent was checked, then deleted by another transaction before the new account
    was written (the race a sandbox reset makes): the database refuses the write."""
    p = setup_platform(app, http, mandate=False)
    find = accounts._find_account

    def find_then_lose(session, tenant_id, account_id):
        found = find(session, tenant_id, account_id)
        if account_id == p.platform_account:  # the parent, checked: now a reset deletes it
            with p.database.engine.begin() as other:
                other.execute(delete(Account).where(Account.id == account_id))
        return found

    monkeypatch.setattr(accounts, "_find_account", find_then_lose)
    body = problem(p.post("/virtual-accounts", {"label": "付款人 10023"}), 409,
                   "concurrent_update")
    assert "retry" in body["detail"]
    assert virtual_accounts(p) == 0


def test_a_park_tenant_with_the_longest_name_and_unit_is_created_whole(app, http):
    p = setup_platform(app, http, mandate=False)
    park = p.post("/parks", {"name": "星湖科技园", "sub_merchant_id": p.merchants[0]})
    assert park.status_code == 201, park.text
    name, unit = "苏" * 200, "B" * 60
    created = p.post(f"/parks/{park.json()['id']}/tenants",
                     {"name": name, "uscc": uscc(), "unit": unit})
    assert created.status_code == 201, created.text
    occupant = created.json()
    assert (occupant["name"], occupant["unit"]) == (name, unit)
    account = p.get(f"/virtual-accounts/{occupant['virtual_account_id']}")
    assert account.status_code == 200, account.text
    label = account.json()["label"]
    assert len(label) == 200 and label.endswith(" " + unit) and label.startswith("苏" * 139)


@pg_only
def test_settlement_skips_a_tenant_whose_settings_were_deleted_after_it_read_them(app, http):
    p = setup_platform(app, http, mandate=False)
    with p.database.transaction() as s:  # nothing settled yet: the job has a day to settle
        s.execute(update(CollectionSettings).where(CollectionSettings.tenant_id == p.tenant_id)
                  .values(settled_through=None))
    with p.database.transaction() as s:
        read = s.get(CollectionSettings, p.tenant_id)  # read, then deleted
        assert read is not None and read.settled_through is None
        with p.database.engine.begin() as other:
            other.execute(delete(CollectionSettings)
                          .where(CollectionSettings.tenant_id == p.tenant_id))
        assert settlement.settle_due(s, p.tenant_id, p.now()) == 0


@pg_only
def test_settings_deleted_while_being_changed_are_a_retryable_conflict(app, http):
    p = setup_platform(app, http, mandate=False)
    with p.database.transaction() as s:
        read = s.get(CollectionSettings, p.tenant_id)  # held, as the request holds it
        assert read is not None
        with p.database.engine.begin() as other:
            other.execute(delete(CollectionSettings)
                          .where(CollectionSettings.tenant_id == p.tenant_id))
        with pytest.raises(Conflict) as raised:
            service.update_settings(s, p.tenant_id, "test",
                                    service.schemas.SettingsUpdate(order_ttl_seconds=600))
    assert raised.value.code == "concurrent_update"
