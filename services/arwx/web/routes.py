"""The dashboard: public static files at ``/`` and ``/static/``; every datum comes from the JSON API.

Invariant: only files of ``web/static`` read at start-up are ever served. A
request names a file by its path *relative to that folder*, looked up in a
dict built then, never joined to a filesystem path, so nothing outside the
folder (and nothing added later) can be reached. The files hold no data: the
page signs in (``/v1/auth/*``) and reads everything else with its session, so
serving them without a key leaks nothing. A strict Content-Security-Policy
allows scripts from this origin only: a datum that slipped into markup could
still not run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from arwx.errors import NotFound
from arwx.gateway.auth import public

STATIC = Path(__file__).resolve().parent / "static"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Styles: uPlot sizes its canvases through element.style, which CSP does not govern; no inline
# <style> or script anywhere. connect-src 'self': the page talks to this server only.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = {
    # Revalidate every time: the files follow the server's version, and a 304 costs nothing.
    "Cache-Control": "no-cache",
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load(folder: Path = STATIC) -> dict[str, StaticFile]:
    """Every servable file under ``folder`` by its relative POSIX path (the lookup table)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        ctype = _TYPES.get(path.suffix)
        if path.is_file() and ctype is not None:
            body = path.read_bytes()
            files[path.relative_to(folder).as_posix()] = StaticFile(
                body, ctype, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            )
    if "index.html" not in files:
        raise RuntimeError(f"the dashboard's index.html is missing from {folder}")
    return files


FILES = web.AppKey("arwx_web_files", dict)


def _answer(request: web.Request, name: str) -> web.Response:
    f = request.app[FILES].get(name)
    if f is None:
        raise NotFound(f"no such dashboard file {name!r}")
    headers = {**_HEADERS, "ETag": f.etag}
    if f.etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=f.body, headers={**headers, "Content-Type": f.content_type})


@public
async def index(request: web.Request) -> web.Response:
    """The single page; its screens are addressed after ``#`` so only ``/`` is ever loaded."""
    return _answer(request, "index.html")


@public
async def static_file(request: web.Request) -> web.Response:
    return _answer(request, request.match_info["file"])


def add_routes(app: web.Application) -> None:
    """Serve the dashboard (read into memory here, once per process)."""
    app[FILES] = load()
    app.router.add_get("/", index)
    # The one-time set-password link `arwx server` prints (``/setup?token=…``) opens the same page.
    app.router.add_get("/setup", index)
    app.router.add_get("/static/{file:.+}", static_file)
