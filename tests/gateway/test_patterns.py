"""A value in the wrong format gets a 422 that says, in words, what the value should look like,
never the regular expression behind it; and digits mean 0-9, not any script's digits."""

from __future__ import annotations

import json
from pathlib import Path

from gateway import patterns
from tests.tools.api import problem

DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
# The Idempotency-Key header is checked by hand, with its own message (gateway.idempotency).
HAND_CHECKED = {r"^[\x21-\x7e]+$"}


def _patterns(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            found.add(node["pattern"])
        for value in node.values():
            found |= _patterns(value)
    elif isinstance(node, list):
        for value in node:
            found |= _patterns(value)
    return found


def test_every_published_pattern_has_words() -> None:
    published = _patterns(json.loads(DOCUMENT.read_text())) - HAND_CHECKED
    assert published, "the document publishes patterns"
    assert [p for p in published if not patterns.described(p)] == []


def _message(body: dict, field: str) -> str:
    messages = [e["message"] for e in body["errors"] if e["field"] == field]
    assert messages, body
    return messages[0]


def test_a_month_in_another_form_is_explained(partner) -> None:
    for month in ("2026-13", "2026.11", "２０２６-11"):
        body = problem(partner.get(f"/v1/collection/canteen/employers/emp_x/subsidy-reports/{month}"),
                       422, "validation_failed")
        message = _message(body, "path.month")
        assert message == "Expected a month as YYYY-MM, such as 2026-11.", body
        assert "^" not in message and "[" not in message


def test_a_filter_outside_its_choices_lists_them(partner) -> None:
    body = problem(partner.get("/v1/chain-credit/financing-applications?status=paid"), 422,
                   "validation_failed")
    assert _message(body, "query.status") == (
        "Expected one of: submitted, disbursed, declined, repaid, overdue.")


def test_a_reference_with_spaces_is_explained(partner) -> None:
    body = problem(partner.post("/v1/egov/payment-orders", json_body={
        "item_code": "1030 401", "item_name": "工本费", "portal_reference": "ref with spaces",
        "payer": {"name": "张三", "id_number": "110101199003070011"},
        "amount": {"amount": "25.00", "currency": "CNY"}}, idempotency_key="k-pattern-1"),
        422, "validation_failed")
    assert _message(body, "body.portal_reference").startswith("Expected 1 to 64 letters, digits")
    assert _message(body, "body.item_code").endswith("such as 103040101.")


def test_an_unknown_pattern_falls_back_to_plain_words() -> None:
    assert patterns.mismatch_message("^x+$") == "This value is not in the expected format."
