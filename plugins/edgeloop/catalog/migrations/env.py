"""Alembic environment for the edgeloop catalog; run through ``catalog.migrate``."""

from __future__ import annotations

from alembic import context

from edgeloop.catalog.store import VERSION_TABLE
from edgeloop.catalog.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
