"""Rendering ``arwx.errors`` as HTTP answers: the one place errors meet aiohttp.

An adapter mounted as a sub-application (``app.add_subapp("/api/2.0/mlflow",
sub)``) calls ``set_renderer(sub, fn)`` once; every error raised while
serving its routes (and the 401s, 404s and 429s of the shared middlewares)
is then written in its wire shape, with the status and headers the error
carries.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from arwx.errors import ApiError, default_body

Renderer = Callable[[ApiError], dict]
RENDERER = web.AppKey("arwx_error_renderer", object)


def set_renderer(app: web.Application, body: Renderer) -> None:
    """Errors of ``app``'s routes get ``body(error)`` as their JSON body."""
    app[RENDERER] = body


def render(request: web.Request, e: ApiError) -> web.Response:
    """The answer for ``e``: the innermost routing app's renderer, else ``{"error": ...}``."""
    body: Renderer = default_body
    for app in reversed(request.match_info.apps):
        if RENDERER in app:
            body = app[RENDERER]  # type: ignore[assignment]
            break
    return web.json_response(body(e), status=e.status, headers=e.headers)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"error": message}`` with ``status``: for answers built outside a request (parse errors)."""
    return web.json_response({"error": message}, status=status, headers=headers)


class _ParseErrorsAsJson(RequestHandler):
    """aiohttp answers what it cannot parse (huge headers, conflicting
    Content-Length and Transfer-Encoding, a bad chunk) before any middleware
    runs, in text/plain; this gives those answers the JSON error shape."""

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if a response was already sent
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        # The parser's message names what was wrong; a 5xx's would name internals.
        detail = f"{phrase}: {message}" if message and status < 500 else phrase
        resp = json_error(status, detail)
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _ParseErrorsAsJson(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parse errors in the JSON error shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same object, only __call__ differs: aiohttp builds it privately
        return server
