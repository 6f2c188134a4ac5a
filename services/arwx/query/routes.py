"""Read-side routes: one run, its history, its integrity receipt."""

from __future__ import annotations

from aiohttp import web

from arwx.appkeys import API_KEY, LOG, RUNS, STORE
from arwx.gateway.errors import json_error
from arwx.query.history import MAX_LIMIT, history, parse_cursor
from arwx.query.integrity import receipt
from arwx.runs import Run
from arwx.wire import MAX_SEQ


async def _run(request: web.Request) -> Run | None:
    # 404 for a run of another org too: existence must not leak.
    return await request.app[RUNS].get(request[API_KEY].org, request.match_info["run_id"])


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be an integer"}}', content_type="application/json") from None
    if not lo <= v <= hi:
        raise web.HTTPBadRequest(text=f'{{"error": "{name} must be in {lo}..{hi}"}}', content_type="application/json")
    return v


async def get_run(request: web.Request) -> web.Response:
    run = await _run(request)
    if run is None:
        return json_error(404, f"unknown run {request.match_info['run_id']!r}")
    return web.json_response(run.public())


async def get_metrics(request: web.Request) -> web.Response:
    run = await _run(request)
    if run is None:
        return json_error(404, f"unknown run {request.match_info['run_id']!r}")
    keys = [k for k in request.query.get("keys", "").split(",") if k]
    min_step = _int(request, "min_step", 0, 0, MAX_SEQ)
    max_step = _int(request, "max_step", MAX_SEQ, 0, MAX_SEQ)
    limit = _int(request, "limit", 10_000, 1, MAX_LIMIT)
    after = None
    if request.query.get("cursor"):
        try:
            after = parse_cursor(request.query["cursor"])
        except ValueError:
            return json_error(400, "cursor is not one this service gave out")
    page = await history(request.app[STORE], run.org, run.run_id, keys, min_step, max_step, limit, after)
    return web.json_response(page)


async def get_integrity(request: web.Request) -> web.Response:
    run = await _run(request)
    if run is None:
        return json_error(404, f"unknown run {request.match_info['run_id']!r}")
    return web.json_response(await receipt(request.app[STORE], request.app[LOG], run))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_get("/v1/runs/{run_id}/metrics", get_metrics)
    app.router.add_get("/v1/runs/{run_id}/integrity", get_integrity)
