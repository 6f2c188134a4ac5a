"""The catalog: the relational home of what people create and edit.

SQLite in the data directory (embedded server, nothing to install) or
PostgreSQL (distributed services, ``--catalog postgresql://...``), through one
schema (``tables.py``, migrated by Alembic) and one query layer (SQLAlchemy
Core, async). ClickHouse keeps what machines write at high rate; see
``docs/distributed.md``.

    catalog = Catalog.open(settings.catalog_url, settings.data_path)
    await catalog.start()          # migrations, under a lock on PostgreSQL
    async with catalog.begin() as conn: ...
    await catalog.stop()
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from sqlalchemy import event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from arwx.catalog import migrate
from arwx.catalog.tables import catalog_state

log = logging.getLogger("arwx.catalog")
# Both log every statement with its parameters (key hashes among them) once
# the root logger is at DEBUG or INFO: never let them.
for _name in ("aiosqlite", "sqlalchemy.engine"):
    logging.getLogger(_name).setLevel(logging.WARNING)

SQLITE_FILE = "catalog.sqlite"
_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


class CatalogError(RuntimeError):
    """The catalog cannot be used as configured."""


def catalog_url(url: str, data_dir: Path) -> URL:
    """The SQLAlchemy URL for ``--catalog`` (empty: SQLite in ``data_dir``)."""
    if not url:
        return make_url(f"sqlite+aiosqlite:///{data_dir / SQLITE_FILE}")
    parsed = make_url(url)
    backend = parsed.drivername.split("+")[0]
    if backend not in _DRIVERS:
        raise CatalogError(f"catalog URL {parsed.render_as_string()!r} is not postgresql:// or sqlite://")
    return parsed.set(drivername=_DRIVERS[backend])


def _sqlite_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI types
    # The driver's own BEGIN is off: _sqlite_begin says which BEGIN (SQLAlchemy's
    # documented recipe for SQLite transactions).
    dbapi_conn.isolation_level = None
    # WAL: readers never wait for the writer. foreign_keys: off by default in SQLite.
    # busy_timeout first: the WAL switch below must wait for other openers too.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn) -> None:  # noqa: ANN001 - a sync Connection
    # A write transaction takes the write lock up front (IMMEDIATE): a deferred
    # one that read first could not upgrade its lock when another writer got
    # in between, and SQLite fails that at once instead of waiting.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("arwx_write") else "BEGIN")


@asynccontextmanager
async def _file_lock(path: Path, timeout_s: float = 60.0) -> AsyncIterator[None]:
    """An exclusive flock on ``path`` (polled, so the event loop never blocks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CatalogError(f"another process has held {path} for over {timeout_s:.0f} s") from None
                await asyncio.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


class Catalog:
    """An engine on the catalog database, migrated by ``start()``."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.is_postgres = url.get_backend_name() == "postgresql"
        self.engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None

    @classmethod
    def open(cls, url: str, data_dir: Path) -> Catalog:
        return cls(catalog_url(url, data_dir))

    @property
    def display(self) -> str:
        """The URL without its password, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    @property
    def sqlite_path(self) -> Path | None:
        return None if self.is_postgres else Path(self.url.database or "")

    def exists(self) -> bool:
        """False only for an embedded catalog file that is not there yet."""
        path = self.sqlite_path
        return path is None or path.exists()

    async def start(self) -> None:
        """Connect and apply the migrations this database lacks."""
        if self.is_postgres:
            engine = create_async_engine(self.url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        else:
            engine = create_async_engine(self.url)
            event.listen(engine.sync_engine, "connect", _sqlite_connect)
            event.listen(engine.sync_engine, "begin", _sqlite_begin)
        self.engine = engine
        self._writer = engine.execution_options(arwx_write=True)
        try:
            async with self.locked() as conn:
                await conn.run_sync(migrate.upgrade)
        except OSError as e:
            raise CatalogError(f"cannot reach the catalog {self.display}: {e}") from e

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a write transaction that commits on success."""
        assert self.engine is not None, "Catalog.start() first"
        return self._writer.begin()

    def connect(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads (its implicit transaction ends at close)."""
        assert self.engine is not None, "Catalog.start() first"
        return self.engine.connect()

    async def ping(self) -> bool:
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the catalog-wide start-up lock (PostgreSQL:
        a transaction-level advisory lock, released at commit or rollback;
        SQLite: an OS lock on a file beside the database, held around the
        transaction, because processes opening a new file at once race on
        its switch to WAL and BEGIN IMMEDIATE alone did not serialize them)."""
        if self.is_postgres:
            async with self.begin() as conn:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": migrate.ADVISORY_LOCK_ID})
                yield conn
            return
        async with _file_lock(Path(f"{self.sqlite_path}.lock")), self.begin() as conn:
            yield conn

    async def once(self, name: str, job: Callable[[AsyncConnection], Awaitable[bool]]) -> bool:
        """Run ``job`` unless it has run before (marker ``name`` in catalog_state).

        Under the start-up lock and in one transaction with the marker, so two
        processes starting together run it once. ``job`` returns whether it
        did anything; a False leaves no marker (it runs again next start).
        """
        async with self.locked() as conn:
            done = await conn.scalar(select(catalog_state.c.value).where(catalog_state.c.name == name))
            if done is not None:
                return False
            if not await job(conn):
                return False
            await conn.execute(catalog_state.insert().values(name=name, value=int(time.time() * 1000)))
            return True

