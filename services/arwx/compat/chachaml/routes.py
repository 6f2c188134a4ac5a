"""HTTP routes of the chachaml adapter: its paths and wire shapes, thin handlers (docs/compat.md).

The write API (``/api/w/...``) belongs to the gateway role, the read API
(``/api/...``) to the query role. chachaml's error shape is arwx's own,
``{"error": "..."}``, so the routes are plain routes of the app (no sub-app,
no renderer). Params, metrics, runs, ends and models take JSON; artifacts
take raw bytes (``application/octet-stream``); a body of the other kind is a
400, as chachaml answers. A write re-sent with the same ``Idempotency-Key``
is answered from the first answer and done once.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import ClientPayloadError, web

from arwx.appkeys import API_KEY, BLOBS, RUNS
from arwx.backpressure import budgeted
from arwx.blobs.routes import send_blob
from arwx.compat.chachaml import across_runs
from arwx.compat.chachaml.models import STAGES, Models
from arwx.compat.chachaml.service import END_STATUSES, ChachamlService, StartRun, run_json
from arwx.compat.common import add_adapter_routes, json_object, org_of
from arwx.compat.runfiles import RunFiles
from arwx.control.artifact_wire import NAME_PATTERN
from arwx.control.artifacts import Artifacts
from arwx.control.files import Files
from arwx.control.http import idempotent
from arwx.errors import BadRequest, NotFound
from arwx.gateway.body import body_chunks
from arwx.params import query_int
from arwx.wire import ID_PATTERN, ProjectName, decode_body

SERVICE = web.AppKey("arwx_chachaml", ChachamlService)
MODELS = web.AppKey("arwx_chachaml_models", Models)
MAX_JSON = 16 << 20
MAX_LIST = 10_000
PREFIX_W = "/api/w"

_Text = Annotated[str, msgspec.Meta(max_length=4096)]
_RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]


class StartRunBody(msgspec.Struct):
    """``POST /api/w/runs``; unknown fields are ignored, as chachaml does."""

    experiment: ProjectName = "default"
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    tags: dict[str, Any] | None = None
    parent_run_id: _RunId | None = None
    created_by: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class EndBody(msgspec.Struct):
    status: str = "completed"
    error: _Text | None = None


class ModelBody(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
    run_id: _RunId
    artifact: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    stage: str | None = None
    description: _Text | None = None


def _svc(request: web.Request) -> ChachamlService:
    return request.config_dict[SERVICE]


def _run_id(request: web.Request) -> str:
    return request.match_info["run_id"]


def _content_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


async def _json(request: web.Request) -> dict:
    """The JSON object body; another Content-Type is a 400 (chachaml: "Content-Type mismatch")."""
    ct = _content_type(request)
    if ct and ct != "application/json" and not ct.endswith("+json"):
        raise BadRequest(f"this endpoint expects JSON (Content-Type: application/json), not {ct!r}; "
                         "artifact uploads take application/octet-stream")
    return await json_object(request, MAX_JSON, _decode)


def _decode(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        try:
            # The document's own loop sends bc's output, `{"loss":.500,"step":1}`: a number
            # without its leading zero. Read it as the number it means; nothing else is relaxed.
            return msgspec.json.decode(leading_zeros(raw))
        except msgspec.DecodeError:
            raise e from None


def leading_zeros(raw: bytes) -> bytes:
    """``raw`` with a ``0`` before every number that starts with ``.`` (``.5``, ``-.5``) outside strings."""
    out = bytearray()
    in_string = escaped = False
    prev = 0  # the last byte outside strings that is not whitespace
    for b in raw:
        if in_string:
            if b == 0x22 and not escaped:
                in_string = False
            escaped = not escaped and b == 0x5C  # a backslash escapes the next byte
        elif b == 0x22:
            in_string, escaped = True, False
        elif b == 0x2E and prev in b":,[-":
            out.append(0x30)
        if not in_string and b not in b" \t\r\n":
            prev = b
        out.append(b)
    return bytes(out)


def _ok(data: Any = None) -> web.Response:
    return web.json_response({"ok": True} if data is None else data)


# -- the write API -----------------------------------------------------------------------------
@idempotent(MAX_JSON)
async def start_run(request: web.Request) -> web.Response:
    b = decode_body(msgspec.json.encode(await _json(request)), StartRunBody)
    run = await _svc(request).start_run(org_of(request), StartRun(b.experiment, b.name, b.tags or {}, b.parent_run_id,
                                                                b.created_by))
    return _ok(run_json(run))


@idempotent(MAX_JSON)
async def log_params(request: web.Request) -> web.Response:
    await _svc(request).log_params(org_of(request), _run_id(request), await _json(request))
    return _ok()


@idempotent(MAX_JSON)
@budgeted("body")
async def log_metrics(request: web.Request) -> web.Response:
    await _svc(request).log_metrics(org_of(request), _run_id(request), await _json(request),
                                    request.headers.get("Idempotency-Key"))
    return _ok()


@budgeted("stream")
async def log_artifact(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), _run_id(request))  # another org's run is unknown whatever the body
    ct = _content_type(request)
    if ct and ct != "application/octet-stream":
        raise BadRequest(f"artifact uploads take the raw bytes as application/octet-stream, not {ct!r}; "
                         "params and metrics take JSON")
    name = request.query.get("name", "")
    if not name or len(name) > 512 or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise BadRequest("name: give the artifact's name as ?name=… (1 to 512 characters, no control characters)")
    try:
        f = await _svc(request).log_artifact(org_of(request), _run_id(request), name, body_chunks(request, whole=False),
                                             "application/octet-stream")
    except (ClientPayloadError, ConnectionResetError):
        raise BadRequest("the upload was cut off before its end; nothing was stored") from None
    return _ok({"ok": True, "sha256": f.sha256, "size": f.size, "name": f.name})


@idempotent(MAX_JSON)
async def end_run(request: web.Request) -> web.Response:
    b = decode_body(msgspec.json.encode(await _json(request)), EndBody)
    if b.status not in END_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(map(repr, END_STATUSES))}, not {b.status!r}")
    await _svc(request).end_run(org_of(request), _run_id(request), b.status, b.error)
    return _ok()


@idempotent(MAX_JSON)
async def register_model(request: web.Request) -> web.Response:
    b = decode_body(msgspec.json.encode(await _json(request)), ModelBody)
    if b.stage is not None and b.stage not in STAGES:
        raise BadRequest(f"stage must be one of {', '.join(STAGES)}, not {b.stage!r}")
    key = request[API_KEY]
    v = await request.config_dict[MODELS].register(key.org, key.key_id, b.name, b.run_id, b.artifact, b.stage,
                                                   b.description)
    return _ok({"name": b.name, **v})


# -- the read API ------------------------------------------------------------------------------
async def list_runs(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, MAX_LIST)
    runs = await _svc(request).list_runs(org_of(request), request.query.get("experiment"), request.query.get("status"),
                                         limit)
    return _ok([run_json(r) for r in runs])


async def get_run(request: web.Request) -> web.Response:
    return _ok(await _svc(request).run_detail(org_of(request), _run_id(request)))


async def list_experiments(request: web.Request) -> web.Response:
    return _ok(await _svc(request).experiments(org_of(request)))


def _ids(request: web.Request) -> list[str]:
    return [i for i in request.query.get("ids", "").split(",") if i.strip()]


async def compare_runs(request: web.Request) -> web.Response:
    return _ok(await across_runs.compare(_svc(request), org_of(request), _ids(request)))


async def search_runs(request: web.Request) -> web.Response:
    q = request.query
    return _ok(await across_runs.search(_svc(request), org_of(request), q.get("experiment"), q.get("metric_key"),
                                        q.get("op"), q.get("metric_value"), query_int(request, "limit", 100, 1, MAX_LIST)))


async def export_runs(request: web.Request) -> web.Response:
    csv = await across_runs.export_csv(_svc(request), org_of(request), request.query.get("experiment"),
                                       query_int(request, "limit", 100, 1, MAX_LIST))
    return web.Response(text=csv, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="runs.csv"'})


async def download_artifact(request: web.Request) -> web.StreamResponse:
    """An artifact's bytes by its id (``<run id>/<name>``, as ``GET /api/runs/:id`` lists it)."""
    org = org_of(request)
    f = await _svc(request).artifact(org, request.match_info["id"])
    blob = await request.config_dict[BLOBS].open(org, f.sha256) if f else None
    if f is None or blob is None:
        raise NotFound("Artifact not found")
    filename = f.name.rsplit("/", 1)[-1].replace("\\", "_").replace('"', "_")
    return await send_blob(request, blob, {"Content-Type": f.content_type,
                                           "Content-Disposition": f'inline; filename="{filename}"'})


