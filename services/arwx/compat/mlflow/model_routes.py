"""HTTP routes of MLflow's logged models and model registry: MLflow's paths and shapes, thin handlers.

Mounted with the tracking routes (``routes.py``) under ``/api/2.0/mlflow`` and
``/ajax-api/2.0/mlflow``; the operations are ``models.ModelService``'s.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from arwx.appkeys import API_KEY
from arwx.compat.mlflow.bodies import args_or_json as _args_or_json
from arwx.compat.mlflow.bodies import json_body as _json
from arwx.compat.mlflow.models import (
    ModelService,
    logged_model_json,
    model_version_json,
    registered_model_json,
)
from arwx.compat.mlflow.search import matches, parse_filter
from arwx.compat.mlflow.service import kv_list, page_of
from arwx.errors import BadRequest
from arwx.gateway.auth import requires

MODELS = web.AppKey("arwx_mlflow_models", ModelService)


def _svc(request: web.Request) -> ModelService:
    return request.config_dict[MODELS]


def _org(request: web.Request) -> str:
    return request[API_KEY].org


def _key_id(request: web.Request) -> str:
    return request[API_KEY].key_id


def _list(b: dict, field: str) -> list:
    v = b.get(field) or []
    if not isinstance(v, list):
        raise BadRequest(f"{field} must be a list")
    return v


def _max_results(v: Any, default: int, cap: int) -> int:
    if v in (None, ""):
        return default
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise BadRequest(f"max_results {v!r} is not an integer") from None
    if not 1 <= n <= cap:
        raise BadRequest(f"max_results must be between 1 and {cap}")
    return n


def _paged(items: list, key: str, b: dict, default: int, cap: int) -> web.Response:
    page, nxt = page_of(items, _max_results(b.get("max_results"), default, cap), b.get("page_token"), cap)
    out: dict = {key: page}
    if nxt:
        out["next_page_token"] = nxt
    return web.json_response(out)


# -- logged models -------------------------------------------------------------------------------
async def create_logged_model(request: web.Request) -> web.Response:
    b = await _json(request)
    m = await _svc(request).create_logged_model(_org(request), b, kv_list(_list(b, "params"), "params"),
                                               kv_list(_list(b, "tags"), "tags"))
    return web.json_response({"model": logged_model_json(m)})


async def get_logged_model(request: web.Request) -> web.Response:
    m = await _svc(request).logged_model(_org(request), request.match_info["model_id"])
    return web.json_response({"model": logged_model_json(m)})


async def finalize_logged_model(request: web.Request) -> web.Response:
    b = await _json(request)
    status = b.get("status")
    if not isinstance(status, str):
        raise BadRequest("status is missing")
    m = await _svc(request).update_logged_model(_org(request), request.match_info["model_id"], status=status)
    return web.json_response({"model": logged_model_json(m)})


async def delete_logged_model(request: web.Request) -> web.Response:
    await _svc(request).update_logged_model(_org(request), request.match_info["model_id"], lifecycle_stage="deleted")
    return web.json_response({})


async def set_logged_model_tags(request: web.Request) -> web.Response:
    b = await _json(request)
    m = await _svc(request).update_logged_model(_org(request), request.match_info["model_id"],
                                                tags=kv_list(_list(b, "tags"), "tags"))
    return web.json_response({"model": logged_model_json(m)})


async def delete_logged_model_tag(request: web.Request) -> web.Response:
    await _svc(request).update_logged_model(_org(request), request.match_info["model_id"],
                                            delete_tag=request.match_info["tag_key"])
    return web.json_response({})


async def log_logged_model_params(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).update_logged_model(_org(request), request.match_info["model_id"],
                                            params=kv_list(_list(b, "params"), "params"))
    return web.json_response({})


@requires("read")  # also answers a POST that only reads
async def search_logged_models(request: web.Request) -> web.Response:
    b = await _json(request)
    if b.get("filter") or b.get("datasets"):
        raise BadRequest("filter and datasets are not supported by arwx's logged-models search (docs/mlflow.md)")
    models = await _svc(request).search_logged_models(_org(request), _list(b, "experiment_ids"))
    return _paged([logged_model_json(m) for m in models], "models", b, 100, 1000)


async def log_outputs(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).log_outputs(_org(request), b.get("run_id"), b.get("models") or [])
    return web.json_response({})


# -- registered models ---------------------------------------------------------------------------
async def create_registered_model(request: web.Request) -> web.Response:
    b = await _json(request)
    svc = _svc(request)
    m = await svc.create_registered_model(_org(request), b.get("name"), b.get("description"),
                                          kv_list(_list(b, "tags"), "tags"))
    return web.json_response({"registered_model": registered_model_json(m, [])})


async def get_registered_model(request: web.Request) -> web.Response:
    return web.json_response(
        {"registered_model": await _svc(request).registered_model_json(_org(request), request.query.get("name"))})


async def search_registered_models(request: web.Request) -> web.Response:
    b = dict(request.query)
    models = await _svc(request).search_registered_models(_org(request))
    if b.get("filter"):
        keep = _registry_filter(b["filter"])
        models = [m for m in models if keep(m)]
    return _paged(models, "registered_models", b, 100, 1000)


def _registry_filter(text: str):  # noqa: ANN202 - a predicate on a registered model's JSON
    """``name`` and ``tags.<key>`` clauses, as the client sends them. A model without the tag
    matches ``!=`` (the client itself adds ``tags.`mlflow.prompt.is_prompt` != 'true'``)."""
    clauses = parse_filter(text, frozenset({"name"}))
    for c in clauses:
        if c.entity not in ("attributes", "tags"):
            raise BadRequest(f"filter: registered models are searched by name and tags, not {c.entity}")

    def keep(m: dict) -> bool:
        tags = {t["key"]: t["value"] for t in m["tags"]}
        for c in clauses:
            have = m["name"] if c.entity == "attributes" else tags.get(c.key)
            if have is None and c.op == "!=":
                continue
            if not matches([c], lambda _e, _k, have=have: have):
                return False
        return True

    return keep


async def update_registered_model(request: web.Request) -> web.Response:
    b = await _json(request)
    desc = b.get("description")
    if desc is not None and not isinstance(desc, str):
        raise BadRequest("description must be a string")
    svc, org = _svc(request), _org(request)
    m = await svc.update_registered_model(org, b.get("name"), description=desc)
    return web.json_response({"registered_model": await svc.registered_model_json(org, m.name)})


async def rename_registered_model(request: web.Request) -> web.Response:
    b = await _json(request)
    new_name = b.get("new_name")
    if not isinstance(new_name, str) or not new_name or len(new_name) > 256:
        raise BadRequest("new_name must be a non-empty string of at most 256 characters")
    svc, org = _svc(request), _org(request)
    m = await svc.update_registered_model(org, b.get("name"), new_name=new_name)
    return web.json_response({"registered_model": await svc.registered_model_json(org, m.name)})


async def delete_registered_model(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    svc, org = _svc(request), _org(request)
    m = await svc.registered_model(org, b.get("name"))
    await svc.state.delete_registered_model(org, m.name)
    return web.json_response({})


async def set_registered_model_tag(request: web.Request) -> web.Response:
    b = await _json(request)
    tags = kv_list([{"key": b.get("key"), "value": b.get("value", "")}], "tag")
    await _svc(request).update_registered_model(_org(request), b.get("name"), tags=tags)
    return web.json_response({})


async def delete_registered_model_tag(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    await _svc(request).update_registered_model(_org(request), b.get("name"), delete_tag=str(b.get("key")))
    return web.json_response({})


async def set_alias(request: web.Request) -> web.Response:
    b = await _json(request)
    await _svc(request).set_alias(_org(request), _key_id(request), b.get("name"), b.get("alias"), b.get("version"))
    return web.json_response({})


async def delete_alias(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    await _svc(request).update_registered_model(_org(request), b.get("name"), delete_alias=str(b.get("alias")))
    return web.json_response({})


async def get_by_alias(request: web.Request) -> web.Response:
    svc, org = _svc(request), _org(request)
    v = await svc.alias_version(org, request.query.get("name"), request.query.get("alias"))
    m = await svc.registered_model(org, v.name)
    return web.json_response({"model_version": model_version_json(v, m.aliases)})


@requires("read")  # also answers a POST that only reads
async def get_latest_versions(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    stages = b.get("stages") or []
    stages = [stages] if isinstance(stages, str) else stages
    svc, org = _svc(request), _org(request)
    vs = await svc.latest_versions(org, b.get("name"), stages)
    m = await svc.registered_model(org, b.get("name"))
    return web.json_response({"model_versions": [model_version_json(v, m.aliases) for v in vs]})


# -- model versions ------------------------------------------------------------------------------
async def create_model_version(request: web.Request) -> web.Response:
    b = await _json(request)
    svc, org = _svc(request), _org(request)
    v = await svc.create_model_version(org, _key_id(request), b, kv_list(_list(b, "tags"), "tags"))
    return web.json_response({"model_version": model_version_json(v, {})})


async def _version_response(request: web.Request, name: Any, version: Any) -> web.Response:
    svc, org = _svc(request), _org(request)
    v = await svc.model_version(org, name, version)
    m = await svc.registered_model(org, v.name)
    return web.json_response({"model_version": model_version_json(v, m.aliases)})


async def get_model_version(request: web.Request) -> web.Response:
    return await _version_response(request, request.query.get("name"), request.query.get("version"))


async def get_download_uri(request: web.Request) -> web.Response:
    v = await _svc(request).model_version(_org(request), request.query.get("name"), request.query.get("version"))
    return web.json_response({"artifact_uri": v.storage_location})


async def update_model_version(request: web.Request) -> web.Response:
    b = await _json(request)
    desc = b.get("description")
    if desc is not None and not isinstance(desc, str):
        raise BadRequest("description must be a string")
    await _svc(request).update_model_version(_org(request), _key_id(request), b.get("name"), b.get("version"),
                                             description=desc)
    return await _version_response(request, b.get("name"), b.get("version"))


async def transition_stage(request: web.Request) -> web.Response:
    b = await _json(request)
    archive = b.get("archive_existing_versions", False)
    if not isinstance(archive, bool):
        raise BadRequest("archive_existing_versions must be true or false")
    await _svc(request).update_model_version(_org(request), _key_id(request), b.get("name"), b.get("version"),
                                             stage=b.get("stage"), archive_others=archive)
    return await _version_response(request, b.get("name"), b.get("version"))


async def delete_model_version(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    svc, org = _svc(request), _org(request)
    v = await svc.model_version(org, b.get("name"), b.get("version"))
    await svc.state.delete_model_version(org, v.name, v.version)
    return web.json_response({})


async def set_model_version_tag(request: web.Request) -> web.Response:
    b = await _json(request)
    tags = kv_list([{"key": b.get("key"), "value": b.get("value", "")}], "tag")
    await _svc(request).update_model_version(_org(request), _key_id(request), b.get("name"), b.get("version"),
                                             tags=tags)
    return web.json_response({})


async def delete_model_version_tag(request: web.Request) -> web.Response:
    b = await _args_or_json(request)
    await _svc(request).update_model_version(_org(request), _key_id(request), b.get("name"), b.get("version"),
                                             delete_tag=str(b.get("key")))
    return web.json_response({})


async def search_model_versions(request: web.Request) -> web.Response:
    b = dict(request.query)
    name = None
    if b.get("filter"):
        clauses = parse_filter(b["filter"], frozenset({"name"}))
        names = [c for c in clauses if c.entity == "attributes" and c.key == "name" and c.op == "="]
        if len(clauses) != len(names) or len(names) > 1:
            raise BadRequest("filter: arwx's model-version search supports only name = '<model>' (docs/mlflow.md)")
        name = names[0].value if names else None
    svc, org = _svc(request), _org(request)
    vs = await svc.search_model_versions(org, name)
    aliases = {m.name: m.aliases for m in await svc.state.registered_models(org)}
    return _paged([model_version_json(v, aliases.get(v.name, {})) for v in vs], "model_versions", b, 10_000, 200_000)


ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/logged-models", create_logged_model),
    ("POST", "/logged-models/search", search_logged_models),
    ("GET", "/logged-models/{model_id}", get_logged_model),
    ("PATCH", "/logged-models/{model_id}", finalize_logged_model),
    ("DELETE", "/logged-models/{model_id}", delete_logged_model),
    ("PATCH", "/logged-models/{model_id}/tags", set_logged_model_tags),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key}", delete_logged_model_tag),
    ("POST", "/logged-models/{model_id}/params", log_logged_model_params),
    ("POST", "/runs/outputs", log_outputs),
    ("POST", "/registered-models/create", create_registered_model),
    ("GET", "/registered-models/get", get_registered_model),
    ("GET", "/registered-models/search", search_registered_models),
    ("PATCH", "/registered-models/update", update_registered_model),
    ("POST", "/registered-models/rename", rename_registered_model),
    ("DELETE", "/registered-models/delete", delete_registered_model),
    ("POST", "/registered-models/set-tag", set_registered_model_tag),
    ("DELETE", "/registered-models/delete-tag", delete_registered_model_tag),
    ("POST", "/registered-models/alias", set_alias),
    ("DELETE", "/registered-models/alias", delete_alias),
    ("GET", "/registered-models/alias", get_by_alias),
    ("POST", "/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/model-versions/create", create_model_version),
    ("GET", "/model-versions/get", get_model_version),
    ("GET", "/model-versions/get-download-uri", get_download_uri),
    ("GET", "/model-versions/search", search_model_versions),
    ("PATCH", "/model-versions/update", update_model_version),
    ("POST", "/model-versions/transition-stage", transition_stage),
    ("DELETE", "/model-versions/delete", delete_model_version),
    ("POST", "/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/model-versions/delete-tag", delete_model_version_tag),
]
