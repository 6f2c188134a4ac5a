"""HTTP routes of the ml-workbench adapter: ``/api/v1/experiments``, thin handlers.

Routed on the main app (not a sub-app): ml-service's adapter serves other
paths under the same prefix (docs/compat.md lists who serves what). Errors
are arwx's ``{"error": "..."}``. Scopes: the document's ``ml-workbench:read``
is arwx's ``read`` (the GETs), ``ml-workbench:write`` is ``write`` (every
other method), by the rule of ``gateway/auth.py``.
"""

from __future__ import annotations

from aiohttp import web

from arwx.appkeys import API_KEY, CONFIG
from arwx.backpressure import budgeted
from arwx.compat.common import add_adapter_routes, org_of
from arwx.compat.workbench import wire
from arwx.compat.workbench.service import WorkbenchService
from arwx.errors import BadRequest
from arwx.gateway.body import read_body
from arwx.params import query_int
from arwx.wire import decode_body

SERVICE = web.AppKey("arwx_workbench", WorkbenchService)
BASE = "/api/v1/experiments"
MAX_SMALL_BODY = 1 << 20
MAX_LIST = 1000


def _svc(request: web.Request) -> WorkbenchService:
    return request.config_dict[SERVICE]


def _id(request: web.Request) -> str:
    return request.match_info["id"][:256]


async def _body(request: web.Request, type_: type, limit: int = MAX_SMALL_BODY):  # noqa: ANN202
    return decode_body(await read_body(request, limit), type_)


def _bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return raw.lower() == "true"


async def list_experiments(request: web.Request) -> web.Response:
    q = request.query
    lifecycle = q.get("lifecycle_stage", "active")  # ml-service's filter on the same path
    if lifecycle not in ("active", "deleted"):
        raise BadRequest("lifecycle_stage must be active or deleted")
    out = await _svc(request).list(
        org_of(request), search=q.get("search") or None, status=q.get("status") or None, tag=q.get("tag") or None,
        pinned=_bool(request, "pinned"), limit=query_int(request, "limit", 20, 1, MAX_LIST),
        offset=query_int(request, "offset", 0, 0, 1 << 31), sort=q.get("sort") or None,
        deleted=lifecycle == "deleted",
    )
    return web.json_response(out)


async def create_experiment(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchExperimentCreate)
    out = await _svc(request).create(org_of(request), request[API_KEY].key_id, req)
    return web.json_response(out, status=201)


async def get_experiment(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).get(org_of(request), _id(request)))


async def update_experiment(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchExperimentUpdate)
    return web.json_response(await _svc(request).update(org_of(request), _id(request), req))


async def delete_experiment(request: web.Request) -> web.Response:
    await _svc(request).delete(org_of(request), _id(request))
    return web.Response(status=204)


async def restore_experiment(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).restore(org_of(request), _id(request)))


async def pin(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).pin(org_of(request), _id(request)))


async def replace_tags(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchTagsReplace)
    return web.json_response(await _svc(request).replace_tags(org_of(request), _id(request), req.tags))


async def compare(request: web.Request) -> web.Response:
    ids = [i.strip() for i in request.query.get("ids", "").split(",") if i.strip()]
    return web.json_response(await _svc(request).compare(org_of(request), ids))


async def stats(request: web.Request) -> web.Response:
    return web.json_response(await _svc(request).stats(org_of(request)))


async def register(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchRegister)
    out, created = await _svc(request).register(org_of(request), request[API_KEY].key_id, req)
    return web.json_response(out, status=201 if created else 200)


@budgeted("body")
async def log_metrics(request: web.Request) -> web.Response:
    raw = await read_body(request, request.config_dict[CONFIG].max_body_bytes)
    out = await _svc(request).log_metrics(org_of(request), _id(request), raw, request.headers.get("Idempotency-Key"))
    return web.json_response(out)


async def log_params(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchParams)
    return web.json_response(await _svc(request).log_params(org_of(request), _id(request), req.params))


@budgeted("body")
async def log_artifact(request: web.Request) -> web.Response:
    req = await _body(request, wire.WorkbenchArtifact, request.config_dict[CONFIG].max_body_bytes)
    return web.json_response(await _svc(request).log_artifact(org_of(request), _id(request), req))


#: (method, path, handler): the static paths before ``{id}`` so ``stats`` is never an id.
ROUTES = [
    ("GET", BASE, list_experiments),
    ("POST", BASE, create_experiment),
    ("GET", f"{BASE}/compare", compare),
    ("GET", f"{BASE}/stats", stats),
    ("POST", f"{BASE}/register", register),
    ("GET", BASE + "/{id}", get_experiment),
    ("PUT", BASE + "/{id}", update_experiment),
    ("DELETE", BASE + "/{id}", delete_experiment),
    ("POST", BASE + "/{id}/restore", restore_experiment),
    ("POST", BASE + "/{id}/pin", pin),
    ("PUT", BASE + "/{id}/tags", replace_tags),
    ("POST", BASE + "/{id}/metrics", log_metrics),
    ("POST", BASE + "/{id}/params", log_params),
    ("POST", BASE + "/{id}/artifacts", log_artifact),
]


def add_routes(app: web.Application) -> None:
    """ml-workbench's experiments API (docs/compat.md)."""
    add_adapter_routes(app, ROUTES, {SERVICE: WorkbenchService.from_app})
