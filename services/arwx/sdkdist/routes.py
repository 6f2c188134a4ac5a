"""``/sdk/``: a pip ``--find-links`` page and the arwandb wheel it links. Public, like ``/health``.

Only the one wheel built in memory is ever served: a client's file name is
compared with its name, never joined to a filesystem path, so nothing under
``/sdk/`` can reach another file; any other name is a JSON 404.
"""

from __future__ import annotations

from html import escape

from aiohttp import web

from arwx.appkeys import SDK_WHEEL
from arwx.errors import NotFound
from arwx.gateway.auth import public
from arwx.sdkdist.wheel import Wheel, served_wheel

# Revalidate every time: the bytes follow the server's SDK sources, and a 304 costs nothing.
_CACHE = "public, no-cache"


def _etag(wheel: Wheel, what: str) -> str:
    return f'"{what}-{wheel.sha256[:32]}"'


def _fresh(request: web.Request, etag: str) -> bool:
    given = request.headers.get("If-None-Match", "")
    return given.strip() == "*" or etag in [t.strip() for t in given.split(",")]


def _answer(request: web.Request, body: bytes, content_type: str, etag: str, extra: dict[str, str]) -> web.Response:
    headers = {"ETag": etag, "Cache-Control": _CACHE, "X-Content-Type-Options": "nosniff", **extra}
    if _fresh(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def index_html(wheel: Wheel) -> bytes:
    """The find-links page: one link, with the hash pip verifies and the Python it needs."""
    name = escape(wheel.filename)
    requires = f' data-requires-python="{escape(wheel.requires_python)}"' if wheel.requires_python else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>arwandb</title></head><body>\n"
        f'<a href="{name}#sha256={wheel.sha256}"{requires}>{name}</a>\n'
        "</body></html>\n"
    ).encode()


@public
async def index(request: web.Request) -> web.Response:
    wheel = request.app[SDK_WHEEL]
    return _answer(request, index_html(wheel), "text/html; charset=utf-8", _etag(wheel, "index"), {})


@public
async def redirect_to_index(request: web.Request) -> web.Response:
    # The page links the wheel relatively: it must be read as /sdk/, not /sdk.
    raise web.HTTPMovedPermanently("/sdk/")


@public
async def wheel_file(request: web.Request) -> web.Response:
    wheel = request.app[SDK_WHEEL]
    if request.match_info["filename"] != wheel.filename:
        raise NotFound(f"no such file under /sdk/; the SDK is /sdk/{wheel.filename}")
    disposition = {"Content-Disposition": f'attachment; filename="{wheel.filename}"'}
    return _answer(request, wheel.data, "application/zip", _etag(wheel, "wheel"), disposition)


def add_routes(app: web.Application) -> None:
    """Serve the SDK; the wheel is built here (once per process), so a broken SDK stops startup."""
    app[SDK_WHEEL] = served_wheel()
    app.router.add_get("/sdk", redirect_to_index)
    app.router.add_get("/sdk/", index)
    # Any name, slashes included, so that every path under /sdk/ answers the same JSON 404.
    app.router.add_get("/sdk/{filename:.+}", wheel_file)
