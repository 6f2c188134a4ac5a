"""HTTP glue shared by control-plane routes: bodies, error answers, Idempotency-Key.

``handler`` turns what services raise (``ControlError``) and malformed bodies
into one JSON error answer; ``idempotent`` makes a POST create safe to resend:
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
from arwx.control.errors import ControlError
from arwx.control.idempotency import HEADER, fingerprint
from arwx.gateway.body import BodyTooLarge, read_body
from arwx.gateway.errors import json_error
from arwx.wire import BadInput, decode_body

CONTROL = web.AppKey("control", Control)
MAX_BODY = 1 << 20
_BODY = web.RequestKey("control_body", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def error_response(e: ControlError) -> web.Response:
    return web.json_response({"error": str(e), **e.extra}, status=e.status)


def handler(fn: Handler) -> Handler:
    """Answer ``ControlError`` and malformed input with its 4xx."""

    @functools.wraps(fn)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except ControlError as e:
            return error_response(e)
        except (BadInput, BodyTooLarge) as e:
            return json_error(400, f"bad input: {e}")

    return wrapped


async def body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The request body (read once; ``idempotent`` may have read it already)."""
    if _BODY not in request:
        request[_BODY] = await read_body(request, limit)
    data = request[_BODY]
    if len(data) > limit:
        raise BodyTooLarge(f"body is over the {limit}-byte limit")
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
            try:
                data = await body(request, limit)
                keys, org = request.app[CONTROL].idempotency, request[API_KEY].org
                replay = await keys.claim(org, key, fingerprint(request.method, request.path_qs, data))
            except ControlError as e:
                return error_response(e)
            except BodyTooLarge as e:
                return json_error(400, f"bad input: {e}")
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


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in ``lo..hi`` (``Invalid`` names it otherwise)."""
    from arwx.control.errors import Invalid

    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer") from None
    if not lo <= v <= hi:
        raise Invalid(f"{name} must be in {lo}..{hi}")
    return v


def json_ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
