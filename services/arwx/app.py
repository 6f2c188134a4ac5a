"""The aiohttp application: fail-closed auth, error shape, request metrics, access log.

Middlewares, outermost first: ``observe`` (request id, metrics, access log,
every ``arwx.errors.ApiError`` rendered), ``authenticate`` (401 without a
valid key, ``gateway/auth.py``), and ``limit_inflight`` (429 past the
gateway's in-flight byte budget).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web

from arwx import metrics
from arwx.accounts import routes as accounts_routes
from arwx.appkeys import ACCOUNTS, API_KEY, BLOBS, CATALOG, CONFIG, INGEST, LOG, RUNS, STORE, TENANCY
from arwx.backpressure import INFLIGHT, InflightBytes, limit_inflight
from arwx.components import Components
from arwx.control.http import CONTROL
from arwx.errors import ApiError, from_status
from arwx.gateway.auth import authenticate, public
from arwx.gateway.errors import render
from arwx.roles import add_routes
from arwx.sdkdist import routes as sdkdist_routes

log = logging.getLogger("arwx.http")
access_log = logging.getLogger("arwx.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
    """Request id, latency and status metrics, one access log line; errors rendered, unexpected ones a 500."""
    # A client's id is kept only if it looks like one: it is logged.
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    t0 = time.perf_counter()
    metrics.HTTP_IN_FLIGHT.inc()
    try:
        resp = await handler(request)
    except ApiError as e:
        if e.status >= 500:
            # An outage, not a bug: the client retries later.
            log.warning("%s during %s %s (request id %s): %s", type(e).__name__, request.method, route, request_id, e)
        resp = render(request, e)
    except web.HTTPException as e:
        resp = e
        if e.status >= 400 and e.content_type != "application/json":
            # aiohttp's own answers (unknown path, wrong method) in the error shape of the app.
            allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
            resp = render(request, from_status(e.status, e.reason, allow))
    except Exception:
        log.exception("request %s %s failed (request id %s)", request.method, route, request_id)
        resp = render(request, ApiError(f"internal error (request id {request_id})"))
    finally:
        metrics.HTTP_IN_FLIGHT.dec()
    if request.body_exists and not request.content.is_eof():
        # Answered before its body was read (408, 413, 429...): close rather
        # than drain what a slow or hostile client may never finish sending.
        resp.force_close()
    elapsed = time.perf_counter() - t0
    metrics.REQUESTS.labels(route=route, method=request.method, status=str(resp.status)).inc()
    metrics.REQUEST_SECONDS.labels(route=route).observe(elapsed)
    resp.headers["X-Request-Id"] = request_id
    key = request.get(API_KEY)
    # Route template, not the path: ids in paths stay out of logs and labels alike.
    access_log.info(
        "%s %s %d %.1fms",
        request.method,
        route,
        resp.status,
        elapsed * 1000,
        extra={
            "request_id": request_id,
            "method": request.method,
            "route": route,
            "status": resp.status,
            "duration_ms": round(elapsed * 1000, 3),
            "org": key.org if key is not None else None,
            "remote": request.remote,
        },
    )
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


@public
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(components: Components, roles: frozenset[str]) -> web.Application:
    """An app serving the HTTP routes of ``roles`` (see ``arwx.roles``) on ``components``."""
    cfg = components.settings
    # The HTTP roles need the catalog (``arwx.roles``): the process opened it with them.
    assert components.tenancy is not None and components.runs is not None and components.ingest is not None
    app = web.Application(
        middlewares=[observe, authenticate, limit_inflight], client_max_size=cfg.max_body_bytes
    )
    app[CONFIG] = cfg
    app[INFLIGHT] = InflightBytes(cfg.max_inflight_bytes, cfg.max_inflight_org_bytes)
    app[STORE] = components.store
    app[LOG] = components.log
    app[RUNS] = components.runs
    app[TENANCY] = components.tenancy
    if components.blobs is not None:  # opened where a role of the process needs it
        app[BLOBS] = components.blobs
    if components.catalog is not None:
        app[CATALOG] = components.catalog
    app[INGEST] = components.ingest
    if components.control is not None:  # with the catalog and the blob store
        app[CONTROL] = components.control
    app.router.add_get("/health", health)
    sdkdist_routes.add_routes(app)  # every API process serves the SDK, whatever its roles
    if components.accounts is not None:  # with the catalog: every API process signs people in
        app[ACCOUNTS] = components.accounts
        accounts_routes.add_routes(app)
    add_routes(app, roles)
    return app
