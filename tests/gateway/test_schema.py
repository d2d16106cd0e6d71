"""The published OpenAPI document and the Alembic migrations agree with the code."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from openapi_spec_validator import validate
from sqlalchemy import create_engine

from gateway import migrate
from gateway.app import import_models
from gateway.cli import OPENAPI_PATH, openapi_document
from gateway.db import Base
from tests.tools.databases import empty_database_url


def test_committed_openapi_is_current_and_valid():
    document = openapi_document()
    assert OPENAPI_PATH.read_text() == document, "run `quanlian openapi`"
    spec = json.loads(document)
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_operation_is_documented():
    spec = json.loads(openapi_document())
    ids = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            assert op.get("tags"), where
            assert op["operationId"] not in ids, where
            ids.add(op["operationId"])
            assert op["operationId"].startswith(op["tags"][0] + "-"), where
            statuses = set(op["responses"])
            assert any(s.startswith("2") or s.startswith("3") for s in statuses), where
            assert "500" in statuses, where
            # Any call may meet a database outage, and any write a database-side rollback.
            assert "503" in statuses, where
            if path not in ("/readyz",):  # readiness has its own 503: not ready
                assert "Retry-After" in op["responses"]["503"].get("headers", {}), where
            assert method == "get" or "409" in statuses, where
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert "application/problem+json" in response.get("content", {}), where


def test_a_generated_client_gets_one_model_per_name_and_typed_times():
    """Two models of one name get module-qualified names a client generator cannot use (it
    dropped the responses that named them); a time documented as a bare string reaches the
    client as a string."""
    spec = json.loads(openapi_document())
    schemas = spec["components"]["schemas"]
    assert [name for name in schemas if "__" in name] == []
    untyped = []
    for name, schema in schemas.items():
        for prop, definition in schema.get("properties", {}).items():
            if not prop.endswith("_at"):
                continue
            options = definition.get("anyOf", [definition])
            if not any(o.get("format") == "date-time" for o in options):
                untyped.append(f"{name}.{prop}")
    assert untyped == []
    # every refusal a call can meet is a documented problem: a body too large wherever a body
    # is taken, and a rate limit with the header that says when to retry
    operations = [(f"{method} {path}", op) for path, item in spec["paths"].items()
                  for method, op in item.items()]
    assert [n for n, op in operations if "requestBody" in op and "413" not in op["responses"]] == []
    assert [n for n, op in operations
            if "Retry-After" not in op["responses"]["429"].get("headers", {})] == []


def test_migrations_match_models():
    import_models()
    with empty_database_url() as url:
        migrate.upgrade(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        engine.dispose()
    assert diff == [], diff


def test_readyz_after_migrations(tmp_path):
    from starlette.testclient import TestClient

    from gateway.db import Database
    from tests.tools.api import make_app

    with empty_database_url() as url:
        migrate.upgrade(url)
        database = Database(url)
        app = make_app(database, tmp_path)
        with TestClient(app) as client:
            response = client.get("/readyz")
        database.dispose()
    assert response.status_code == 200, response.text
    assert response.json()["migration"] == migrate.head_revision()
