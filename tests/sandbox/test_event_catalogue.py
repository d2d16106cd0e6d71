"""The event type catalogue (`gateway.event_types`) names every type the code publishes."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.event_types import EVENT_TYPES, UncataloguedEventType
from gateway.events import Event, publish
from gateway.tenancy import create_partner, ensure_tenant

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("products", "partners", "gateway", "sandbox")
TYPE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
TYPE_ARGUMENTS = {"type", "type_", "event_type"}


def _published_types() -> tuple[set[str], set[str]]:
    """The literal types and f-string prefixes given to publish-like calls in the code."""
    literals: set[str] = set()
    prefixes: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for call in ast.walk(ast.parse(path.read_text())):
                if not isinstance(call, ast.Call):
                    continue
                name = ast.unparse(call.func)
                values = [k.value for k in call.keywords if k.arg in TYPE_ARGUMENTS]
                if "publish" in name or name.endswith("_event"):
                    values += call.args
                for value in values:
                    for node in ast.walk(value):
                        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                                and TYPE.match(node.value):
                            literals.add(node.value)
                        elif isinstance(node, ast.JoinedStr) and node.values \
                                and isinstance(node.values[0], ast.Constant):
                            prefixes.add(str(node.values[0].value))
    return literals, prefixes


def test_every_type_the_code_publishes_is_catalogued():
    literals, prefixes = _published_types()
    assert len(literals) > 60  # the scan finds the calls
    assert literals - EVENT_TYPES == set()
    for prefix in prefixes:
        assert prefix.endswith(".") and any(t.startswith(prefix) for t in EVENT_TYPES), prefix


def test_the_partner_workflow_types_are_catalogued():
    from partners.workflow import TRANSITIONS

    assert {t.event_type for t in TRANSITIONS.values()} <= EVENT_TYPES


def test_publish_refuses_an_uncatalogued_type_in_strict_mode_and_logs_it_otherwise(
        database, monkeypatch, caplog):
    with database.transaction() as session:
        tenant = ensure_tenant(session, create_partner(session, name="Types").id, "sandbox").id

    def emit(type_: str) -> None:
        with database.transaction() as session:
            publish(session, tenant_id=tenant, type=type_, resource_type="transfer",
                    resource_id="trf_1", data={"id": "trf_1"}, actor="tester")

    monkeypatch.setattr("gateway.event_types.strict", True)
    with pytest.raises(UncataloguedEventType, match="transfer.complete"):
        emit("transfer.complete")
    emit("transfer.completed")
    monkeypatch.setattr("gateway.event_types.strict", False)
    with caplog.at_level(logging.WARNING, logger="quanlian.events"):
        emit("transfer.complete")  # production: the event still goes out, and is logged
    assert "transfer.complete" in caplog.text
    with database.transaction() as session:
        types = sorted(session.scalars(select(Event.type).where(Event.tenant_id == tenant)))
    assert types == ["transfer.complete", "transfer.completed"]
