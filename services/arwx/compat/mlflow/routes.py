"""HTTP routes of the MLflow adapter: MLflow's paths and wire shapes, thin handlers.

Mounted under ``/api/2.0/mlflow`` (and the UI's mirror ``/ajax-api/2.0/mlflow``),
the artifact proxy under ``/api/2.0/mlflow-artifacts``, and ``/api/3.0/mlflow``.
Every error is ``{"error_code", "message"}`` with a non-200 status; a path this
adapter does not serve is ``ENDPOINT_NOT_FOUND`` (404), never an HTML page.
"""

from __future__ import annotations

import posixpath
from typing import Any

from aiohttp import ClientPayloadError, web

from arwx.appkeys import API_KEY, BLOBS, INGEST, RUNS, STORE
from arwx.backpressure import budgeted
from arwx.compat.mlflow.bodies import args_or_json as _args_or_json
from arwx.compat.mlflow.bodies import json_body as _json
from arwx.compat.mlflow.bodies import query_args as _args
from arwx.compat.mlflow.model_routes import MODELS
from arwx.compat.mlflow.model_routes import ROUTES as MODEL_ROUTES
from arwx.compat.mlflow.models import ModelService
from arwx.compat.mlflow.models_state import ModelState
from arwx.compat.mlflow.service import (
    MlflowService,
    experiment_id_of,
    experiment_json,
    run_info_json,
    run_json,
)
from arwx.compat.mlflow.state import MlflowState
from arwx.control.artifacts import Artifacts
from arwx.control.files import Files
from arwx.errors import ApiError, BadRequest, EndpointNotFound, NotFound
from arwx.gateway.auth import requires
from arwx.gateway.body import body_chunks
from arwx.gateway.errors import set_renderer

SERVICE = web.AppKey("arwx_mlflow", MlflowService)
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")


def _svc(request: web.Request) -> MlflowService:
    return request.config_dict[SERVICE]


def _org(request: web.Request) -> str:
    return request[API_KEY].org


def _ok(body: dict | None = None) -> web.Response:
    return web.json_response(body or {})


def _int_arg(v: Any, what: str, default: int) -> int:
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} {v!r} is not an integer") from None


# -- experiments ---------------------------------------------------------------------------------
async def get_experiment_by_name(request: web.Request) -> web.Response:
    name = _args(request).get("experiment_name")
    if not isinstance(name, str):
        raise BadRequest("experiment_name is missing")
    return _ok({"experiment": experiment_json(await _svc(request).experiment(_org(request), name=name))})


async def create_experiment(request: web.Request) -> web.Response:
    b = await _json(request)
    return _ok({"experiment_id": await _svc(request).create_experiment(_org(request), b.get("name"), b.get("tags") or [])})


async def get_experiment(request: web.Request) -> web.Response:
    e_id = _args(request).get("experiment_id")
    return _ok({"experiment": experiment_json(await _svc(request).experiment(_org(request), e_id))})