class TagBody(msgspec.Struct):
    key: str
    value: Any = None


class NoteBody(msgspec.Struct):
    note: Annotated[str, msgspec.Meta(max_length=100_000)] | None = None


@idempotent(MAX_JSON)
async def add_tag(request: web.Request) -> web.Response:
    await _svc(request).run(org_of(request), request.match_info["id"])  # another org's run: 404 whatever the body
    b = decode_body(msgspec.json.encode(await _json(request)), TagBody)
    await _svc(request).set_tag(org_of(request), request.match_info["id"], b.key, b.value)
    return _ok()


@idempotent(MAX_JSON)
async def set_note(request: web.Request) -> web.Response:
    """chachaml's note is the run's tag ``note``."""
    await _svc(request).run(org_of(request), request.match_info["id"])
    b = decode_body(msgspec.json.encode(await _json(request)), NoteBody)
    await _svc(request).set_tag(org_of(request), request.match_info["id"], "note", b.note)
    return _ok()


async def get_tags(request: web.Request) -> web.Response:
    return _ok(await _svc(request).tags(org_of(request), request.match_info["id"]))


async def get_datasets(request: web.Request) -> web.Response:
    """Always ``[]`` for a run of the org: chachaml's write API has no way to log a dataset."""
    await _svc(request).run(org_of(request), request.match_info["id"])
    return _ok([])


