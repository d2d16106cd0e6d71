"""The examples the published document gives for collection's requests look like real values:
account ids are `acct_` ULIDs as the ledger makes them, and each kind of reference has its own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

ACCOUNT_ID = re.compile(r"^acct_[0-7][0-9A-HJKMNP-TV-Z]{25}$")  # prefix + a Crockford ULID


def _examples(node: Any) -> Iterator[Any]:
    """Every example given anywhere in a schema (a property, its `anyOf` branches, ...)."""
    if isinstance(node, dict):
        yield from node.get("examples", [])
        if "example" in node:
            yield node["example"]
        for value in node.values():
            yield from _examples(value)
    elif isinstance(node, list):
        for value in node:
            yield from _examples(value)


def _properties(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for name, schema in document["components"]["schemas"].items():
        for prop, spec in schema.get("properties", {}).items():
            yield name, prop, spec


def test_account_id_examples_are_real_account_ids(app, http):
    document = http.get("/openapi.json").json()
    wrong = [example for example in _examples(document)
             if isinstance(example, str) and example.startswith("acc_")]
    assert wrong == []
    account_fields = [(name, prop, spec) for name, prop, spec in _properties(document)
                      if prop.endswith("account_id")]
    for name in ("SettingsUpdate", "SubMerchantCreate", "SubMerchantUpdate", "MandateCreate",
                 "EmployerCreate", "DinerCreate"):
        assert any(n == name for n, _, _ in account_fields), name
    for name, prop, spec in account_fields:
        for example in _examples(spec):
            assert ACCOUNT_ID.match(example), (name, prop, example)


def test_each_kind_of_reference_has_its_own_example(app, http):
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    fields = [("OrderCreate", "merchant_order_no"), ("MealCreate", "merchant_order_no"),
              ("MandateCreate", "reference"), ("RefundCreate", "refund_reference"),
              ("GrantCreate", "reference"), ("BillCreate", "reference")]
    seen: dict[str, tuple[str, str]] = {}
    for name, prop in fields:
        examples = list(_examples(schemas[name]["properties"][prop]))
        # one example per field, also for an optional one (none left on its `anyOf` branch)
        assert len(examples) == 1, (name, prop, examples)
        assert examples[0] not in seen, (name, prop, seen.get(examples[0]))
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$", examples[0])
        seen[examples[0]] = (name, prop)