@requires("read")  # a POST that only reads
async def search_experiments(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    view = b.get("view_type") or "ACTIVE_ONLY"
    es, nxt = await _svc(request).search_experiments(
        _org(request), view, b.get("filter"), _int_arg(b.get("max_results"), "max_results", 1000), b.get("page_token"))
    out: dict = {"experiments": [experiment_json(e) for e in es]}
    if nxt:
        out["next_page_token"] = nxt
    return _ok(out)


async def _set_experiment_stage(request: web.Request, stage: str) -> web.Response:
    b = await _json(request)
    svc, org = _svc(request), _org(request)
    e = await svc.experiment(org, b.get("experiment_id"))
    await svc.state.update_experiment(org, e.experiment_id, lifecycle_stage=stage)
    return _ok()


async def delete_experiment(request: web.Request) -> web.Response:
    return await _set_experiment_stage(request, "deleted")


async def restore_experiment(request: web.Request) -> web.Response:
    return await _set_experiment_stage(request, "active")


async def update_experiment(request: web.Request) -> web.Response:
    b = await _json(request)
    svc, org = _svc(request), _org(request)
    e = await svc.experiment(org, b.get("experiment_id"))
    name = b.get("new_name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise BadRequest("new_name must be a non-empty string")
    try:
        await svc.state.update_experiment(org, e.experiment_id, name=name)
    except ValueError as err:
        raise BadRequest(str(err)) from None
    return _ok()


async def set_experiment_tag(request: web.Request) -> web.Response:
    b = await _json(request)
    svc, org = _svc(request), _org(request)
    e = await svc.experiment(org, b.get("experiment_id"))
    if not isinstance(b.get("key"), str) or not b["key"]:
        raise BadRequest("key is missing")
    await svc.state.update_experiment(org, e.experiment_id, tags={b["key"]: str(b.get("value", ""))})
    return _ok()


# -- runs ----------------------------------------------------------------------------------------
async def create_run(request: web.Request) -> web.Response:
    return _ok({"run": run_json(await _svc(request).create_run(_org(request), await _json(request)))})


async def get_run(request: web.Request) -> web.Response:
    a = _args(request)
    return _ok({"run": run_json(await _svc(request).run(_org(request), a.get("run_id") or a.get("run_uuid")))})


async def update_run(request: web.Request) -> web.Response:
    return _ok({"run_info": run_info_json(await _svc(request).update_run(_org(request), await _json(request)))})


async def delete_run(request: web.Request) -> web.Response:
    await _svc(request).set_lifecycle(_org(request), (await _json(request)).get("run_id"), "deleted")
    return _ok()


async def restore_run(request: web.Request) -> web.Response:
    await _svc(request).set_lifecycle(_org(request), (await _json(request)).get("run_id"), "active")
    return _ok()


@requires("read")  # a POST that only reads
async def search_runs(request: web.Request) -> web.Response:
    runs, nxt = await _svc(request).search_runs(_org(request), await _json(request))
    out: dict = {"runs": [run_json(r) for r in runs]}
    if nxt:
        out["next_page_token"] = nxt
    return _ok(out)


def _run_id(b: dict) -> Any:
    return b.get("run_id") or b.get("run_uuid")


def _list(b: dict, field: str) -> list:
    v = b.get(field) or []
    if not isinstance(v, list):
        raise BadRequest(f"{field} must be a list")
    return v


@budgeted("body")
async def log_batch(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).log_batch(_org(request), _run_id(b), _list(b, "metrics"), _list(b, "params"),
                                  _list(b, "tags"), request.headers.get("Idempotency-Key"))
    return _ok()


@budgeted("body")
async def log_metric(request: web.Request) -> web.Response:
    b = await _json(request)
    m = {k: b.get(k) for k in ("key", "value", "timestamp", "step")}
    await _svc(request).log_batch(_org(request), _run_id(b), [m], [], [], request.headers.get("Idempotency-Key"))
    return _ok()


async def log_param(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).log_batch(_org(request), _run_id(b), [], [{"key": b.get("key"), "value": b.get("value")}], [])
    return _ok()


async def set_tag(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).log_batch(_org(request), _run_id(b), [], [], [{"key": b.get("key"), "value": b.get("value")}])
    return _ok()


async def delete_tag(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).delete_tag(_org(request), _run_id(b), b.get("key"))
    return _ok()


async def get_history(request: web.Request) -> web.Response:
    a = _args(request)
    points, nxt = await _svc(request).metric_history(
        _org(request), a.get("run_id") or a.get("run_uuid"), a.get("metric_key"),
        _int_arg(a.get("max_results"), "max_results", 25_000), a.get("page_token"))
    out: dict = {"metrics": points}
    if nxt:
        out["next_page_token"] = nxt
    return _ok(out)


async def get_history_bulk_interval(request: web.Request) -> web.Response:
    a = _args(request)
    run_ids = a.get("run_ids") or []
    run_ids = [run_ids] if isinstance(run_ids, str) else run_ids
    start = a.get("start_step")
    end = a.get("end_step")
    metrics = await _svc(request).bulk_interval(
        _org(request), run_ids, a.get("metric_key") or "",
        None if start in (None, "") else _int_arg(start, "start_step", 0),
        None if end in (None, "") else _int_arg(end, "end_step", 0),
        _int_arg(a.get("max_results"), "max_results", 320))
    return _ok({"metrics": metrics})


# -- artifacts (the tracking server's proxy) -----------------------------------------------------
def _artifact_path(raw: str) -> tuple[str, str, str, str]:
    """(experiment id, "runs" or "models", the run's or model's id, path under its artifacts) of
    ``<exp>/<run>/artifacts[/<path>]`` or ``<exp>/models/<model>/artifacts[/<path>]``."""
    norm = posixpath.normpath("/" + raw).lstrip("/")
    if norm != raw.strip("/") or ".." in raw.split("/"):
        raise BadRequest(f"invalid artifact path {raw!r}")
    parts = norm.split("/", 3)
    if len(parts) >= 2 and parts[1] == "models":
        parts = norm.split("/", 4)
        if len(parts) < 4 or parts[3] != "artifacts":
            raise NotFound(f"no artifact root at {raw!r}: expected <experiment>/models/<model>/artifacts[/<path>]")
        return parts[0], "models", parts[2], parts[4] if len(parts) == 5 else ""
    if len(parts) < 3 or parts[2] != "artifacts":
        raise NotFound(f"no artifact root at {raw!r}: expected <experiment>/<run>/artifacts[/<path>]")
    return parts[0], "runs", parts[1], parts[3] if len(parts) == 4 else ""


async def _artifact_owner(request: web.Request, exp: str, kind: str, owner: str) -> str:
    """The run or logged model whose artifacts the path names, checked to belong to ``exp``
    (artifacts are kept per owner id: a run's 32 hex digits, a model's ``m-…``)."""
    if kind == "models":
        m = await request.config_dict[MODELS].logged_model(_org(request), owner)
        if str(m.experiment_id) != str(experiment_id_of(exp)):
            raise NotFound(f"Logged model with ID '{owner}' not found.")
        return m.model_id
    r = await _svc(request).run(_org(request), owner)
    if str(r.experiment_id) != str(experiment_id_of(exp)):
        raise NotFound(f"Run with id={owner} not found")
    return r.run_id


@budgeted("stream")
async def put_artifact(request: web.Request) -> web.Response:
    exp, kind, owner, path = _artifact_path(request.match_info["path"])
    if not path:
        raise BadRequest("an artifact upload needs a file path under artifacts/")
    run_id = await _artifact_owner(request, exp, kind, owner)
    try:
        info = await request.config_dict[BLOBS].put(_org(request), body_chunks(request, whole=False))
    except (ClientPayloadError, ConnectionResetError):
        raise BadRequest("the upload was cut off before its end; nothing was stored") from None
    await _svc(request).state.put_artifact(_org(request), run_id, path, info.sha, info.size)
    return _ok()


async def get_artifact(request: web.Request) -> web.StreamResponse:
    exp, kind, owner, path = _artifact_path(request.match_info["path"])
    run_id = await _artifact_owner(request, exp, kind, owner)
    found = (await _svc(request).state.artifacts(_org(request), run_id)).get(path)
    blob = await request.config_dict[BLOBS].open(_org(request), found[0]) if found else None
    if blob is None:
        raise NotFound(f"no artifact at {request.match_info['path']!r}")
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = blob.size
        await resp.prepare(request)
        async for chunk in blob.chunks():
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await blob.close()


async def list_artifacts(request: web.Request) -> web.Response:
    raw = request.query.get("path", "")
    exp, kind, owner, prefix = _artifact_path(raw)
    run_id = await _artifact_owner(request, exp, kind, owner)
    files: dict[str, dict] = {}
    stem = prefix + "/" if prefix else ""
    for path, (_, size) in (await _svc(request).state.artifacts(_org(request), run_id)).items():
        if path == prefix:  # the path names a file: list it alone (the client expects that)
            files = {posixpath.basename(path): {"path": posixpath.basename(path), "is_dir": False, "file_size": size}}
            break
        if not path.startswith(stem):
            continue
        head, sep, _ = path[len(stem):].partition("/")
        files[head] = {"path": head, "is_dir": True} if sep else {"path": head, "is_dir": False, "file_size": size}
    return _ok({"files": [files[k] for k in sorted(files)]})


# -- the rest ------------------------------------------------------------------------------------
def _render(e: ApiError) -> dict:
    if isinstance(e, EndpointNotFound):  # no route: aiohttp's own 404 under an MLflow prefix
        return {"error_code": e.code, "message": "this endpoint is not supported by arwx's MLflow API (docs/mlflow.md)"}
    return {"error_code": e.code, "message": e.message}


_TRACKING = [
    ("GET", "/experiments/get-by-name", get_experiment_by_name),
    ("POST", "/experiments/create", create_experiment),
    ("GET", "/experiments/get", get_experiment),
    ("GET", "/experiments/search", search_experiments),
    ("POST", "/experiments/search", search_experiments),
    ("POST", "/experiments/delete", delete_experiment),
    ("POST", "/experiments/restore", restore_experiment),
    ("POST", "/experiments/update", update_experiment),
    ("POST", "/experiments/set-experiment-tag", set_experiment_tag),
    ("POST", "/runs/create", create_run),
    ("GET", "/runs/get", get_run),
    ("POST", "/runs/update", update_run),
    ("POST", "/runs/delete", delete_run),
    ("POST", "/runs/restore", restore_run),
    ("POST", "/runs/search", search_runs),
    ("POST", "/runs/log-batch", log_batch),
    ("POST", "/runs/log-metric", log_metric),
    ("POST", "/runs/log-parameter", log_param),
    ("POST", "/runs/set-tag", set_tag),
    ("POST", "/runs/delete-tag", delete_tag),
    ("GET", "/metrics/get-history", get_history),
    ("GET", "/metrics/get-history-bulk-interval", get_history_bulk_interval),
    *MODEL_ROUTES,
]


_ARTIFACTS = [
    ("PUT", "/artifacts/{path}", put_artifact),
    ("GET", "/artifacts/{path}", get_artifact),
    ("GET", "/artifacts", list_artifacts),
]


async def server_info(request: web.Request) -> web.Response:
    """What the client asks before multipart uploads: none here (uploads stream through the proxy)."""
    return _ok({"store_type": None, "workspaces_enabled": False, "trace_archival_enabled": False,
                "multipart_uploads_enabled": False, "multipart_downloads_enabled": False,
                "presigned_upload_run_id_supported": False, "presigned_upload_model_id_supported": False,
                "features_enabled": {"gateway": False}})


# Mount point -> its routes. The rest of /api/3.0/mlflow answers ENDPOINT_NOT_FOUND.
MOUNTS: dict[str, list[tuple[str, str, Any]]] = {
    **{prefix: _TRACKING for prefix in PREFIXES},
    "/api/2.0/mlflow-artifacts": _ARTIFACTS,
    "/api/3.0/mlflow": [("GET", "/server-info", server_info)],
    "/ajax-api/3.0/mlflow": [("GET", "/server-info", server_info)],
}


def endpoints() -> list[tuple[str, str]]:
    """(method, full path) of every MLflow route, as ``schemas/openapi.json`` lists them."""
    return [(m, prefix + p) for prefix, routes in MOUNTS.items() for m, p, _ in routes]


def _sub(routes: list[tuple[str, str, Any]]) -> web.Application:
    sub = web.Application()
    for method, path, handler in routes:
        # An artifact path spans segments: {path:.+} (the canonical path stays {path}).
        sub.router.add_route(method, path.replace("{path}", "{path:.+}"), handler)
    set_renderer(sub, _render)
    return sub


async def _start(app: web.Application) -> None:
    catalog = app[RUNS].catalog
    tracking = MlflowState(catalog)
    app[SERVICE] = MlflowService(tracking, app[RUNS], app[INGEST], app[STORE])
    blobs = app[BLOBS]
    app[MODELS] = ModelService(ModelState(catalog), tracking, Artifacts(catalog, blobs, Files(catalog, blobs)))


def add_routes(app: web.Application) -> None:
    """MLflow's tracking API, the UI's mirror of it, the artifact proxy and ``/api/3.0``."""
    for prefix, routes in MOUNTS.items():
        app.add_subapp(prefix, _sub(routes))
    app.on_startup.append(_start)