async def diff_versions(request: web.Request) -> web.Response:
    m = request.match_info
    return _ok(await across_runs.diff_versions(_svc(request), request.config_dict[MODELS], org_of(request), m["name"],
                                               m["v1"], m["v2"]))


async def list_models(request: web.Request) -> web.Response:
    return _ok(await request.config_dict[MODELS].list(org_of(request)))


async def get_model(request: web.Request) -> web.Response:
    return _ok(await request.config_dict[MODELS].get(org_of(request), request.match_info["name"]))


WRITE_ROUTES = [
    ("POST", f"{PREFIX_W}/runs", start_run),
    ("POST", f"{PREFIX_W}/runs/{{run_id}}/params", log_params),
    ("POST", f"{PREFIX_W}/runs/{{run_id}}/metrics", log_metrics),
    ("POST", f"{PREFIX_W}/runs/{{run_id}}/artifacts", log_artifact),
    ("POST", f"{PREFIX_W}/runs/{{run_id}}/end", end_run),
    ("POST", f"{PREFIX_W}/models", register_model),
    # chachaml's two writes outside /api/w (its Web UI's JSON API): served where writes are.
    ("POST", "/api/tags/{id}", add_tag),
    ("POST", "/api/note/{id}", set_note),
]
READ_ROUTES = [
    ("GET", "/api/runs", list_runs),
    ("GET", "/api/runs/{run_id}", get_run),
    ("GET", "/api/compare", compare_runs),
    ("GET", "/api/search", search_runs),
    ("GET", "/api/export", export_runs),
    ("GET", "/api/artifacts/{id:.+}/download", download_artifact),
    ("GET", "/api/diff/{name}/{v1}/{v2}", diff_versions),
    ("GET", "/api/tags/{id}", get_tags),
    ("GET", "/api/datasets/{id}", get_datasets),
    ("GET", "/api/experiments", list_experiments),
    ("GET", "/api/models", list_models),
    ("GET", "/api/models/{name}", get_model),
]


def _models(app: web.Application) -> Models:
    catalog = app[RUNS].catalog
    return Models(catalog, Artifacts(catalog, app[BLOBS], Files(catalog, app[BLOBS])), app[RUNS],
                  RunFiles(catalog, app[BLOBS]))


_SERVICES = {SERVICE: ChachamlService.from_app, MODELS: _models}


def add_write_routes(app: web.Application) -> None:
    """chachaml's write API (the gateway's part)."""
    add_adapter_routes(app, WRITE_ROUTES, _SERVICES)


def add_read_routes(app: web.Application) -> None:
    """chachaml's read API (the query service's part)."""
    add_adapter_routes(app, READ_ROUTES, _SERVICES)
