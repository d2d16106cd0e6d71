"""The sandbox seed: funded accounts and one account of each magic status, deterministically."""

from __future__ import annotations

from products.accounts import service
from products.accounts.seed import FUNDING_FEN, seed_accounts
from sandbox.fakedata import FakeData
from tests.products.accounts.factories import new_tenant


def test_the_seed_is_deterministic_and_sound(database):
    with database.transaction() as s:
        first, second = new_tenant(s, "sandbox"), new_tenant(s, "sandbox")
        one = seed_accounts(s, first, FakeData(42))
        two = seed_accounts(s, second, FakeData(42))
        numbers = [a["account_number"] for a in one["accounts"].values()]
        assert numbers == [a["account_number"] for a in two["accounts"].values()]
        seeded = one["accounts"]
        assert (seeded["closed"]["status"], seeded["frozen"]["status"]) == ("closed", "frozen")
        assert seeded["operating"]["status"] == "active"
        for key, fen in FUNDING_FEN.items():
            assert service.balance(s, first, seeded[key]["id"]).ledger_fen == fen
        assert service.audit(s, first) == []
        assert any("4040.01" in row["input"] for row in one["magic_values"])
