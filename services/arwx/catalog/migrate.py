"""Bring a catalog database to the newest schema, at start, idempotently.

Invariant: at most one process migrates a given database at a time. On
PostgreSQL every starting process takes the same advisory lock around the
upgrade (and the one-time jobs that follow it, see ``Catalog.once``), so two
services started together never both create a table; the second finds the
work done. On SQLite the same holds through an OS lock on a file beside the
database (``Catalog.locked``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# pg_advisory_lock takes a bigint; any fixed number that no other program on
# the same database uses. "arwx" in ASCII.
ADVISORY_LOCK_ID = 0x61727778


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    """The database's migration, or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> None:
    """Apply every migration the database lacks (nothing if it is at head)."""
    if current_revision(connection) == head_revision():
        return
    command.upgrade(alembic_config(connection), "head")
