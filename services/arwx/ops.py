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
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from arwx import metrics
from arwx.log.base import EventLog, LogReader
from arwx.store.base import Store

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0  # a probe answers within this even when a part hangs
_PROBE_KEY = "__arwx_ready__"  # a key no run uses: pending() on it is a cheap round trip


@dataclass
class Parts:
    """What a process runs; ``None`` for what it does not (yet) have."""

    phase: str = "starting"  # starting → running → stopping
    log: EventLog | None = None
    reader: LogReader | None = None
    store: Store | None = None
    consumer: object | None = None  # a Consumer: its ``paused`` says why it waits
    catalog: object | None = None  # arwx.catalog.Catalog (not imported: ops stays light)
    needs_log: bool = True
    samplers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


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


async def readiness(parts: Parts) -> tuple[bool, dict]:
    """Whether this process can do its work now, and each part's state."""
    if parts.phase != "running":
        return False, {"status": parts.phase, "checks": {}}
    checks: dict[str, str] = {}
    pending: dict[str, Awaitable[str]] = {}
    if parts.store is not None:
        pending["store"] = _bounded(parts.store.ping(), "store")
    if parts.catalog is not None:
        pending["catalog"] = _bounded(parts.catalog.ping(), "catalog")  # type: ignore[attr-defined]
    if parts.needs_log and parts.log is not None:
        pending["log"] = _bounded(parts.log.pending(_PROBE_KEY), "log")
    results = await asyncio.gather(*pending.values())
    checks = dict(zip(pending, results))
    if parts.consumer is not None:
        paused = getattr(parts.consumer, "paused", None)
        checks["consumer"] = "ok" if paused is None else f"paused, the store takes no writes: {paused}"
    ok = all(v == "ok" for v in checks.values())
    return ok, {"status": "ready" if ok else "not ready", "checks": checks}


# -- samplers: gauges read at scrape time -----------------------------------


def embedded_log_sampler(sqlite_log: object) -> Callable[[], Awaitable[None]]:
    """The embedded log's backlog (uncommitted messages), lag and pending append bytes."""

    async def sample() -> None:
        metrics.EMBEDDED_LOG_PENDING_BYTES.set(sqlite_log.pending_bytes)  # type: ignore[attr-defined]
        n = await sqlite_log.lag()  # type: ignore[attr-defined]
        metrics.EMBEDDED_LOG_BACKLOG.set(n)
        metrics.CONSUMER_LAG.labels(topic=sqlite_log.topic, partition="0").set(n)  # type: ignore[attr-defined]

    return sample


def kafka_lag_sampler(reader: object) -> Callable[[], Awaitable[None]]:
    """Per partition this consumer holds: end offset minus the group's committed offset
    (the usual definition, as ``kafka-consumer-groups --describe`` prints it)."""

    async def sample() -> None:
        # KafkaLogReader's aiokafka consumer: it already knows the brokers and the coordinator.
        consumer = getattr(reader, "_consumer", None)
        if consumer is None:
            return
        from aiokafka import TopicPartition

        tps = [TopicPartition(t, p) for t, p in sorted(reader.assignment())]  # type: ignore[attr-defined]
        ends = await consumer.end_offsets(tps) if tps else {}
        lags = {tp: max(ends[tp] - (await consumer.committed(tp) or 0), 0) for tp in tps}
        metrics.CONSUMER_LAG.clear()  # partitions that moved to another member drop out
        for tp, n in lags.items():
            metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(n)

    return sample


# -- the listener -------------------------------------------------------------


def build_ops_app(parts: Parts) -> web.Application:
    """The three unauthenticated paths; nothing else is routed here."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        ok, body = await readiness(parts)
        metrics.READY.set(1 if ok else 0)
        return web.json_response(body, status=200 if ok else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        ok, _ = await readiness(parts)
        metrics.READY.set(1 if ok else 0)
        for sample in parts.samplers:
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


async def start_ops_listener(parts: Parts, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start the listener; returns its runner (``cleanup()`` to stop) and URL."""
    runner = web.AppRunner(build_ops_app(parts), access_log=None, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"
