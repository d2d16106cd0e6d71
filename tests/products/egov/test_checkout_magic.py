"""What each sandbox magic value does at the hosted checkout, and the reason of a refused
attempt on the order.

A payer at the checkout waits for the answer, so every magic amount is answered at once:
4040.01-.04 are refused with their codes, and 4040.05 (pending elsewhere) is refused at once
with `processing_failed`. A card ending 0002 / 0003 is refused as closed / frozen. The name
values do not apply: the checkout does no name check. Each refusal is a counted attempt, and
the order shows the latest one's code as `last_failure_code`.
"""

from __future__ import annotations

import pytest

from gateway.identifiers import luhn_check_digit
from tests.products.egov.helpers import create_order, events, ledger_balance, pay, setup_portal


def _card(suffix: str) -> str:
    for middle in range(10):
        payload = f"62220212345678{middle}{suffix[:-1]}"
        if luhn_check_digit(payload) == suffix[-1]:
            return payload + suffix[-1]
    raise AssertionError


def _order(partner, order_id: str) -> dict:
    response = partner.get(f"/v1/egov/payment-orders/{order_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("amount", "code"), [
    ("4040.01", "insufficient_funds"), ("4040.02", "account_closed"),
    ("4040.03", "account_frozen"), ("4040.04", "name_mismatch"),
    ("4040.05", "processing_failed")])
def test_magic_amounts_are_refused_at_once_and_the_order_says_why(app, http, partner, amount,
                                                                    code):
    payee = setup_portal(app, partner)
    order = create_order(partner, amount={"amount": amount, "currency": "CNY"})
    assert order["last_failure_code"] is None
    response = pay(http, order)
    assert response.headers["location"].endswith(f"error={code}")
    state = _order(partner, order["id"])
    assert (state["status"], state["failed_attempts"], state["last_failure_code"]) == \
        ("open", 1, code)
    attempt = [e for e in events(partner, "egov_payment.attempt_failed")
               if e["data"]["id"] == order["id"]]
    assert [e["data"]["last_failure_code"] for e in attempt] == [code]
    assert ledger_balance(app, partner.tenant_id, payee) == 0


def test_the_latest_refusal_is_shown_and_kept_once_paid(app, http, partner):
    setup_portal(app, partner)
    order = create_order(partner, payer={"name": "户名不符", "id_type": "resident_id",
                                         "id_number": "11010519491231002X"})
    pay(http, order, card=_card("0002"))
    assert _order(partner, order["id"])["last_failure_code"] == "account_closed"
    pay(http, order, password="000000")
    assert _order(partner, order["id"])["last_failure_code"] == "login_failed"
    # a mistyped card number is answered, not counted: the reason stays the last attempt's
    pay(http, order, card="6222021234567890123")
    state = _order(partner, order["id"])
    assert (state["failed_attempts"], state["last_failure_code"]) == (2, "login_failed")
    # the name values do not apply at the checkout: it does no name check
    pay(http, order)
    state = _order(partner, order["id"])
    assert (state["status"], state["failed_attempts"], state["last_failure_code"]) == \
        ("paid", 2, "login_failed")
    listed = partner.get("/v1/egov/payment-orders?limit=100").json()["data"]
    assert [o["last_failure_code"] for o in listed if o["id"] == order["id"]] == ["login_failed"]
