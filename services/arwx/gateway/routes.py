"""Write-side routes: runs (create, finish), ingest, API keys.

Handlers decode, call a service and answer; every refusal is an
``arwx.errors`` exception rendered by the app's middleware.
"""

from __future__ import annotations

from aiohttp import web

from arwx.appkeys import API_KEY, RUNS, TENANCY
from arwx.errors import NotFound
from arwx.gateway.body import read_body
from arwx.gateway.ingest import ingest_batch, ingest_stream
from arwx.wire import MAX_ID_LEN, KeyCreate, RunCreate, RunFinish, decode_body

MAX_SMALL_BODY = 1 << 20


async def create_run(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunCreate)
    fingerprint = {k: v for k, v in (("commit", req.commit), ("diff_sha", req.diff_sha)) if v}
    run, created = await request.app[RUNS].create(
        request[API_KEY].org, req.id, req.project, req.name, req.config, req.writer_ids, fingerprint, req.resume
    )
    return web.json_response(run.public(), status=201 if created else 200)


async def finish_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunFinish)
    run = await request.app[RUNS].finish(request[API_KEY].org, run_id, req.status, dict(req.writer_totals))
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response(run.public())


async def create_key(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), KeyCreate)
    key, secret = await request.app[TENANCY].create_key(request[API_KEY].org, req.name)
    return web.json_response({**key.public(), "key": secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[TENANCY].list_keys(request[API_KEY].org)
    return web.json_response({"keys": [k.public() for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"][:MAX_ID_LEN]
    key = await request.app[TENANCY].revoke_key(request[API_KEY].org, key_id)
    if key is None:
        raise NotFound(f"unknown key {key_id!r}")
    return web.json_response(key.public())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/runs", create_run)
    app.router.add_post("/v1/runs/{run_id}/finish", finish_run)
    app.router.add_post("/v1/ingest", ingest_batch)
    app.router.add_post("/v1/ingest/stream", ingest_stream)
    app.router.add_post("/v1/keys", create_key)
    app.router.add_get("/v1/keys", list_keys)
    app.router.add_delete("/v1/keys/{key_id}", revoke_key)
