"""Assembles the services of one process: which roles, which log, which store.

``arwx server`` runs all three roles (gateway, consumer, query) in one process;
``arwx gateway|consumer|query`` run one each. The same code serves both ways:
only the log (embedded SQLite or Kafka) and the store (chDB or a ClickHouse
server) differ.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web

from arwx.app import build_app
from arwx.blobs.base import BlobStore, open_blob_store
from arwx.catalog import Catalog
from arwx.catalog.mirror import RunMirror
from arwx.catalog.startup import open_catalog
from arwx.config import Settings
from arwx.consumer.runner import Consumer
from arwx.datadir import StartRefused, check_catalog, check_data_dir
from arwx.gateway.errors import AppRunner
from arwx.log.base import EventLog, LogReader
from arwx.ops import Parts, embedded_log_sampler, kafka_lag_sampler, start_ops_listener
from arwx.runs import Runs
from arwx.store.base import Store, open_store
from arwx.store.instrumented import InstrumentedStore
from arwx.store.schema import apply_schema
from arwx.tenancy import Tenancy

log = logging.getLogger("arwx")

ALL_ROLES = frozenset({"gateway", "consumer", "query"})


@dataclass
class Server:
    """The running parts of one process; ``start()``/``stop()`` in that order."""

    settings: Settings
    roles: frozenset[str] = ALL_ROLES
    #: ``arwx server --rebuild-store``: replay the embedded log into a store made anew.
    rebuild_store: bool = False
    #: What the start-up checks had to say (a rebuild and how much it replays).
    notice: str | None = None
    store: Store | None = None
    catalog: Catalog | None = None
    log: EventLog | None = None
    reader: LogReader | None = None
    consumer: Consumer | None = None
    runs: Runs | None = None
    tenancy: Tenancy | None = None
    blobs: BlobStore | None = None
    runner: web.AppRunner | None = None
    url: str = ""
    ops_url: str = ""
    first_key: str | None = None
    parts: Parts = field(default_factory=Parts)
    #: Set when a background part died (the consumer): the process must exit non-zero.
    died: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: BaseException | None = None
    _closers: list = field(default_factory=list)

    def _on_fatal(self, err: BaseException) -> None:
        """A background task died: never stay up half alive (acknowledging ingest nothing consumes)."""
        if self.fatal is None:
            self.fatal = err
        self.parts.phase = "failed"
        self.died.set()

    async def start(self) -> None:
        s = self.settings
        if s.metrics_port:
            # First up, last down: probes and scrapes see "starting" and
            # "stopping" rather than a refused connection.
            ops_runner, self.ops_url = await start_ops_listener(self.parts, s.metrics_host, s.metrics_port)
            self._closers.append(ops_runner.cleanup)
        if not s.kafka_bootstrap:
            s.data_path.mkdir(parents=True, exist_ok=True)
        self.store = InstrumentedStore(open_store(s.clickhouse_url or None, str(s.data_path)))
        store_name = "the ClickHouse server" if s.clickhouse_url else f"chDB in {s.data_path / 'clickhouse'}"
        try:
            await self.store.start()
            self._closers.append(self.store.stop)
            await apply_schema(self.store)
        except Exception as e:
            raise StartRefused(f"the store ({store_name}) cannot be opened or checked: {e}") from e
        self.parts.store = self.store
        self.log, self.reader = await self._open_log()
        self.parts.log, self.parts.reader = self.log, self.reader
        if not s.kafka_bootstrap:
            self.notice = await check_data_dir(self.log, self.store, store_name, self.rebuild_store)
        if self.roles & {"gateway", "query"}:
            # Keys and runs live in the catalog; the consumer needs neither.
            self.catalog = await open_catalog(s.catalog_url, s.data_path, self.store)
            self._closers.append(self.catalog.stop)
            self.parts.catalog = self.catalog
            paired = await check_catalog(self.catalog, self.store, store_name, self.rebuild_store)
            self.notice = "; ".join(n for n in (self.notice, paired) if n) or None
            self.tenancy = Tenancy(self.catalog, refresh_s=s.key_refresh_s)
            self.runs = Runs(self.catalog, RunMirror(self.store))
            await self.runs.sync_mirror()
        # The query service reads pending counts from the log for receipts, so every role needs it.
        if "consumer" in self.roles:
            self.consumer = Consumer(self.reader, self.store, on_fatal=self._on_fatal)
            await self.consumer.start()
            self.parts.consumer = self.consumer
            self._closers.append(self.consumer.stop)
            sampler = kafka_lag_sampler(self.reader) if s.kafka_bootstrap else embedded_log_sampler(self.reader)
            self.parts.samplers.append(sampler)
        if self.roles & {"gateway", "query"}:
            if self.roles == ALL_ROLES and not s.clickhouse_url:
                await self._bootstrap()
            self.blobs = open_blob_store(s.blobs_url or None, str(s.data_path))
            await self.blobs.start()
            self._closers.append(self.blobs.stop)
            components = {
                "config": s,
                "store": self.store,
                "log": self.log,
                "runs": self.runs,
                "tenancy": self.tenancy,
                "blobs": self.blobs,
            }
            app = build_app(components, set(self.roles))
            self.runner = AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
            await self.runner.setup()
            site = web.TCPSite(self.runner, s.host, s.port, reuse_address=True)
            await site.start()
            port = self.runner.addresses[0][1]
            self.url = f"http://{s.host}:{port}"
            # Stop accepting first; then the consumer drains; the log and the store close last.
            self._closers.append(self.runner.cleanup)
        self.parts.phase = "running"

    async def _open_log(self) -> tuple[EventLog, LogReader | None]:
        s = self.settings
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
            self._closers.append(producer.stop)
            reader = None
            if "consumer" in self.roles:
                reader = KafkaLogReader(s.kafka_bootstrap, topic=s.kafka_topic, group_id=s.consumer_group)
                await reader.start()
                self._closers.append(reader.stop)
            return producer, reader
        from arwx.log.sqlite_log import LogCorrupt, SqliteLog

        sqlite_log = SqliteLog(
            str(s.data_path), group_id=s.consumer_group, send_timeout_s=s.send_timeout_s, retention_s=s.log_retention_s
        )
        try:
            await sqlite_log.start()
        except LogCorrupt as e:
            raise StartRefused(str(e)) from e
        self._closers.append(sqlite_log.stop)
        return sqlite_log, sqlite_log

    async def _bootstrap(self) -> None:
        """First start of an embedded server: an organization and a key to use."""
        assert self.tenancy is not None
        if await self.tenancy.orgs():
            return
        org = await self.tenancy.create_org("default")
        _, self.first_key = await self.tenancy.create_key(org, "first key")

    async def stop(self) -> None:
        """Reverse order of start: stop accepting (finishing requests in flight),
        drain and commit the consumer, close the log and the store."""
        self.parts.phase = "stopping"  # /ready answers 503 from now on
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while stopping")


async def serve_forever(server: Server, stop: asyncio.Event) -> None:
    await server.start()
    try:
        await wait_stop_or_death(server, stop)
    finally:
        await server.stop()


async def wait_stop_or_death(server: Server, stop: asyncio.Event) -> bool:
    """Until ``stop`` is set (True) or a part of ``server`` dies (False)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.died.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return not server.died.is_set()
