"""The aiohttp application: fail-closed auth, error shape, request metrics."""

from __future__ import annotations

import logging
import time
import uuid

from aiohttp import web

from arwx import metrics
from arwx.appkeys import API_KEY, CONFIG, LOG, RUNS, STORE, TENANCY
from arwx.gateway import routes as gateway_routes
from arwx.gateway.errors import json_error
from arwx.query import routes as query_routes

log = logging.getLogger("arwx.http")

PUBLIC_PATHS = frozenset({"/health"})


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """Request id, latency and status metrics; unexpected errors become a JSON 500."""
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex[:16]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    t0 = time.perf_counter()
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        resp = e
    except Exception:
        log.exception("request %s %s failed (request id %s)", request.method, route, request_id)
        resp = json_error(500, f"internal error (request id {request_id})")
    metrics.REQUESTS.labels(route=route, method=request.method, status=str(resp.status)).inc()
    metrics.REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - t0)
    resp.headers["X-Request-Id"] = request_id
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """Every path but ``/health`` needs a valid, enabled key: 401 otherwise."""
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    key = None
    if scheme.lower() == "bearer" and secret:
        key = await request.app[TENANCY].authenticate(secret.strip())
    if key is None:
        return json_error(401, "missing, invalid or revoked API key", {"WWW-Authenticate": 'Bearer realm="arwx"'})
    request[API_KEY] = key
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(components: dict, roles: set[str]) -> web.Application:
    """An app serving the HTTP roles in ``roles`` ({"gateway", "query"}).

    ``components`` holds config, store, log, runs and tenancy.
    """
    app = web.Application(middlewares=[observe, authenticate], client_max_size=components["config"].max_body_bytes)
    app[CONFIG] = components["config"]
    app[STORE] = components["store"]
    app[LOG] = components["log"]
    app[RUNS] = components["runs"]
    app[TENANCY] = components["tenancy"]
    app.router.add_get("/health", health)
    if "gateway" in roles:
        gateway_routes.add_routes(app)
    if "query" in roles:
        query_routes.add_routes(app)
    return app
