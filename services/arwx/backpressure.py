"""The gateway's bound on ingest work in flight: memory stays bounded, and fair.

Invariants:

- An ingest request holds budget for the bytes it has actually sent (a
  batch: its body so far; a stream: up to one line and one chunk of points),
  not for what it announces. A client that sends a byte and stops holds a
  byte, and ``body_idle_s`` later it is answered 408 and its byte released
  (``gateway/body.py``).
- One organization holds at most ``max_inflight_org_share`` of the budget
  (never less than one largest body), so one tenant's slow or numerous
  requests cannot starve the others.
- Past either bound the request is refused at once with 429 and
  ``Retry-After`` instead of waiting in memory. Requests waiting for their
  append to be durable keep their bytes: a slow or stalled log turns into
  429s, not into a growing queue. The log's own limits answer 503.
"""

from __future__ import annotations

from aiohttp import web

from arwx import metrics
from arwx.appkeys import API_KEY, CONFIG
from arwx.errors import TooManyRequests

# A stream holds one line and one chunk of points (CHUNK_POINTS, about half a
# MiB on the wire) at a time, whatever its length: that, not its length, is its cost.
STREAM_CHUNK_BYTES = 1 << 20


class InflightBytes:
    """A byte budget shared by the requests of one app, with a cap per
    organization (one event loop: no lock)."""

    def __init__(self, limit: int, org_limit: int | None = None) -> None:
        self.limit = limit
        self.org_limit = limit if org_limit is None else min(org_limit, limit)
        self.used = 0
        self.by_org: dict[str, int] = {}

    def try_acquire(self, org: str, n: int, held: int = 0) -> bool:
        """Take ``n`` more bytes for a request of ``org`` that holds ``held``
        already. A request holding everything in use is always admitted, so
        a limit below one request's size can never wedge the gateway."""
        org_used = self.by_org.get(org, 0)
        alone = self.used == held
        if not alone and (self.used + n > self.limit or org_used + n > self.org_limit):
            return False
        self.used += n
        self.by_org[org] = org_used + n
        metrics.INGEST_IN_FLIGHT_BYTES.inc(n)
        return True

    def release(self, org: str, n: int) -> None:
        if not n:
            return
        self.used -= n
        left = self.by_org[org] - n
        if left:
            self.by_org[org] = left
        else:
            del self.by_org[org]  # the map holds only orgs with bytes in flight
        metrics.INGEST_IN_FLIGHT_BYTES.dec(n)


class Reservation:
    """What one request holds of the budget; grows as its body arrives, up to ``cap``."""

    def __init__(self, budget: InflightBytes, org: str, cap: int) -> None:
        self.budget = budget
        self.org = org
        self.cap = cap
        self.held = 0

    def grow(self, n: int) -> None:
        """Hold ``n`` more bytes (up to ``cap`` in all), or raise ``TooManyRequests``."""
        n = min(n, self.cap - self.held)
        if n <= 0:
            return
        if not self.budget.try_acquire(self.org, n, self.held):
            metrics.INGEST_THROTTLED.inc()
            b = self.budget
            raise TooManyRequests(
                f"the gateway has {b.used} bytes of ingest in flight (limit {b.limit}, "
                f"{b.by_org.get(self.org, 0)} of them this organization's, limit {b.org_limit}); retry later"
            )
        self.held += n

    def release(self) -> None:
        self.budget.release(self.org, self.held)
        self.held = 0


_BUDGET = "arwx_budget"


def budgeted(kind: str):  # noqa: ANN201
    """Mark an ingest handler (where it is declared) as holding in-flight
    budget: ``"body"`` up to one body, ``"stream"`` up to a line and a chunk."""
    if kind not in ("body", "stream"):
        raise ValueError(f"budget kind {kind!r} is not body or stream")

    def mark(handler):  # noqa: ANN001, ANN202
        setattr(handler, _BUDGET, kind)
        return handler

    return mark


def request_cap(request: web.Request, kind: str) -> int:
    """The most a request may hold: its body for a batch, a line and a chunk for a stream."""
    cfg = request.config_dict[CONFIG]
    if kind == "stream":
        return cfg.max_line_bytes + STREAM_CHUNK_BYTES
    return cfg.max_body_bytes


INFLIGHT = web.AppKey("arwx_inflight", InflightBytes)
RESERVATION = web.RequestKey("arwx_reservation", Reservation)


@web.middleware
async def limit_inflight(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """Give a ``@budgeted`` request its ``Reservation`` (the body reader grows it);
    429 + ``Retry-After`` at once when its organization or the gateway is full."""
    kind = getattr(request.match_info.handler, _BUDGET, None)
    if kind is None:
        return await handler(request)
    reservation = Reservation(request.config_dict[INFLIGHT], request[API_KEY].org, request_cap(request, kind))
    request[RESERVATION] = reservation
    try:
        reservation.grow(1)  # nothing left: refuse before reading anything
        return await handler(request)
    finally:
        reservation.release()
