"""The ops listener: ``/metrics``, ``/ready`` and ``/health`` on their own port.

The project's rule is that no API endpoint but ``/health`` answers without a
key. Scrapers and Kubernetes probes carry no key, so they get a second
listener (``--metrics-port``, off by default, on ``--metrics-host``, loopback by
default) that serves only these three read-only paths and no tenant data.

- ``/health``: liveness, 200 while the process runs its event loop.
- ``/ready``: 200 when every part this process needs answers (the log, the
  store) and its consumer is not paused waiting for the store (a full disk
  still answers a ping, but takes no writes); 503 naming the parts that do
  not, and 503 while starting or stopping, so a load balancer stops sending
  before the API port closes.
- ``/metrics``: the Prometheus text format. Gauges that need a look at the
  log (consumer lag per partition, the embedded log's backlog) are sampled
  right before each scrape, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from arwx import metrics
from arwx.catalog import Catalog
from arwx.components import Components
from arwx.gateway.errors import AppRunner
from arwx.log.base import EventLog, LogReader
from arwx.log.sqlite_log import SqliteLog
from arwx.roles import ROLES, Background
from arwx.store.base import Store

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0  # a probe answers within this even when a part hangs
_PROBE_KEY = "__arwx_ready__"  # a key no run uses: pending() on it is a cheap round trip

Sampler = Callable[[], Awaitable[None]]


class Watched(Protocol):
    """What the listener looks at: the process's phase and parts (``arwx.server.Server``)."""

    phase: str  # starting → running → stopping, or failed
    components: Components | None  # None until started
    background: dict[str, Background]  # role → its work; ``paused`` says why it waits
    samplers: list[Sampler]


async def _bounded(aw: Awaitable[object], what: str) -> str:
    """``"ok"``, or why not."""
    try:
        result = await asyncio.wait_for(aw, CHECK_TIMEOUT_S)
    except asyncio.TimeoutError:
        return f"{what} did not answer within {CHECK_TIMEOUT_S:g}s"
    except Exception as e:  # noqa: BLE001 - any failure means not ready; say which
        return f"{what}: {e}"
    if result is False:
        return f"{what} does not answer"
    return "ok"


async def readiness(
    phase: str, store: Store | None = None, log: EventLog | None = None, paused: dict[str, str | None] | None = None,
    catalog: Catalog | None = None,
) -> tuple[bool, dict]:
    """Whether a process in ``phase`` with these parts can do its work now, and each part's state.

    ``paused``: per background role, None while it works, else what its pause means and why.
    """
    if phase != "running":
        return False, {"status": phase, "checks": {}}
    pending: dict[str, Awaitable[str]] = {}
    if store is not None:
        pending["store"] = _bounded(store.ping(), "store")
    if catalog is not None:
        pending["catalog"] = _bounded(catalog.ping(), "catalog")
    if log is not None:
        pending["log"] = _bounded(log.pending(_PROBE_KEY), "log")
    results = await asyncio.gather(*pending.values())
    checks = dict(zip(pending, results))
    for name, why in (paused or {}).items():
        checks[name] = "ok" if why is None else why
    ok = all(v == "ok" for v in checks.values())
    return ok, {"status": "ready" if ok else "not ready", "checks": checks}


async def _readiness(watched: Watched) -> tuple[bool, dict]:
    c = watched.components
    paused = {
        name: None if work.paused is None else f"paused, {ROLES[name].pause_means}: {work.paused}"
        for name, work in watched.background.items()
    }
    return await readiness(
        watched.phase, c.store if c else None, c.log if c else None, paused, c.catalog if c else None
    )


# -- samplers: gauges read at scrape time -----------------------------------


def log_lag_sampler(reader: LogReader) -> Sampler:
    """Per partition this process's reader holds: appended minus committed by the group
    (the usual definition, as ``kafka-consumer-groups --describe`` prints it); for the
    embedded log also its backlog and the bytes waiting for its writer."""

    async def sample() -> None:
        lags = await reader.partition_lag()
        metrics.CONSUMER_LAG.clear()  # partitions that moved to another member drop out
        for (topic, partition), n in lags.items():
            metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(n)
        if isinstance(reader, SqliteLog):
            metrics.EMBEDDED_LOG_PENDING_BYTES.set(reader.pending_bytes)
            metrics.EMBEDDED_LOG_BACKLOG.set(sum(lags.values()))

    return sample


# -- the listener -------------------------------------------------------------


def build_ops_app(watched: Watched) -> web.Application:
    """The three unauthenticated paths; nothing else is routed here."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        ok, body = await _readiness(watched)
        metrics.READY.set(1 if ok else 0)
        return web.json_response(body, status=200 if ok else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        ok, _ = await _readiness(watched)
        metrics.READY.set(1 if ok else 0)
        for sample in watched.samplers:
            try:
                await asyncio.wait_for(sample(), CHECK_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - a gauge stays at its last value
                log.debug("metrics sampler failed: %r", e)
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    return app


async def start_ops_listener(watched: Watched, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start the listener; returns its runner (``cleanup()`` to stop) and URL."""
    runner = AppRunner(build_ops_app(watched), access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"
