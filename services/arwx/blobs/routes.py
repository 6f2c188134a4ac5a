"""Blob routes: which SHAs are missing, upload one blob, download one blob.

Thin: they translate HTTP to the ``BlobStore`` of the app and back. Bytes
stream both ways in bounded chunks (an upload idle for ``body_idle_s`` is a
408); the server computes every hash itself. Refusals are ``arwx.errors``
exceptions (``BadSha`` and ``HashMismatch`` are 400s), rendered by the app.
"""

from __future__ import annotations

from aiohttp import ClientPayloadError, web

from arwx.appkeys import API_KEY, BLOBS
from arwx.blobs.base import BadSha, Blob, check_sha
from arwx.errors import BadRequest, NotFound
from arwx.gateway.body import body_chunks, read_body
from arwx.wire import BadInput, BlobsMissing, decode_body

# The claimed SHA of an upload: this header or the ``sha256`` query parameter.
SHA_HEADER = "X-Content-SHA256"
# 10,000 SHAs of 64 characters, quoted and separated, fit well below this.
MAX_MISSING_BODY = 1 << 20


async def missing_blobs(request: web.Request) -> web.Response:
    req = decode_body(await read_body(request, MAX_MISSING_BODY), BlobsMissing)
    for i, sha in enumerate(req.shas):
        try:
            check_sha(sha)
        except BadSha as e:
            raise BadInput(f"shas[{i}]: {e}") from None
    missing = await request.app[BLOBS].missing(request[API_KEY].org, req.shas)
    return web.json_response({"missing": missing})


def claimed_sha(request: web.Request) -> str | None:
    """The SHA-256 an upload claims (query ``sha256`` or the header), checked; None if it claims none."""
    claims = {c for c in (request.query.get("sha256"), request.headers.get(SHA_HEADER)) if c}
    if len(claims) > 1:
        raise BadInput(f"the sha256 query parameter and the {SHA_HEADER} header differ")
    if not claims:
        return None
    try:
        return check_sha(claims.pop())
    except BadSha as e:
        raise BadInput(f"sha256: {e}") from None


async def upload_blob(request: web.Request) -> web.Response:
    claimed = claimed_sha(request)
    try:
        info = await request.app[BLOBS].put(request[API_KEY].org, body_chunks(request, whole=False), claimed)
    except (ClientPayloadError, ConnectionResetError):
        # The client went away mid-body; the store kept nothing.
        raise BadRequest("the upload was cut off before its end; nothing was stored") from None
    return web.json_response({"sha": info.sha, "size": info.size}, status=201)


async def get_blob(request: web.Request) -> web.StreamResponse:
    sha = request.match_info["sha"]
    check_sha(sha)
    blobs, org = request.app[BLOBS], request[API_KEY].org
    headers = {"Content-Type": "application/octet-stream", "ETag": f'"{sha}"'}
    if request.method == "HEAD":
        size = await blobs.size(org, sha)
        if size is None:
            raise NotFound(f"unknown blob {sha}")
        return web.Response(headers={**headers, "Content-Length": str(size)})
    blob = await blobs.open(org, sha)
    if blob is None:
        raise NotFound(f"unknown blob {sha}")
    return await send_blob(request, blob, headers)


async def send_blob(request: web.Request, blob: Blob, headers: dict[str, str]) -> web.StreamResponse:
    """Stream an opened blob as the answer (and close it), one chunk in memory at a time."""
    try:
        resp = web.StreamResponse(headers=headers)
        resp.content_length = blob.size  # a short body is then a broken download, never a silent one
        await resp.prepare(request)
        async for chunk in blob.chunks():
            await resp.write(chunk)  # waits for the client: memory stays at one chunk
        await resp.write_eof()
        return resp
    finally:
        await blob.close()


def add_write_routes(app: web.Application) -> None:
    """The gateway's part (every POST goes to a gateway in the distributed layout)."""
    app.router.add_post("/v1/blobs/missing", missing_blobs)
    app.router.add_post("/v1/blobs", upload_blob)


def add_read_routes(app: web.Application) -> None:
    """The query service's part."""
    app.router.add_get("/v1/blobs/{sha}", get_blob)
