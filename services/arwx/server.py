"""One process: its components, its roles, the order they start and stop in.

``arwx server`` runs every role of ``arwx.roles.SERVER_ROLES`` (gateway,
consumer, query) in one process; ``arwx gateway|consumer|query`` run one
each. The same code serves both ways: only the log (embedded SQLite or Kafka)
and the store (chDB or a ClickHouse server) differ, and ``arwx.components``
picks them from the settings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web

from arwx.accounts.service import Accounts
from arwx.app import build_app
from arwx.blobs.base import BlobStore
from arwx.catalog import Catalog
from arwx.components import Closer, Components, open_components, store_name
from arwx.config import Settings
from arwx.consumer.runner import Consumer
from arwx.datadir import check_catalog, check_data_dir
from arwx.gateway.errors import AppRunner
from arwx.log.base import LogReader
from arwx.ops import Sampler, log_lag_sampler, start_ops_listener
from arwx.roles import ROLES, SERVER_ROLES, Background, needs, serves_http
from arwx.store.base import Store
from arwx.tenancy import OPERATOR_SCOPES, Tenancy

log = logging.getLogger("arwx")


@dataclass
class Server:
    """The running parts of one process; ``start()``/``stop()`` in that order.

    ``phase``, ``components``, ``background`` and ``samplers`` are what the ops listener reads.
    """

    settings: Settings
    roles: frozenset[str] = SERVER_ROLES
    #: ``arwx server --rebuild-store``: replay the embedded log into a store made anew.
    rebuild_store: bool = False
    #: What the start-up checks had to say (a rebuild and how much it replays).
    notice: str | None = None
    phase: str = "starting"  # starting → running → stopping; "failed" when background work died
    components: Components | None = None
    background: dict[str, Background] = field(default_factory=dict)  # role → its running work
    samplers: list[Sampler] = field(default_factory=list)
    runner: web.AppRunner | None = None
    url: str = ""
    ops_url: str = ""
    first_key: str | None = None
    #: First start: a one-time token that creates the first account (``/setup?token=…``).
    first_password_token: str | None = None
    #: Set when a background part died (the consumer): the process must exit non-zero.
    died: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: BaseException | None = None
    _closers: list[Closer] = field(default_factory=list)

    def _on_fatal(self, err: BaseException) -> None:
        """A background task died: never stay up half alive (acknowledging ingest nothing consumes)."""
        if self.fatal is None:
            self.fatal = err
        self.phase = "failed"
        self.died.set()

    async def start(self) -> None:
        s = self.settings
        if s.metrics_port:
            # First up, last down: probes and scrapes see "starting" and
            # "stopping" rather than a refused connection.
            ops_runner, self.ops_url = await start_ops_listener(self, s.metrics_host, s.metrics_port)
            self._closers.append(ops_runner.cleanup)
        c = self.components = await open_components(s, needs=needs(self.roles), closers=self._closers)
        if not s.kafka_bootstrap:
            # Before any role runs: the consumer must not feed a store the log does not belong to.
            self.notice = await check_data_dir(c.log, c.store, store_name(s), self.rebuild_store)
        if c.catalog is not None:
            # The catalog must go with this store (after a --rebuild-store it takes the new one).
            paired = await check_catalog(c.catalog, c.store, store_name(s), self.rebuild_store)
            self.notice = "; ".join(n for n in (self.notice, paired) if n) or None
            assert c.runs is not None
            await c.runs.sync_mirror()
        if c.reader is not None:
            self.samplers.append(log_lag_sampler(c.reader))
        for name, role in ROLES.items():
            if name in self.roles and role.start is not None:
                work = self.background[name] = await role.start(c, self._on_fatal)
                self._closers.append(work.stop)
        if serves_http(self.roles):
            if self.roles >= SERVER_ROLES and not s.clickhouse_url:
                assert c.tenancy is not None and c.accounts is not None  # the HTTP roles need the catalog
                await self._bootstrap(c.tenancy, c.accounts)
            app = build_app(c, self.roles)
            self.runner = AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10)
            await self.runner.setup()
            site = web.TCPSite(self.runner, s.host, s.port, reuse_address=True)
            await site.start()
            port = self.runner.addresses[0][1]
            self.url = f"http://{s.host}:{port}"
            # Stop accepting first; then the consumer drains; the log and the store close last.
            self._closers.append(self.runner.cleanup)
        if self.phase == "starting":  # not "failed" already
            self.phase = "running"

    async def _bootstrap(self, tenancy: Tenancy, accounts: Accounts) -> None:
        """First start of an embedded server: an organization, a key to use, and a one-time
        token that makes the first account (an admin of that organization)."""
        if await tenancy.orgs():
            return
        org = await tenancy.create_org("default")
        # The operator's key: it may also manage keys (``launch`` is granted only explicitly).
        _, self.first_key = await tenancy.create_key(org, "first key", OPERATOR_SCOPES)
        self.first_password_token = await accounts.password_token(org, "admin")

    async def stop(self) -> None:
        """Reverse order of start: stop accepting (finishing requests in flight),
        drain and commit the consumer, close the log and the store."""
        self.phase = "stopping"  # /ready answers 503 from now on
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:
                log.exception("error while stopping")

    # Shorthands for tests and tools; the parts live in ``components`` and ``background``.

    def _parts(self) -> Components:
        if self.components is None:
            raise RuntimeError("the server has not started")
        return self.components

    @property
    def store(self) -> Store:
        return self._parts().store

    @property
    def tenancy(self) -> Tenancy:
        tenancy = self._parts().tenancy
        assert tenancy is not None, "this process runs no HTTP role: no catalog"
        return tenancy

    @property
    def catalog(self) -> Catalog | None:
        return self._parts().catalog

    @property
    def blobs(self) -> BlobStore | None:
        return self._parts().blobs

    @property
    def reader(self) -> LogReader | None:
        return self._parts().reader

    @property
    def consumer(self) -> Consumer | None:
        """The consumer role's ``Consumer``, where this process runs that role."""
        return cast("Consumer | None", self.background.get("consumer"))


async def wait_stop_or_death(server: Server, stop: asyncio.Event) -> bool:
    """Until ``stop`` is set (True) or a part of ``server`` dies (False)."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.died.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return not server.died.is_set()
