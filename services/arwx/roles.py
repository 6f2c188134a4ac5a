"""The roles a process can run: name → the HTTP routes it adds and the background work it starts.

Invariant: a role is one entry in ``ROLES`` and nothing else. The CLI makes a
subcommand of each (``arwx <role>``), ``arwx server`` runs every role marked
``in_server`` in one process, the API app routes what the roles of its
process declare, the process opens the optional parts they ``need``, and the
server starts and stops their background work. No other module names a role.

Adding a role (a runner, a dashboard) is one entry::

    "dashboard": Role("serve the web dashboard", routes=(web_routes.add_routes,)),
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from arwx.blobs import routes as blob_routes
from arwx.blobs.gc import PeriodicGc
from arwx.compat.chachaml import routes as chachaml_routes
from arwx.compat.mlflow import routes as mlflow_routes
from arwx.compat.mlservice import routes as mlservice_routes
from arwx.compat.wild import routes as wild_routes
from arwx.compat.workbench import routes as workbench_routes
from arwx.components import Components
from arwx.config import Settings
from arwx.consumer.runner import Consumer
from arwx.control import artifact_routes
from arwx.control import routes as control_routes
from arwx.crashwatch import CrashWatch
from arwx.gateway import routes as gateway_routes
from arwx.query import routes as query_routes
from arwx.web import routes as web_routes


class Background(Protocol):
    """Work a role runs beside the HTTP API; stopped (drained) on shutdown.

    ``paused``: None while it can do its work, else why not (``/ready`` then says 503)."""

    paused: str | None

    async def stop(self) -> None: ...


#: Called by background work that died: the process must stop, non-zero, not stay up half alive.
OnFatal = Callable[[BaseException], None]


@dataclass(frozen=True)
class Shared:
    """Parts a role shares with other processes when it runs without the rest of ``arwx server``:
    they must be servers, not files in a local data directory."""

    settings: tuple[str, ...]  # all of these must be set
    message: str  # what ``arwx <role>`` says when one is not


LOG_AND_STORE = Shared(
    ("kafka_bootstrap", "clickhouse_url"),
    "needs --kafka and --clickhouse (ARWX_KAFKA_BOOTSTRAP, ARWX_CLICKHOUSE_URL); "
    "for Kafka on one host use `arwx server --kafka`",
)
CATALOG = Shared(
    ("catalog_url",),
    "needs --catalog postgresql://… (ARWX_CATALOG_URL): every gateway and query service shares one catalog "
    "of keys and runs",
)
BLOBS = Shared(
    ("blobs_url",),
    # A blob uploaded through one gateway must be readable through any query service.
    "needs --blobs s3://bucket/prefix (ARWX_BLOBS_URL), shared by every gateway and query service",
)


@dataclass(frozen=True)
class Role:
    """What one role adds to a process."""

    help: str
    routes: tuple[Callable[[web.Application], None], ...] = ()  # each adds routes to the API app
    start: Callable[[Components, OnFatal], Awaitable[Background]] | None = None  # starts its background work
    needs: frozenset[str] = frozenset()  # optional parts of ``Components`` it uses: "reader", "blobs", "catalog"
    in_server: bool = True  # part of ``arwx server`` (all roles in one process)
    pause_means: str = "it waits"  # what ``/ready`` says while its background work is paused
    alone_needs: tuple[Shared, ...] = (LOG_AND_STORE,)


async def _start_consumer(c: Components, on_fatal: OnFatal) -> Background:
    assert c.reader is not None  # needs "reader": the process opened one
    consumer = Consumer(c.reader, c.store, on_fatal=on_fatal)
    await consumer.start()
    return consumer


async def _start_crashwatch(c: Components, on_fatal: OnFatal) -> Background:
    assert c.runs is not None  # the query role needs the catalog
    watch = CrashWatch(c.runs, c.settings.run_crash_after_s)
    await watch.start()
    if c.settings.blob_gc_interval_s <= 0 or c.blobs is None or c.catalog is None:
        return watch
    gc = PeriodicGc(c.blobs, c.catalog, c.settings.blob_gc_interval_s, c.settings.blob_gc_grace_s)
    await gc.start()
    return _Together((watch, gc))


class _Together:
    """Several pieces of background work as one role's: paused when any is, stopped together."""

    def __init__(self, parts: tuple[Background, ...]) -> None:
        self.parts = parts

    @property
    def paused(self) -> str | None:
        return next((p.paused for p in self.parts if p.paused), None)

    async def stop(self) -> None:
        for p in self.parts:
            await p.stop()


ROLES: dict[str, Role] = {
    "gateway": Role(
        "run the ingest gateway (HTTP → log), the MLflow tracking API (docs/mlflow.md), ml-workbench's "
        "experiments API and ml-service's and chachaml's (docs/compat.md), and the Wild V2 sweeps/runs API "
        "(docs/runner.md)",
        routes=(
            gateway_routes.add_routes, blob_routes.add_write_routes, artifact_routes.add_write_routes,
            mlflow_routes.add_routes, control_routes.add_write_routes, workbench_routes.add_routes,
            wild_routes.add_routes, mlservice_routes.add_routes, chachaml_routes.add_write_routes,
        ),
        needs=frozenset({"blobs", "catalog"}),
        alone_needs=(LOG_AND_STORE, CATALOG, BLOBS),
    ),
    "consumer": Role(
        "run a consumer (log → ClickHouse)",
        start=_start_consumer,
        needs=frozenset({"reader"}),
        # The consumer pauses only while the store refuses writes (a full disk still answers a ping).
        pause_means="the store takes no writes",
    ),
    "query": Role(
        "run the query service (history, receipts), crash detection (runs whose writers went silent), blob "
        "garbage collection (when ARWX_BLOB_GC_INTERVAL_S is set) and the dashboard at /",
        start=_start_crashwatch,
        routes=(
            query_routes.add_routes, blob_routes.add_read_routes, artifact_routes.add_read_routes,
            control_routes.add_read_routes, web_routes.add_routes, chachaml_routes.add_read_routes,
        ),
        needs=frozenset({"blobs", "catalog"}),
        alone_needs=(LOG_AND_STORE, CATALOG, BLOBS),
    ),
}

SERVER_ROLES = frozenset(name for name, role in ROLES.items() if role.in_server)


def needs(roles: frozenset[str]) -> frozenset[str]:
    """The optional parts the process running ``roles`` opens. Any role with routes also needs
    the catalog: every route but the public ones authenticates a key, and keys live there."""
    out = frozenset().union(*(ROLES[r].needs for r in roles))
    return out | {"catalog"} if any(ROLES[r].routes for r in roles) else out


def add_routes(app: web.Application, roles: frozenset[str]) -> None:
    """The routes of ``roles``, in registry order (so one process always routes the same way)."""
    for name, role in ROLES.items():
        if name in roles:
            for add in role.routes:
                add(app)


def serves_http(roles: frozenset[str]) -> bool:
    return any(ROLES[name].routes for name in roles)


def unmet_alone_need(roles: frozenset[str], settings: Settings) -> Shared | None:
    """The first shared part ``roles`` need that ``settings`` do not name, when they run
    without the rest of ``arwx server``; ``None`` when nothing is missing."""
    if roles >= SERVER_ROLES:
        return None
    for name in ROLES:
        if name in roles:
            for shared in ROLES[name].alone_needs:
                if not all(getattr(settings, s) for s in shared.settings):
                    return shared
    return None
