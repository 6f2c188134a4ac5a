"""The dashboard: public static files at ``/`` and ``/static/``; every datum comes from the JSON API.

Invariant: only files of ``web/static`` read at start-up are ever served. A
request names a file by its path *relative to that folder*, looked up in a
dict built then, never joined to a filesystem path, so nothing outside the
folder (and nothing added later) can be reached. The files hold no data: the
page signs in (``/v1/auth/*``) and reads everything else with its session, so
serving them without a key leaks nothing. A strict Content-Security-Policy
allows scripts from this origin only: a datum that slipped into markup could
still not run.

Caching: ``index.html`` is revalidated on every load (an ETag, 304 when
unchanged) and names the other files under ``/static/v-<digest>/``, where
``<digest>`` hashes every file. ES modules import each other by relative
path, so the whole set is fetched under that prefix and served
``immutable`` for a year: a return visit loads nothing but the page, and a
new server version changes the digest, so no browser keeps a stale file. A
request for another digest (a page from before an upgrade) gets today's file,
revalidated instead of cached.
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
    # Revalidate every time (unversioned paths and the page itself); a 304 costs nothing.
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


_IMMUTABLE = "public, max-age=31536000, immutable"


def _file(body: bytes, ctype: str) -> StaticFile:
    return StaticFile(body, ctype, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load(folder: Path = STATIC) -> dict[str, StaticFile]:
    """Every servable file under ``folder`` by its relative POSIX path (the lookup table);
    ``index.html`` names the others under ``/static/v-<digest>/`` (``version(files)``)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        ctype = _TYPES.get(path.suffix)
        if path.is_file() and ctype is not None:
            files[path.relative_to(folder).as_posix()] = _file(path.read_bytes(), ctype)
    if "index.html" not in files:
        raise RuntimeError(f"the dashboard's index.html is missing from {folder}")
    ver = version(files)
    page = files["index.html"].body.replace(b'"/static/', f'"/static/v-{ver}/'.encode())
    files["index.html"] = _file(page, files["index.html"].content_type)
    return files


def version(files: dict[str, StaticFile]) -> str:
    """The digest of every file but the page: it changes whenever any of them does."""
    h = hashlib.sha256()
    for name, f in sorted(files.items()):
        if name != "index.html":
            h.update(name.encode() + b"\0" + f.etag.encode())
    return h.hexdigest()[:16]


FILES = web.AppKey("arwx_web_files", dict)
VERSION = web.AppKey("arwx_web_version", str)


def _answer(request: web.Request, name: str, immutable: bool = False) -> web.Response:
    f = request.app[FILES].get(name)
    if f is None:
        raise NotFound(f"no such dashboard file {name!r}")
    headers = {**_HEADERS, "ETag": f.etag}
    if immutable:
        headers["Cache-Control"] = _IMMUTABLE
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


@public
async def versioned_file(request: web.Request) -> web.Response:
    """A file under ``/static/v-<digest>/``: cached for good when the digest is this server's."""
    current = request.match_info["version"] == request.app[VERSION]
    return _answer(request, request.match_info["file"], immutable=current)


def add_routes(app: web.Application) -> None:
    """Serve the dashboard (read into memory here, once per process)."""
    app[FILES] = load()
    app[VERSION] = version(app[FILES])
    app.router.add_get("/", index)
    # The one-time set-password link `arwx server` prints (``/setup?token=…``) opens the same page.
    app.router.add_get("/setup", index)
    app.router.add_get("/static/v-{version:[0-9a-f]{16}}/{file:.+}", versioned_file)
    app.router.add_get("/static/{file:.+}", static_file)
