"""What the receiving bank answers to a credit, and that the worker reads an employee's name
only when the answer depends on it (names are personal data, decrypted as little as possible)."""

from __future__ import annotations

import pytest

from products.payroll.receiving import Payee, check


class Name:
    """An employee's name that counts how often it was read."""

    def __init__(self, value: str) -> None:
        self.value, self.reads = value, 0

    def __call__(self) -> str:
        self.reads += 1
        return self.value


def test_another_banks_card_in_production_is_accepted_without_reading_the_name() -> None:
    name = Name("户名不符")  # magic in the sandbox only
    verdict = check(card_last4="0002", name=name, amount_fen=404001, sandbox=False, payee=None)
    assert (verdict.code, verdict.return_code, name.reads) == (None, None, 0)


@pytest.mark.parametrize(("value", "code", "return_code"), [
    ("户名不符", "name_mismatch", None), ("王伟 MISMATCH", "name_mismatch", None),
    ("李娜 RETURN", None, "account_closed"), ("张敏", None, None)])
def test_sandbox_names_decide_the_answer(value: str, code: str | None,
                                         return_code: str | None) -> None:
    name = Name(value)
    verdict = check(card_last4="1234", name=name, amount_fen=300000, sandbox=True, payee=None)
    assert (verdict.code, verdict.return_code) == (code, return_code)
    assert name.reads == 1


def test_sandbox_card_suffix_and_amount_decide_before_the_name() -> None:
    name = Name("张敏")
    assert check(card_last4="0003", name=name, amount_fen=300000, sandbox=True,
                 payee=None).code == "account_frozen"
    assert check(card_last4="1234", name=name, amount_fen=404001, sandbox=True,
                 payee=None).code == "insufficient_funds"
    assert name.reads == 0


@pytest.mark.parametrize("sandbox", [False, True])
def test_a_card_of_this_bank_is_checked_against_its_holder(sandbox: bool) -> None:
    payee = Payee(account_id="acct_1", status="active", owner_name="张 敏")
    assert check(card_last4="1234", name="张　敏", amount_fen=300000, sandbox=sandbox,
                 payee=payee).code is None  # NFKC and spaces: the same name
    assert check(card_last4="1234", name=Name("王伟"), amount_fen=300000, sandbox=sandbox,
                 payee=payee).code == "name_mismatch"
    closed = Payee(account_id="acct_1", status="closed", owner_name="张敏")
    assert check(card_last4="1234", name="张敏", amount_fen=300000, sandbox=sandbox,
                 payee=closed).code == "account_closed"
