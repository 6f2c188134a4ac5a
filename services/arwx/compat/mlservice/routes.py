"""HTTP routes of the ml-service adapter: its run paths and wire shapes, thin handlers (docs/compat.md).

The experiment paths (``/api/v1/experiments``, ``/:id``, restore) are served
for both documents by the ml-workbench adapter (``compat/workbench``); this
module adds ml-service's own: ``PATCH /:id`` (the same update as ml-workbench's
``PUT``) and the runs under ``/api/v1/experiments/runs``. Plain routes of the
gateway role, like ml-workbench's on the same prefix (static paths are routed
before ``/:id``, so ``runs`` is never an experiment id). The document names
status codes but no error body; the paths it shares with ml-workbench answer
``{"error": "..."}``, and so do these: one shape under one prefix.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, ClientPayloadError, web

from arwx.appkeys import CONFIG, RUNS
from arwx.backpressure import budgeted
from arwx.compat.common import add_adapter_routes, json_object, org_of
from arwx.compat.mlservice.service import (
    END_STATUSES,
    MlServiceRuns,
    check_params,
    key_values,
    metrics_of_list,
    metrics_of_map,
)
from arwx.compat.workbench import wire as workbench_wire
from arwx.compat.workbench.routes import SERVICE as WORKBENCH
from arwx.compat.workbench.state import WorkbenchState
from arwx.control.http import idempotent
from arwx.errors import BadRequest, NotFound, RequestTimeout
from arwx.gateway.auth import requires
from arwx.gateway.body import read_body
from arwx.params import query_int
from arwx.wire import decode_body

BASE = "/api/v1/experiments"
PREFIX = BASE + "/runs"
SERVICE = web.AppKey("arwx_mlservice", MlServiceRuns)
EXPERIMENTS = web.AppKey("arwx_mlservice_experiments", WorkbenchState)
MAX_JSON = 16 << 20
MAX_LIST = 1000


def _svc(request: web.Request) -> MlServiceRuns:
    return request.config_dict[SERVICE]


def _run_id(request: web.Request) -> str:
    return request.match_info["run_id"]


async def _json(request: web.Request) -> dict:
    return await json_object(request, MAX_JSON)


def _text(b: dict, field: str, limit: int, required: bool = False) -> str | None:
    v = b.get(field)
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v) or len(v) > limit:
        raise BadRequest(f"{field} must be a string of {'1' if required else '0'} to {limit} characters")
    return v


def _tags(v: Any) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict) or len(v) > 1000 or not all(isinstance(x, str) for x in v.values()):
        raise BadRequest("tags must be an object of string values (at most 1000)")
    return v


async def _json_answer(request: web.Request, run_id: str, status: int = 200) -> web.Response:
    svc, org = _svc(request), org_of(request)
    return web.json_response(await svc.run_json(org, await svc.run(org, run_id)), status=status)


# -- runs --------------------------------------------------------------------------------------
@idempotent(MAX_JSON)
async def create_run(request: web.Request) -> web.Response:
    b = await _json(request)
    exp_id = _text(b, "experiment_id", 64, required=True)
    e = await request.config_dict[EXPERIMENTS].get(org_of(request), exp_id)
    if e is None:
        raise NotFound(f"Experiment {exp_id} not found")
    run = await _svc(request).create(org_of(request), e.id, e.project, _text(b, "name", 256), _text(b, "description", 1000),
                                     _tags(b.get("tags")))
    return await _json_answer(request, run.run_id, 201)


async def list_runs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, MAX_LIST)
    offset = query_int(request, "offset", 0, 0, 100_000)
    exp_id = request.query.get("experiment_id")
    project = None
    if exp_id:
        e = await request.config_dict[EXPERIMENTS].get(org_of(request), exp_id[:64], deleted=True)
        if e is None:
            raise NotFound(f"Experiment {exp_id[:64]} not found")
        project = e.project
    svc, org = _svc(request), org_of(request)
    runs = await svc.list(org, project, request.query.get("status"), limit, offset)
    return web.json_response({"runs": [await svc.run_json(org, r) for r in runs], "count": len(runs),
                              "limit": limit, "offset": offset})


async def get_run(request: web.Request) -> web.Response:
    return await _json_answer(request, _run_id(request))


@idempotent(MAX_JSON)
@budgeted("body")
async def log_metrics(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), _run_id(request))  # another org's run is 404 whatever the body
    metrics = metrics_of_map(await _json(request))
    await _svc(request).log(org_of(request), _run_id(request), metrics, {}, {}, request.headers.get("Idempotency-Key"))
    return web.json_response({"run_id": _run_id(request), "logged": len(metrics)})


@idempotent(MAX_JSON)
async def log_params(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), _run_id(request))
    b = await _json(request)
    params = check_params(b["params"] if isinstance(b.get("params"), dict) and len(b) == 1 else b)
    await _svc(request).log(org_of(request), _run_id(request), [], params, {}, None)
    return web.json_response({"run_id": _run_id(request), "logged": len(params)})


@idempotent(MAX_JSON)
@budgeted("body")
async def log_batch(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), _run_id(request))
    b = await _json(request)
    # Everything is checked before anything is written: a refused batch writes nothing.
    metrics = metrics_of_list(b.get("metrics") or [])
    params = key_values(b.get("params") or [], "params")
    tags = key_values(b.get("tags") or [], "tags")
    await _svc(request).log(org_of(request), _run_id(request), metrics, params, tags,
                            request.headers.get("Idempotency-Key"))
    return web.json_response({"run_id": _run_id(request), "metrics": len(metrics), "params": len(params),
                              "tags": len(tags)})


async def _part_chunks(request: web.Request, part: BodyPartReader) -> AsyncIterator[bytes]:
    idle = request.config_dict[CONFIG].body_idle_s
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await part.read_chunk(1 << 16)
        except TimeoutError:
            raise RequestTimeout(f"no body bytes received for {idle:g}s") from None
        if not chunk:
            return
        yield chunk


@budgeted("stream")
async def log_artifact(request: web.Request) -> web.Response:
    sub = request.query.get("artifact_path", "").strip("/")
    if len(sub) > 512 or any(ord(c) < 0x20 for c in sub) or ".." in sub.split("/"):
        raise BadRequest("artifact_path must be a relative path without '..' (at most 512 characters)")
    await _svc(request).run(org_of(request), _run_id(request))
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise BadRequest("log-artifact takes a multipart form (multipart/form-data) with a 'file' field") from None
    try:
        while True:
            part = await reader.next()
            if part is None:
                raise BadRequest("the multipart form has no 'file' field")
            if isinstance(part, BodyPartReader) and part.name == "file":
                break
        filename = posixpath.basename((part.filename or "file").replace("\\", "/")) or "file"
        if len(filename) > 255 or any(ord(c) < 0x20 for c in filename):
            raise BadRequest("the file's name must be at most 255 characters, without control characters")
        path = f"{sub}/{filename}" if sub else filename
        content_type = (part.headers.get("Content-Type") or "application/octet-stream")[:256]
        f = await _svc(request).log_artifact(org_of(request), _run_id(request), path, _part_chunks(request, part),
                                             content_type)
    except (ClientPayloadError, ConnectionResetError, ValueError):
        raise BadRequest("the upload was cut off or malformed; nothing was stored") from None
    return web.json_response({"run_id": _run_id(request), "path": f.name, "size": f.size, "sha256": f.sha256,
                              "content_type": f.content_type})


@idempotent(MAX_JSON)
async def end_run(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), _run_id(request))
    b = await _json(request)
    status = b.get("status") or "completed"
    if not isinstance(status, str) or status not in END_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(END_STATUSES)}, not {str(status)[:40]!r}")
    await _svc(request).end(org_of(request), _run_id(request), status)
    return await _json_answer(request, _run_id(request))


@requires("read")  # a POST that only reads: a write-only key cannot read through it
async def compare_runs(request: web.Request) -> web.Response:
    b = await _json(request)
    return web.json_response(await _svc(request).compare(org_of(request), b.get("run_ids"), b.get("metrics")))


async def patch_experiment(request: web.Request) -> web.Response:
    """ml-service's ``PATCH /:id``: ml-workbench's update (the same experiment, the same fields)."""
    req = decode_body(await read_body(request, MAX_JSON), workbench_wire.WorkbenchExperimentUpdate)
    wb = request.config_dict[WORKBENCH]
    return web.json_response(await wb.update(org_of(request), request.match_info["id"][:256], req))


#: (method, path, handler), static paths first.
ROUTES = [
    ("PATCH", BASE + "/{id}", patch_experiment),
    ("POST", PREFIX, create_run),
    ("GET", PREFIX, list_runs),
    ("POST", PREFIX + "/compare", compare_runs),
    ("GET", PREFIX + "/{run_id}", get_run),
    ("POST", PREFIX + "/{run_id}/log-metrics", log_metrics),
    ("POST", PREFIX + "/{run_id}/log-params", log_params),
    ("POST", PREFIX + "/{run_id}/log-batch", log_batch),
    ("POST", PREFIX + "/{run_id}/log-artifact", log_artifact),
    ("POST", PREFIX + "/{run_id}/end", end_run),
]


def add_routes(app: web.Application) -> None:
    """ml-service's own paths under ``/api/v1/experiments`` (the gateway's part, like ml-workbench's)."""
    add_adapter_routes(app, ROUTES, {SERVICE: MlServiceRuns.from_app,
                                     EXPERIMENTS: lambda app: WorkbenchState(app[RUNS].catalog)})
