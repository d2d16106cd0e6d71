"""Opening accounts: owners validated, personal data encrypted at rest and masked on the way out."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import text

from gateway.db import Database
from gateway.identifiers import generate_resident_id, generate_uscc, validate_bank_card
from products.accounts import magic, service
from products.accounts.errors import InvalidAccount
from products.accounts.schemas import AccountOut
from tests.products.accounts.factories import enterprise_account, new_tenant, person_account

rng = random.Random(7)


@pytest.fixture
def tenant(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s)


def test_personal_data_is_encrypted_at_rest_and_masked_in_output(database, tenant):
    id_number = generate_resident_id(rng)
    with database.transaction() as s:
        account = service.create_account(s, tenant, kind="settlement", owner_type="person",
                                         owner_name="王秀英", owner_id_number=id_number)
        number = account.account_number
        account_id = account.id
    with database.transaction() as s:
        raw = s.execute(text("SELECT owner_name, owner_id_number, account_number, "
                             "account_number_last4 FROM accounts WHERE id = :id"),
                        {"id": account_id}).one()
        assert all(value.startswith("v1.") for value in raw[:3])
        assert id_number not in repr(raw) and number not in repr(raw) and "王秀英" not in repr(raw)
        assert raw[3] == number[-4:]
        out = AccountOut.from_model(service.get_account(s, tenant, account_id))
        dumped = out.model_dump_json()
        assert id_number not in dumped and number not in dumped and "王秀英" not in dumped
        assert out.owner.name == "王**"
        assert out.owner.id_number == id_number[:3] + "*" * 11 + id_number[-4:]
        assert out.account_number == number[:4] + "*" * (len(number) - 8) + number[-4:]
        found = service.find_account_by_number(s, tenant, number)
        assert found is not None and found.id == account_id
        assert service.find_account_by_number(s, new_tenant(s), number) is None


def test_enterprise_owners_are_shown_in_full(database, tenant):
    with database.transaction() as s:
        out = AccountOut.from_model(enterprise_account(s, tenant, name="杭州云栖数智科技有限公司"))
        assert out.owner.name == "杭州云栖数智科技有限公司" and out.owner.uscc
        assert out.balances.available.amount == "0.00"
        assert out.balances.overdraft_limit is not None


@pytest.mark.parametrize("kwargs", [
    {"kind": "savings", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN"},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x",
     "owner_uscc": "91110000600037341X"},
    {"kind": "settlement", "owner_type": "person", "owner_name": "张三",
     "owner_id_number": "110101199003077770"},
    {"kind": "settlement", "owner_type": "person", "owner_name": "张三", "owner_uscc": "GEN"},
    {"kind": "settlement", "owner_type": "bank", "owner_name": "x"},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": " ", "owner_uscc": "GEN"},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN",
     "account_number": "6222021234567890123"},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN",
     "overdraft_limit_fen": None},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN",
     "overdraft_limit_fen": -1},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN",
     "debit_restriction": "Escrow Funds"},
    {"kind": "virtual"},
    {"kind": "settlement", "owner_type": "enterprise", "owner_name": "x", "owner_uscc": "GEN",
     "parent_account_id": "acct_x"},
])
def test_invalid_accounts_are_refused(database, tenant, kwargs):
    if kwargs.get("owner_uscc") == "GEN":
        kwargs = {**kwargs, "owner_uscc": generate_uscc(rng)}
    with database.transaction() as s:
        with pytest.raises(InvalidAccount) as caught:
            service.create_account(s, tenant, **kwargs)
        assert caught.value.status == 422


def test_an_account_number_is_unique_in_a_tenant(database, tenant):
    with database.transaction() as s:
        first = enterprise_account(s, tenant)
        with pytest.raises(InvalidAccount) as caught:
            enterprise_account(s, tenant, account_number=first.account_number)
        assert (caught.value.status, caught.value.code) == (409, "account_number_taken")


def test_virtual_accounts_belong_to_their_parent(database, tenant):
    with database.transaction() as s:
        parent = person_account(s, tenant, name="李娜")
        sub = service.create_account(s, tenant, kind="virtual", parent_account_id=parent.id,
                                     label="食堂充值")
        assert (sub.parent_id, sub.owner_display_name, sub.owner_id_number_masked) == (
            parent.id, "李*", parent.owner_id_number_masked)
        with pytest.raises(InvalidAccount):
            service.create_account(s, tenant, kind="virtual", parent_account_id=sub.id)
        with pytest.raises(InvalidAccount):
            service.create_account(s, tenant, kind="virtual", parent_account_id=parent.id,
                                   owner_type="person", owner_name="王五")
        assert [a.id for a in service.list_accounts(s, tenant, parent_account_id=parent.id).data] == [sub.id]


def test_generated_numbers_pass_luhn_and_avoid_magic_suffixes():
    for owner in ("person", "enterprise", "bank"):
        for _ in range(200):
            number = service.generate_account_number(owner, rng=rng)
            assert len(number) == 19 and validate_bank_card(number) == number
            assert magic.account_number_status(number) is None
    for suffix in ("0002", "0003", "12345"):
        number = service.generate_account_number("person", suffix=suffix, rng=rng)
        assert number.endswith(suffix) and validate_bank_card(number) == number


def test_sandbox_magic_account_numbers_open_closed_and_frozen_accounts(database):
    with database.transaction() as s:
        sandbox, production = new_tenant(s, "sandbox"), new_tenant(s, "production")
        for suffix, status in magic.MAGIC_ACCOUNT_SUFFIXES.items():
            number = service.generate_account_number(suffix=suffix, rng=rng)
            assert enterprise_account(s, sandbox, account_number=number).status == status
            assert enterprise_account(s, production, account_number=number).status == "active"


def test_internal_accounts_are_opened_once_per_purpose(database, tenant):
    with database.transaction() as s:
        first = service.internal_account(s, tenant, "chain_credit:disbursement")
        again = service.internal_account(s, tenant, "chain_credit:disbursement")
        clearing = service.internal_account(s, tenant)
        assert first.id == again.id != clearing.id
        assert (first.kind, first.owner_type, first.overdraft_limit_fen) == ("internal", "bank", None)
        with pytest.raises(InvalidAccount):
            service.internal_account(s, tenant, "Bad Purpose")


def test_the_magic_table_lists_every_value():
    rows = magic.table()
    inputs = " ".join(r["input"] for r in rows)
    for entry in magic.MAGIC_AMOUNTS.values():
        assert entry.amount in inputs
        assert entry.fen == int(entry.amount.replace(".", ""))
    assert "0002" in inputs and "0003" in inputs and "户名不符" in inputs
    assert magic.forces_name_mismatch("acme mismatch co") and not magic.forces_name_mismatch("户名")
