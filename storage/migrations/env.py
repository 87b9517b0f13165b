"""Alembic environment: runs on the connection that storage.migrate hands over (async engine, run_sync)."""
from __future__ import annotations

from alembic import context

from storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj, autogen_context):
    # UTCDateTime is a plain DateTime in the database; keep migrations free of application types.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


common = dict(
    target_metadata=target_metadata,
    # SQLite cannot ALTER most things: batch mode recreates the table instead.
    render_as_batch=True,
    compare_type=True,
    render_item=render_item,
)

if context.is_offline_mode():
    # `alembic upgrade --sql`: print the DDL for a URL's dialect.
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **common)
else:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through storage.migrate (python -m storage.migrate upgrade URL)")
    context.configure(connection=connection, **common)

with context.begin_transaction():
    context.run_migrations()
