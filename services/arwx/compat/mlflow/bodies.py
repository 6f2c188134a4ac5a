"""How the MLflow client sends its arguments: a JSON object in the body (POST,
PATCH, DELETE) or the query string (GET, repeated names as lists)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from arwx.errors import BadRequest
from arwx.gateway.body import read_body

MAX_JSON_BYTES = 16 << 20
_LISTS = ("run_ids", "experiment_ids", "order_by", "stages")


async def json_body(request: web.Request) -> dict:
    """The body's JSON object ({} for an empty body); 400 for anything else."""
    raw = await read_body(request, MAX_JSON_BYTES)
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise BadRequest(f"malformed JSON body: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def query_args(request: web.Request) -> dict[str, Any]:
    """GET arguments (repeated ones, and those that are lists in MLflow's protos, as lists)."""
    out: dict[str, Any] = {}
    for k in request.query:
        vals = request.query.getall(k)
        out[k] = vals if len(vals) > 1 or k in _LISTS else vals[0]
    return out


async def args_or_json(request: web.Request) -> dict:
    """GET: the query string; DELETE with a query string: that; otherwise the JSON body."""
    if request.method == "GET" or (request.method == "DELETE" and request.query):
        return query_args(request)
    return await json_body(request)
