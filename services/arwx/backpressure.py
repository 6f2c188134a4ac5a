"""The gateway's bound on ingest work in flight: memory stays bounded.

Each ingest request reserves its cost in bytes before its body is read and
releases it when answered. Past ``max_inflight_bytes`` a request is refused at
once with 429 and ``Retry-After`` instead of waiting in memory; a slow or
stalled log (requests waiting for their append to be durable keep their
reservation) therefore turns into 429s, not into a growing queue. The log's
own limits (the embedded log's pending bytes, Kafka send timeouts) answer 503.
"""

from __future__ import annotations

from aiohttp import web

from arwx import metrics
from arwx.appkeys import CONFIG
from arwx.gateway.errors import json_error

INGEST_PATHS = frozenset({"/v1/ingest", "/v1/ingest/stream"})
STREAM_PATH = "/v1/ingest/stream"
# A stream holds one line and one chunk of points (CHUNK_POINTS, about half a
# MiB on the wire) at a time, whatever its length: that, not its length, is its cost.
STREAM_CHUNK_BYTES = 1 << 20
RETRY_AFTER_S = "1"


class InflightBytes:
    """A byte budget shared by the requests of one app (one event loop: no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def try_acquire(self, n: int) -> bool:
        # An idle gateway admits any single request, so a limit below a
        # request's size can never wedge it.
        if self.used and self.used + n > self.limit:
            return False
        self.used += n
        metrics.INGEST_IN_FLIGHT_BYTES.inc(n)
        return True

    def release(self, n: int) -> None:
        self.used -= n
        metrics.INGEST_IN_FLIGHT_BYTES.dec(n)


def request_cost(request: web.Request) -> int:
    """Bytes a request may hold in memory: its body for a batch, a line and a chunk for a stream."""
    cfg = request.app[CONFIG]
    if request.path == STREAM_PATH:
        bound = cfg.max_line_bytes + STREAM_CHUNK_BYTES
        return min(request.content_length, bound) if request.content_length is not None else bound
    if request.content_length is None:
        return cfg.max_body_bytes  # chunked: it may grow to the body limit
    return min(request.content_length, cfg.max_body_bytes)


INFLIGHT = web.AppKey("arwx_inflight", InflightBytes)


@web.middleware
async def limit_inflight(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """429 + ``Retry-After`` when admitting this ingest request would pass the byte budget."""
    if request.method != "POST" or request.path not in INGEST_PATHS:
        return await handler(request)
    budget = request.app[INFLIGHT]
    cost = request_cost(request)
    if not budget.try_acquire(cost):
        metrics.INGEST_THROTTLED.inc()
        return json_error(
            429,
            f"the gateway has {budget.used} bytes of ingest in flight (limit {budget.limit}); retry later",
            {"Retry-After": RETRY_AFTER_S},
        )
    try:
        return await handler(request)
    finally:
        budget.release(cost)
