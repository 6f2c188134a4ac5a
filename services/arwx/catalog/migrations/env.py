"""Alembic environment: runs on the connection ``arwx.catalog.migrate`` hands it.

The catalog is always migrated from the running program (never from an
``alembic.ini``), so there is no offline mode and no URL here.
"""

from __future__ import annotations

from alembic import context

from arwx.catalog.tables import metadata

connection = context.config.attributes["connection"]
# Batch mode: SQLite cannot ALTER most things, so Alembic rebuilds the table instead.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
