"""The parts one process uses, built once from the settings.

Invariant: every part of a process (HTTP handlers, the consumer, the ops
listener, ``arwx keys``) gets the same objects from one ``Components``: one
store (wrapped for metrics), one log, one tenancy, one runs registry. Which
backend each part is follows from the settings alone, here and nowhere else:

- the store: a ClickHouse server with ``clickhouse_url``, else chDB in the data directory;
- the log: Kafka with ``kafka_bootstrap``, else the embedded SQLite log in the data directory;
- the blob store: S3-compatible storage with ``blobs_url``, else a directory in the data directory;
- the catalog (orgs, keys, runs, accounts): PostgreSQL with ``catalog_url``, else SQLite in the data directory.

The implementations import their package's ``base``; only this module imports
the implementations, so no package imports itself in a circle.

What each role does with them is in ``arwx.roles``; the order of start and
stop is in ``arwx.server``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from arwx.accounts.service import Accounts
from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.catalog.mirror import RunMirror
from arwx.catalog.startup import open_catalog
from arwx.config import Settings
from arwx.control import Control
from arwx.datadir import StartRefused
from arwx.ingest.service import IngestService
from arwx.log.base import EventLog, LogReader
from arwx.runs import Runs
from arwx.store.base import Store
from arwx.store.instrumented import InstrumentedStore
from arwx.store.schema import apply_schema
from arwx.tenancy import Tenancy

Closer = Callable[[], Awaitable[None]]


@dataclass
class Components:
    """The shared parts of one process; the optional ones only where a role of the process needs them
    (``arwx.roles.Role.needs``): ``reader`` for a consumer-group member, ``blobs`` and ``catalog``
    (with the tenancy, runs and ingest built on it) for the HTTP roles."""

    settings: Settings
    store: Store
    log: EventLog
    catalog: Catalog | None = None
    tenancy: Tenancy | None = None
    runs: Runs | None = None
    ingest: IngestService | None = None  # the one path points take into the log, for every route and adapter
    reader: LogReader | None = None
    blobs: BlobStore | None = None
    control: Control | None = None  # the control plane's services: with the catalog and the blob store
    accounts: Accounts | None = None  # people who sign in (the dashboard): with the catalog


def open_store(settings: Settings) -> Store:
    """The store the settings name (not started): a server with a URL, else chDB in the data directory."""
    if settings.clickhouse_url:
        from arwx.store.clickhouse_store import ClickHouseStore

        return ClickHouseStore(settings.clickhouse_url)
    from arwx.store.chdb_store import ChdbStore

    return ChdbStore(str(settings.data_path))


def store_name(settings: Settings) -> str:
    """The store, as messages name it."""
    return "the ClickHouse server" if settings.clickhouse_url else f"chDB in {settings.data_path / 'clickhouse'}"


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name (not started): S3 for an ``s3://`` URL, else ``<data dir>/blobs``."""
    if settings.blobs_url:
        from arwx.blobs.s3 import S3BlobStore

        return S3BlobStore.from_url(settings.blobs_url)
    from arwx.blobs.directory import DirectoryBlobStore

    return DirectoryBlobStore(settings.data_path / "blobs")


async def _open_log(settings: Settings, read: bool, closers: list[Closer]) -> tuple[EventLog, LogReader | None]:
    s = settings
    if s.kafka_bootstrap:
        from arwx.log.kafka_log import KafkaLog, KafkaLogReader

        producer = KafkaLog(
            s.kafka_bootstrap,
            topic=s.kafka_topic,
            partitions=s.kafka_partitions,
            send_timeout_s=s.send_timeout_s,
            replication_factor=s.kafka_replication,
            group_id=s.consumer_group,
        )
        await producer.start()
        closers.append(producer.stop)
        reader = None
        if read:
            reader = KafkaLogReader(s.kafka_bootstrap, topic=s.kafka_topic, group_id=s.consumer_group)
            await reader.start()
            closers.append(reader.stop)
        return producer, reader
    from arwx.log.sqlite_log import LogCorrupt, SqliteLog

    # One SQLite file is both sides; it is a reader only where a role consumes.
    sqlite_log = SqliteLog(
        str(s.data_path), group_id=s.consumer_group, send_timeout_s=s.send_timeout_s, retention_s=s.log_retention_s
    )
    try:
        await sqlite_log.start()
    except LogCorrupt as e:
        raise StartRefused(str(e)) from e
    closers.append(sqlite_log.stop)
    return sqlite_log, sqlite_log if read else None


async def open_components(settings: Settings, *, needs: frozenset[str], closers: list[Closer]) -> Components:
    """Start the store (schema applied), the log and the optional parts in ``needs``
    ("reader", "blobs", "catalog"); ``closers`` gets each part's stop, in start order.
    The catalog is migrated here; whether it goes with this store is checked
    by the server (``arwx.datadir.check_catalog``) before any role runs.

    The caller stops them in reverse order, also when this raises half way.
    Raises ``StartRefused`` (naming the file and the way out) when the store
    cannot be opened or the embedded log is damaged.
    """
    if not settings.kafka_bootstrap:
        settings.data_path.mkdir(parents=True, exist_ok=True)
    store = InstrumentedStore(open_store(settings))
    try:
        await store.start()
        closers.append(store.stop)
        await apply_schema(store)
    except Exception as e:
        raise StartRefused(f"the store ({store_name(settings)}) cannot be opened or checked: {e}") from e
    # The query service reads pending counts from the log for receipts, so every process opens it.
    log, reader = await _open_log(settings, "reader" in needs, closers)
    catalog = tenancy = runs = ingest = accounts = None
    if "catalog" in needs:
        catalog = await open_catalog(settings.catalog_url, settings.data_path, store)
        closers.append(catalog.stop)
        tenancy = Tenancy(catalog, refresh_s=settings.key_refresh_s)
        runs = Runs(catalog, RunMirror(store))
        ingest = IngestService(log, runs)
        accounts = Accounts(catalog, settings.session_ttl_s, settings.password_token_ttl_s)
    blobs = None
    if "blobs" in needs:
        blobs = open_blob_store(settings)
        await blobs.start()
        closers.append(blobs.stop)
    control = Control.open(catalog, blobs) if catalog is not None and blobs is not None else None
    return Components(
        settings=settings,
        store=store,
        log=log,
        catalog=catalog,
        control=control,
        tenancy=tenancy,
        runs=runs,
        ingest=ingest,
        reader=reader,
        blobs=blobs,
        accounts=accounts,
    )
