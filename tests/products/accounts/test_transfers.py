"""Transfers as the API sees them: every outcome recorded, announced, and money moved only once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from gateway.db import Database
from gateway.events import Event
from gateway.tenancy import advance_clock
from products.accounts import magic, service
from products.accounts.errors import AccountNotFound, InvalidAmount, SameAccount, TransferNotFound
from products.accounts.models import Transfer
from tests.products.accounts.factories import (
    enterprise_account,
    funded_account,
    new_tenant,
    person_account,
)
from tests.tools.jobs import assert_failure_logged, break_clock


def _events(session, resource_id: str) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.resource_id == resource_id)
                                .order_by(Event.created_at, Event.id)))


@pytest.fixture
def production(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s, "production")


@pytest.fixture
def sandbox(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s, "sandbox")


def test_a_completed_transfer_has_its_entry_and_event(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 10_000).id
        b = enterprise_account(s, production).id
        record = service.create_transfer(s, production, from_account_id=a, to_account_id=b,
                                         amount_fen=1_234, memo="货款", actor="client_1")
        assert record.status == "completed" and record.journal_entry_id
        assert record.id.startswith("trf_") and record.resolved_at is not None
        (event,) = _events(s, record.id)
        assert event.type == "transfer.completed" and event.actor == "client_1"
        assert event.data["amount"] == {"amount": "12.34", "currency": "CNY"}
        assert event.data["status"] == "completed"
        lines = service.transactions(s, production, b).data
        assert lines[0].reference_type == "transfer" and lines[0].reference_id == record.id
        assert service.get_transfer(s, production, record.id).id == record.id


def test_insufficient_funds_is_a_recorded_failed_transfer_that_moves_nothing(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 1_000).id
        b = enterprise_account(s, production).id
        record = service.create_transfer(s, production, from_account_id=a, to_account_id=b,
                                         amount_fen=1_001, actor="client_1")
        assert (record.status, record.failure_code, record.journal_entry_id) == (
            "failed", "insufficient_funds", None)
        assert "10.00 available" in record.failure_message
        assert [e.type for e in _events(s, record.id)] == ["transfer.failed"]
        assert service.balance(s, production, a).ledger_fen == 1_000
        assert service.transactions(s, production, b).data == []
    with database.transaction() as s:  # the failure was committed with the request
        assert s.get(Transfer, record.id).status == "failed"


def test_frozen_and_closed_accounts_fail_transfers_with_their_codes(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 1_000).id
        frozen = funded_account(s, production, 1_000).id
        closed = enterprise_account(s, production).id
        service.freeze_account(s, production, frozen, actor="ops")
        service.close_account(s, production, closed, actor="ops")
        codes = [service.create_transfer(s, production, from_account_id=src, to_account_id=dst,
                                         amount_fen=100, actor="c").failure_code
                 for src, dst in ((frozen, a), (a, closed))]
        assert codes == ["account_frozen", "account_closed"]
        # A frozen account still receives money.
        assert service.create_transfer(s, production, from_account_id=a, to_account_id=frozen,
                                       amount_fen=100, actor="c").status == "completed"


def test_invalid_requests_raise_and_record_nothing(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 1_000).id
        other = new_tenant(s)
        theirs = enterprise_account(s, other).id
        with pytest.raises(AccountNotFound):
            service.create_transfer(s, production, from_account_id=a, to_account_id=theirs,
                                    amount_fen=100, actor="c")
        with pytest.raises(SameAccount):
            service.create_transfer(s, production, from_account_id=a, to_account_id=a,
                                    amount_fen=100, actor="c")
        with pytest.raises(InvalidAmount):
            service.create_transfer(s, production, from_account_id=a, to_account_id=theirs,
                                    amount_fen=0, actor="c")
        assert s.scalars(select(Transfer)).all() == []
        with pytest.raises(TransferNotFound):
            service.get_transfer(s, production, "trf_nope")


def test_paying_by_name_checks_the_payee_name(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 10_000).id
        b = enterprise_account(s, production, name="深圳前海微众(科技)有限公司").id
        person = person_account(s, production, name="欧阳娜娜").id
        ok = service.create_transfer(s, production, from_account_id=a, to_account_id=b,
                                     amount_fen=100, actor="c",
                                     to_account_name=" 深圳前海微众（科技）有限公司 ")
        assert ok.status == "completed"  # full-width brackets and spaces are the same name
        bad = service.create_transfer(s, production, from_account_id=a, to_account_id=person,
                                      amount_fen=100, actor="c", to_account_name="欧阳娜")
        assert (bad.status, bad.failure_code) == ("failed", "name_mismatch")
        assert "欧阳娜娜" not in (bad.failure_message or "")


@pytest.mark.parametrize("entry", list(magic.MAGIC_AMOUNTS.values()), ids=lambda m: m.amount)
def test_sandbox_magic_amounts_force_their_outcome(database, sandbox, entry):
    with database.transaction() as s:
        a = funded_account(s, sandbox, 1_000_000).id
        b = enterprise_account(s, sandbox).id
        record = service.create_transfer(s, sandbox, from_account_id=a, to_account_id=b,
                                         amount_fen=entry.fen, actor="c")
        if entry.outcome == "failed":
            assert (record.status, record.failure_code) == ("failed", entry.failure_code)
            assert service.balance(s, sandbox, a).held_fen == 0
        else:
            assert record.status == "pending" and record.hold_id
            assert service.balance(s, sandbox, a).held_fen == entry.fen
        assert service.balance(s, sandbox, a).ledger_fen == 1_000_000


def test_a_pending_sandbox_transfer_fails_when_the_test_clock_passes(database, sandbox):
    with database.transaction() as s:
        a = funded_account(s, sandbox, 1_000_000).id
        b = enterprise_account(s, sandbox).id
        record = service.create_transfer(s, sandbox, from_account_id=a, to_account_id=b,
                                         amount_fen=magic.MAGIC_AMOUNTS[404005].fen, actor="c")
        assert service.resolve_due_transfers(s, sandbox) == []
        assert service.get_transfer(s, sandbox, record.id).status == "pending"
    with database.transaction() as s:
        advance_clock(s, sandbox, magic.PENDING_FAILS_AFTER.total_seconds())
    with database.transaction() as s:
        got = service.get_transfer(s, sandbox, record.id)
        assert (got.status, got.failure_code) == ("failed", "processing_failed")
        assert service.resolve_due_transfers(s, sandbox) == []  # resolved once only
        bal = service.balance(s, sandbox, a)
        assert (bal.ledger_fen, bal.held_fen) == (1_000_000, 0)
        assert [e.type for e in _events(s, record.id)] == ["transfer.pending", "transfer.failed"]
        assert service.audit(s, sandbox) == []


def test_resolve_due_transfers_fails_every_due_pending_transfer(database, sandbox):
    with database.transaction() as s:
        a = funded_account(s, sandbox, 1_000_000).id
        b = enterprise_account(s, sandbox).id
        ids = [service.create_transfer(s, sandbox, from_account_id=a, to_account_id=b,
                                       amount_fen=404005, actor="c").id for _ in range(2)]
        later = service.get_transfer(s, sandbox, ids[1]).created_at + magic.PENDING_FAILS_AFTER
        resolved = service.resolve_due_transfers(s, sandbox, at=later)
        assert sorted(t.id for t in resolved) == sorted(ids)
        assert service.balance(s, sandbox, a).held_fen == 0


def test_magic_names_fail_the_name_check_in_the_sandbox_only(database, sandbox, production):
    with database.transaction() as s:
        for tenant, expected in ((sandbox, "failed"), (production, "completed")):
            a = funded_account(s, tenant, 10_000).id
            b = enterprise_account(s, tenant, name="户名不符").id
            c = enterprise_account(s, tenant, name="Acme MISMATCH Ltd").id
            for payee, name in ((b, "户名不符"), (c, "Acme MISMATCH Ltd")):
                record = service.create_transfer(s, tenant, from_account_id=a, to_account_id=payee,
                                                 amount_fen=100, actor="c", to_account_name=name)
                assert record.status == expected
                if expected == "failed":
                    assert record.failure_code == "name_mismatch"
            # Without a name to check, the magic name changes nothing.
            assert service.create_transfer(s, tenant, from_account_id=a, to_account_id=b,
                                           amount_fen=100, actor="c").status == "completed"


def test_magic_amounts_are_ordinary_amounts_in_production(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 10_000_000).id
        b = enterprise_account(s, production).id
        for entry in magic.MAGIC_AMOUNTS.values():
            record = service.create_transfer(s, production, from_account_id=a, to_account_id=b,
                                             amount_fen=entry.fen, actor="c")
            assert record.status == "completed"


def test_list_transfers_pages_newest_first(database, production):
    with database.transaction() as s:
        a = funded_account(s, production, 10_000).id
        b = enterprise_account(s, production).id
        c = enterprise_account(s, production).id
        made = [service.create_transfer(s, production, from_account_id=a, to_account_id=dst,
                                        amount_fen=10, actor="c").id for dst in (b, c, b)]
        page = service.list_transfers(s, production, limit=2)
        rest = service.list_transfers(s, production, limit=2, cursor=page.next_cursor)
        assert [t.id for t in page.data + rest.data] == made[::-1] and rest.next_cursor is None
        assert [t.id for t in service.list_transfers(s, production, account_id=c).data] == [made[1]]


def test_the_banks_internal_accounts_are_never_a_partners_to_pay_from(database, production):
    with database.transaction() as s:
        mine = funded_account(s, production, 1_000).id
        clearing = service.internal_account(s, production).id
        for src, dst in ((clearing, mine), (mine, clearing)):
            with pytest.raises(AccountNotFound):
                service.create_transfer(s, production, from_account_id=src, to_account_id=dst,
                                        amount_fen=100, actor="c")
        assert clearing not in [a.id for a in service.list_accounts(s, production).data]
        assert clearing in [a.id for a in service.list_accounts(s, production,
                                                                include_internal=True).data]
        assert service.balance(s, production, mine).ledger_fen == 1_000


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_pending_resolution_does_not_stop_the_others(database, caplog):
    """The job resolves each tenant on its own: a tenant whose run fails (its clock cannot be
    read) is logged with its id and left to the next run; the tenant after it is served."""
    from products.accounts import jobs

    with database.transaction() as s:
        stuck, served = sorted(new_tenant(s, "sandbox") for _ in range(2))
    transfers = {}
    for tenant in (stuck, served):
        with database.transaction() as s:
            a = funded_account(s, tenant, 1_000_000).id
            b = enterprise_account(s, tenant).id
            transfers[tenant] = service.create_transfer(
                s, tenant, from_account_id=a, to_account_id=b,
                amount_fen=magic.MAGIC_AMOUNTS[404005].fen, actor="c").id
        with database.transaction() as s:
            advance_clock(s, tenant, magic.PENDING_FAILS_AFTER.total_seconds())
    break_clock(database, stuck)

    with caplog.at_level(logging.ERROR):
        assert jobs.resolve_pending(database) == 1
    with database.transaction() as s:
        status = dict(s.execute(select(Transfer.tenant_id, Transfer.status)).all())
    assert status == {stuck: "pending", served: "failed"}
    assert_failure_logged(caplog, stuck)
