"""HTTP glue shared by control-plane routes: bounded JSON bodies and Idempotency-Key.

Refusals are ``arwx.errors`` exceptions, rendered by the app's middleware.
``idempotent`` makes a POST create safe to resend:
with an ``Idempotency-Key`` header the first answer is stored in the catalog
and replayed (with ``Idempotent-Replayed: true``) for the same request, and a
different request under the same key is a 409 (see ``idempotency.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from arwx.appkeys import API_KEY
from arwx.control import Control
from arwx.control.idempotency import HEADER, fingerprint
from arwx.errors import PayloadTooLarge
from arwx.gateway.body import read_body
from arwx.wire import decode_body

CONTROL = web.AppKey("control", Control)
MAX_BODY = 1 << 20
_BODY = web.RequestKey("control_body", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


async def body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The request body (read once; ``idempotent`` may have read it already)."""
    if _BODY not in request:
        request[_BODY] = await read_body(request, limit)
    data = request[_BODY]
    if len(data) > limit:
        raise PayloadTooLarge(f"body is over the {limit}-byte limit")
    return data


async def json_body(request: web.Request, type_: type[T], limit: int = MAX_BODY) -> T:
    """The body decoded into the msgspec struct ``type_`` (``BadInput`` names the field)."""
    return decode_body(await body(request, limit), type_)


def idempotent(limit: int = MAX_BODY) -> Callable[[Handler], Handler]:
    """Make a create resendable under an ``Idempotency-Key`` header (body up to ``limit`` bytes)."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            key = request.headers.get(HEADER)
            if key is None:
                return await fn(request)
            data = await body(request, limit)
            keys, org = request.app[CONTROL].idempotency, request[API_KEY].org
            replay = await keys.claim(org, key, fingerprint(request.method, request.path_qs, data))
            if replay is not None:
                return web.Response(
                    body=replay.body.encode(), status=replay.status, content_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
            try:
                resp = await fn(request)
            except BaseException:
                await keys.release(org, key)
                raise
            if resp.status >= 500 or not isinstance(resp, web.Response) or not isinstance(resp.body, bytes):
                await keys.release(org, key)
            else:
                await keys.complete(org, key, resp.status, resp.body.decode())
            return resp

        return wrapped

    return wrap


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
