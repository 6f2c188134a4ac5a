"""Routes of files and artifacts: thin translations to ``Files`` and ``Artifacts``.

Every route is org-scoped by the caller's key; refusals are ``arwx.errors``
exceptions (rendered by the app), so a malformed body is a 400 naming the
field and another org's artifact is a 404 like a missing one.
"""

from __future__ import annotations

import re

from aiohttp import ClientPayloadError, web
from msgspec import UNSET

from arwx.appkeys import API_KEY, BLOBS, CATALOG
from arwx.blobs.routes import claimed_sha
from arwx.control.artifact_wire import NAME_PATTERN, ArtifactLog, FileRegister, RefMove
from arwx.control.artifacts import Artifacts, check_ref_name, parse_version
from arwx.control.files import Files
from arwx.errors import BadRequest
from arwx.gateway.body import body_chunks, read_body
from arwx.wire import decode_body

FILES = web.AppKey("files", Files)
ARTIFACTS = web.AppKey("artifacts", Artifacts)
# A manifest of 10,000 entries with long paths fits well below this.
MAX_LOG_BODY = 8 << 20
MAX_SMALL_BODY = 64 << 10

_NAME_RE = re.compile(NAME_PATTERN)


def _path_name(request: web.Request, part: str) -> str:
    value = request.match_info[part]
    if not _NAME_RE.match(value):
        raise BadRequest(f"{part}: {value!r} is not a name (letters, digits, . _ -; at most 128)")
    return value


def _query(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not value or len(value) > 128 or any(ord(c) < 0x20 or c == "\x7f" or c == "/" for c in value):
        raise BadRequest(f"{name}: {value!r} is not a valid {name}")
    return value


async def register_file(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), FileRegister)
    key = request[API_KEY]
    f, new = await request.app[FILES].register(
        key.org, key.key_id, req.uri, req.sha256, req.size, None if req.name is UNSET else req.name)
    return web.json_response(f.public(), status=201 if new else 200)


async def upload_file(request: web.Request) -> web.Response:
    name = request.query.get("name")
    if name is not None and (not name or len(name) > 256 or any(ord(c) < 0x20 or c in "/\\\x7f" for c in name)):
        raise BadRequest(f"name: {name!r} is not a file name (no slashes or control characters, at most 256)")
    claimed = claimed_sha(request)
    key = request[API_KEY]
    try:
        f, new = await request.app[FILES].upload(key.org, key.key_id, body_chunks(request, whole=False), claimed, name)
    except (ClientPayloadError, ConnectionResetError):
        raise BadRequest("the upload was cut off before its end; nothing was stored") from None
    return web.json_response(f.public(), status=201 if new else 200)


async def log_artifact(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_LOG_BODY), ArtifactLog)
    key = request[API_KEY]
    manifest = None if req.manifest is UNSET else {p: (e.sha256, e.size) for p, e in req.manifest.items()}
    out, new = await request.app[ARTIFACTS].log(
        key.org, key.key_id, req.project, req.name, req.type, manifest,
        None if req.file is UNSET else req.file, req.produced_by)
    return web.json_response({**out, "created": new}, status=201 if new else 200)


async def list_artifacts(request: web.Request) -> web.Response:
    org = request[API_KEY].org
    produced_by = _query(request, "produced_by")
    if produced_by is not None:
        return web.json_response({"versions": await request.app[ARTIFACTS].produced_by(org, produced_by)})
    items = await request.app[ARTIFACTS].list(org, _query(request, "type"), _query(request, "project"))
    return web.json_response({"artifacts": items})


async def get_artifact(request: web.Request) -> web.Response:
    org = request[API_KEY].org
    detail = await request.app[ARTIFACTS].detail(org, _path_name(request, "name"), _query(request, "project"))
    return web.json_response(detail)


async def resolve_ref(request: web.Request) -> web.Response:
    org = request[API_KEY].org
    out = await request.app[ARTIFACTS].resolve(
        org, _path_name(request, "name"), _path_name(request, "ref"), _query(request, "project"))
    return web.json_response(out)


async def move_ref(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_SMALL_BODY), RefMove)
    key = request[API_KEY]
    ref = check_ref_name(_path_name(request, "ref"))
    project = _query(request, "project")
    if req.project is not UNSET:
        if project is not None and project != req.project:
            raise BadRequest("project: the body and ?project= name different projects")
        project = req.project
    expected = ... if req.expected_version is UNSET else (
        None if req.expected_version is None else parse_version(req.expected_version, "expected_version"))
    out = await request.app[ARTIFACTS].move_ref(
        key.org, key.key_id, _path_name(request, "name"), ref, project,
        parse_version(req.version, "version"), expected, req.reason)
    return web.json_response(out)


def _services(app: web.Application) -> None:
    """The file and artifact services of this app, built once on its catalog and blob store."""
    if ARTIFACTS not in app:
        files = Files(app[CATALOG], app[BLOBS])
        app[FILES] = files
        app[ARTIFACTS] = Artifacts(app[CATALOG], app[BLOBS], files)


def add_write_routes(app: web.Application) -> None:
    """The gateway's part (every POST and PUT goes to a gateway in the distributed layout)."""
    _services(app)
    app.router.add_post("/v1/files", register_file)
    app.router.add_post("/v1/files/upload", upload_file)
    app.router.add_post("/v1/artifacts/log", log_artifact)
    app.router.add_put("/v1/artifacts/{name}/refs/{ref}", move_ref)


def add_read_routes(app: web.Application) -> None:
    """The query service's part."""
    _services(app)
    app.router.add_get("/v1/artifacts", list_artifacts)
    app.router.add_get("/v1/artifacts/{name}", get_artifact)
    app.router.add_get("/v1/artifacts/{name}/{ref}", resolve_ref)
