"""Debit guards: a restricted account is debited only with an authorization its guard accepts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from gateway.db import Database
from products.accounts import service
from products.accounts.errors import DebitNotAuthorized, DebitRestricted
from products.accounts.guards import register_debit_guard, unregister_debit_guard
from products.accounts.models import Account
from products.accounts.port import DebitContext
from tests.products.accounts.factories import enterprise_account, funded_account, new_tenant


class ReleaseNotApproved(DebitNotAuthorized):
    code = "release_not_approved"


@pytest.fixture
def restriction() -> Iterator[str]:
    name = "test_" + uuid.uuid4().hex[:12]
    yield name
    unregister_debit_guard(name)


@pytest.fixture
def tenant(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s)


def _move(s, tenant, a, b, fen, ref, **kwargs):
    return service.transfer(s, tenant, from_account_id=a, to_account_id=b, amount_fen=fen,
                            journal_ref=ref, reference_type="test", reference_id=ref, **kwargs)


def test_a_restricted_account_without_a_guard_refuses_every_debit(database, tenant, restriction):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000, debit_restriction=restriction).id
        b = enterprise_account(s, tenant).id
        for authorization in (None, {"anything": True}):
            with pytest.raises(DebitRestricted) as caught:
                _move(s, tenant, a, b, 100, "r", authorization=authorization)
            assert caught.value.status == 403 and caught.value.code == "debit_restricted"
        with pytest.raises(DebitRestricted):
            service.place_hold(s, tenant, account_id=a, amount_fen=100, hold_ref="h",
                               reference_type="test", reference_id="h",
                               authorization={"anything": True})
        service.deposit(s, tenant, a, 500, journal_ref="credits-arrive")
        assert service.balance(s, tenant, a).ledger_fen == 1_500


def test_escrow_and_wage_accounts_are_restricted_by_default(database, tenant):
    with database.transaction() as s:
        escrow = enterprise_account(s, tenant, kind="escrow")
        wage = enterprise_account(s, tenant, kind="wage")
        plain = enterprise_account(s, tenant, kind="escrow", debit_restriction=None)
        assert (escrow.debit_restriction, wage.debit_restriction) == ("escrow", "wage_account")
        assert plain.debit_restriction is None


def test_the_guard_decides_with_the_presented_authorization(database, tenant, restriction):
    seen: list[DebitContext] = []

    def guard(session, account: Account, context: DebitContext) -> None:
        seen.append(context)
        if context.authorization != {"release": "rel_ok"}:
            raise ReleaseNotApproved("No approved release instruction.")

    register_debit_guard(restriction, guard)
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000, debit_restriction=restriction).id
        b = enterprise_account(s, tenant).id
        with pytest.raises(DebitRestricted):  # no authorization at all: the guard is not asked
            _move(s, tenant, a, b, 100, "none")
        assert seen == []
        with pytest.raises(ReleaseNotApproved) as caught:
            _move(s, tenant, a, b, 100, "wrong", authorization={"release": "rel_bad"})
        assert caught.value.code == "release_not_approved" and caught.value.status == 403
        entry = _move(s, tenant, a, b, 100, "right", authorization={"release": "rel_ok"},
                      purpose="escrow_release")
        assert not entry.replayed
        ctx = seen[-1]
        assert (ctx.operation, ctx.purpose, ctx.amount_fen, ctx.counterparty_account_id,
                ctx.reference_id, ctx.tenant_id) == ("transfer", "escrow_release", 100, b,
                                                     "right", tenant)
        hold = service.place_hold(s, tenant, account_id=a, amount_fen=300, hold_ref="h",
                                  reference_type="test", reference_id="h",
                                  authorization={"release": "rel_ok"})
        assert seen[-1].operation == "hold"
        with pytest.raises(ReleaseNotApproved):
            service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="cap-bad",
                                 authorization={"release": "rel_bad"})
        service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="cap",
                             authorization={"release": "rel_ok"})
        assert (seen[-1].operation, seen[-1].hold_id) == ("capture", hold.id)
        assert service.balance(s, tenant, a).ledger_fen == 600
        assert service.audit(s, tenant) == []


def test_a_restriction_has_one_guard(restriction):
    def first(session, account, context):
        return None

    def second(session, account, context):
        return None

    register_debit_guard(restriction, first)
    register_debit_guard(restriction, first)  # the same guard again: fine
    with pytest.raises(ValueError):
        register_debit_guard(restriction, second)
    register_debit_guard(restriction, second, replace=True)
    with pytest.raises(ValueError):
        register_debit_guard("Not A Name", first)


def test_a_refused_guard_records_a_failed_transfer(database, tenant, restriction):
    def guard(session, account, context):
        raise ReleaseNotApproved("No approved release instruction.")

    register_debit_guard(restriction, guard)
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000, debit_restriction=restriction).id
        b = enterprise_account(s, tenant).id
        record = service.create_transfer(s, tenant, from_account_id=a, to_account_id=b,
                                         amount_fen=100, actor="client_x",
                                         authorization={"release": "x"})
        assert (record.status, record.failure_code) == ("failed", "release_not_approved")
        assert service.balance(s, tenant, a).ledger_fen == 1_000
