"""Alembic environment: the metadata is every package's models, imported by the app module."""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.render import _repr_type
from sqlalchemy import engine_from_config, pool
from sqlalchemy.types import TypeDecorator

from gateway.app import import_models
from gateway.db import Base

import_models()
config = context.config


def render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
    """Render custom column types as their underlying SQL type, so that migrations never
    import application modules (which change over time)."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return _repr_type(obj.impl, autogen_context)
    return False
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # gateway.migrate logs each revision as it runs
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, render_item=render_item,
                          on_version_apply=config.attributes.get("on_version_apply", ()))
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True, render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
