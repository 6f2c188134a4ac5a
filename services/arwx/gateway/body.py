"""Reading a request body with bounded size, time and memory.

Invariant: no body is read without bounds. Every read waits at most
``body_idle_s`` for the next bytes and, for whole bodies, at most
``body_timeout_s`` in all (a stream may run long, but never stall); past
either the request is answered 408. An ingest request's bytes are reserved in
the in-flight budget as they arrive (``backpressure.Reservation``), so a held
connection holds only what it has sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from arwx.appkeys import CONFIG
from arwx.backpressure import RESERVATION
from arwx.errors import PayloadTooLarge, RequestTimeout


async def body_chunks(request: web.Request, whole: bool) -> AsyncIterator[bytes]:
    """The body as it arrives; ``whole``: the body is read in full before use (total-time bound)."""
    cfg = request.config_dict[CONFIG]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.body_timeout_s if whole else None
    reservation = request.get(RESERVATION)
    while True:
        wait = cfg.body_idle_s if deadline is None else min(cfg.body_idle_s, deadline - loop.time())
        try:
            async with asyncio.timeout(max(wait, 0)):
                chunk = await request.content.readany()
        except TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise RequestTimeout(f"the body was not received within {cfg.body_timeout_s:g}s") from None
            raise RequestTimeout(f"no body bytes received for {cfg.body_idle_s:g}s") from None
        if not chunk:
            return
        if reservation is not None:
            reservation.grow(len(chunk))
        yield chunk


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or ``PayloadTooLarge`` as soon as it passes ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body of {request.content_length} bytes is over the {limit}-byte limit")
    buf = bytearray()
    async for chunk in body_chunks(request, whole=True):
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    return bytes(buf)
