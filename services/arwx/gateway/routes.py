"""Write-side routes: runs (create, finish, edit, delete, restore, purge, heartbeat), ingest, API keys.

Handlers decode, call a service and answer; every refusal is an
``arwx.errors`` exception rendered by the app's middleware.
"""

from __future__ import annotations

from aiohttp import web

from arwx.appkeys import API_KEY, CATALOG, LOG, RUNS, STORE, TENANCY
from arwx.errors import BadRequest, Forbidden, NotFound
from arwx.gateway.auth import requires, run_bound
from arwx.gateway.body import read_body
from arwx.gateway.ingest import attempt_of, ingest_batch, ingest_stream
from arwx.purge import purge_run
from arwx.tenancy import DEFAULT_SCOPES, SCOPES, BadScopes, parse_scopes
from arwx.wire import MAX_ID_LEN, KeyCreate, RunCreate, RunFinish, RunFork, RunRewind, RunUpdate, decode_body

MAX_SMALL_BODY = 1 << 20


@run_bound
async def create_run(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunCreate)
    bound = request[API_KEY].run_id
    if bound is not None and req.id != bound:
        raise Forbidden(f"this API key may only write run {bound!r}")
    fingerprint = {k: v for k, v in (("commit", req.commit), ("diff_sha", req.diff_sha)) if v}
    run, created = await request.app[RUNS].create(
        request[API_KEY].org, req.id, req.project, req.name, req.config, req.writer_ids, fingerprint, req.resume
    )
    if bound is not None and not created and req.config:
        # The run was made for the command before it started (a Wild run): the config its
        # ``arwandb.init(config=...)`` sends is still the run's config, merged by top-level key.
        run = await request.app[RUNS].merge_config(request[API_KEY].org, bound, req.config) or run
    return web.json_response(run.public(), status=201 if created else 200)


@run_bound
async def finish_run(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunFinish)
    run = await request.app[RUNS].finish(
        request[API_KEY].org, run_id, req.status, dict(req.writer_totals), attempt=attempt_of(request)
    )
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response(run.public())


@run_bound
async def rewind_run(request: web.Request) -> web.Response:
    """``POST /v1/runs/:id/rewind``: a new attempt from ``step`` (201 when opened now, 200 when
    this rank joined the attempt another rank of the same restart opened)."""
    run_id = request.match_info["run_id"]
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunRewind)
    run, opened = await request.app[RUNS].rewind(request[API_KEY].org, run_id, req.step, req.writer_ids)
    return web.json_response(run.public(), status=201 if opened else 200)


async def fork_run(request: web.Request) -> web.Response:
    """``POST /v1/runs/:id/fork``: a new run sharing the parent's history below ``step``."""
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunFork)
    run, created = await request.app[RUNS].fork(
        request[API_KEY].org, request.match_info["run_id"], req.step, req.id, req.project, req.name, req.config,
        req.writer_ids,
    )
    return web.json_response(run.public(), status=201 if created else 200)


async def update_run(request: web.Request) -> web.Response:
    """``PATCH /v1/runs/:id``: name, tags, notes; config merged key by key."""
    run_id = request.match_info["run_id"]
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RunUpdate)
    run = await request.app[RUNS].update(
        request[API_KEY].org, run_id, name=req.name, tags=req.tags, notes=req.notes, config=req.config
    )
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response(run.public())


async def delete_run(request: web.Request) -> web.Response:
    """``DELETE /v1/runs/:id``: soft delete (hidden, points kept, no new points; restorable)."""
    run_id = request.match_info["run_id"]
    run = await request.app[RUNS].set_deleted(request[API_KEY].org, run_id, True)
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response(run.public())


@requires("admin")
async def purge_run_route(request: web.Request) -> web.Response:
    """``POST /v1/runs/:id/purge?confirm=<run id>`` (admin): every row of the run removed from
    ClickHouse and the catalog, for good (``arwx.purge``)."""
    run_id, org = request.match_info["run_id"], request[API_KEY].org
    run = await request.app[RUNS].get(org, run_id, fresh=True)
    if run is None:
        raise NotFound(f"unknown run {run_id!r} (a purged run is unknown: nothing of it is left)")
    confirm = request.query.get("confirm")
    if confirm is None:
        raise BadRequest(
            f"purging deletes every point, file and record of run {run_id!r} for good: "
            f"repeat its id to confirm (confirm={run_id})"
        )
    if confirm != run_id:
        raise BadRequest(f"confirm={confirm[:MAX_ID_LEN]!r} is not this run's id: to purge it, confirm={run_id}")
    app = request.app
    out = await purge_run(app[STORE], app[LOG], app[RUNS], app[CATALOG], run)
    return web.json_response({"id": run_id, "purged": True, **out})


async def restore_run(request: web.Request) -> web.Response:
    """``POST /v1/runs/:id/restore``: undo a soft delete."""
    run_id = request.match_info["run_id"]
    run = await request.app[RUNS].set_deleted(request[API_KEY].org, run_id, False)
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response(run.public())


async def heartbeat(request: web.Request) -> web.Response:
    """``POST /v1/runs/:id/heartbeat``: a writer is alive (no body needed)."""
    run_id = request.match_info["run_id"]
    run = await request.app[RUNS].heartbeat(request[API_KEY].org, run_id)
    if run is None:
        raise NotFound(f"unknown run {run_id!r}")
    return web.json_response({"id": run.run_id, "status": run.status})


@requires("admin")
async def create_key(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), KeyCreate)
    caller = request[API_KEY]
    try:
        scopes = DEFAULT_SCOPES if req.scopes is None else parse_scopes(req.scopes)
    except BadScopes as e:
        raise BadRequest(f"scopes: {e}") from None
    if not scopes <= caller.scopes:
        # A key never mints a stronger one; the operator's CLI grants anything.
        extra = ", ".join(s for s in SCOPES if s in scopes - caller.scopes)
        raise Forbidden(f"scopes: this API key cannot grant scope(s) it does not hold: {extra}")
    key, secret = await request.app[TENANCY].create_key(caller.org, req.name, scopes)
    return web.json_response({**key.public(), "key": secret}, status=201)


@requires("admin")
async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[TENANCY].list_keys(request[API_KEY].org)
    return web.json_response({"keys": [k.public() for k in keys]})


@requires("admin")
async def revoke_key(request: web.Request) -> web.Response:
    key_id = request.match_info["key_id"][:MAX_ID_LEN]
    key = await request.app[TENANCY].revoke_key(request[API_KEY].org, key_id)
    if key is None:
        raise NotFound(f"unknown key {key_id!r}")
    return web.json_response(key.public())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/runs", create_run)
    app.router.add_post("/v1/runs/{run_id}/finish", finish_run)
    app.router.add_patch("/v1/runs/{run_id}", update_run)
    app.router.add_delete("/v1/runs/{run_id}", delete_run)
    app.router.add_post("/v1/runs/{run_id}/restore", restore_run)
    app.router.add_post("/v1/runs/{run_id}/purge", purge_run_route)
    app.router.add_post("/v1/runs/{run_id}/heartbeat", heartbeat)
    app.router.add_post("/v1/runs/{run_id}/rewind", rewind_run)
    app.router.add_post("/v1/runs/{run_id}/fork", fork_run)
    app.router.add_post("/v1/ingest", ingest_batch)
    app.router.add_post("/v1/ingest/stream", ingest_stream)
    app.router.add_post("/v1/keys", create_key)
    app.router.add_get("/v1/keys", list_keys)
    app.router.add_delete("/v1/keys/{key_id}", revoke_key)
