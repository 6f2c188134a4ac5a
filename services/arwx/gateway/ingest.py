"""``POST /v1/ingest`` (JSON batch, or columns by content type) and ``POST /v1/ingest/stream`` (NDJSON).

Thin: read the body with bounds (``body.py``), hand the points to the
``IngestService`` (``arwx/ingest/``), answer its receipt. A JSON batch is all
or nothing; a stream rejects bad lines by number (then the answer is a 400)
while every good line is written. Errors are raised, and rendered by the
app's middleware.
"""

from __future__ import annotations

from aiohttp import web

from arwx import metrics
from arwx.appkeys import API_KEY, CONFIG, INGEST
from arwx.backpressure import budgeted
from arwx.errors import BadRequest, PayloadTooLarge
from arwx.gateway.auth import run_bound
from arwx.gateway.body import body_chunks, read_body
from arwx.ingest.ndjson import split_lines
from arwx.wire import COLUMNS_CONTENT_TYPE, BadInput, decode_batch_fast, decode_columns

ATTEMPT_HEADER = "Arwx-Attempt"


def attempt_of(request: web.Request) -> int | None:
    """The run attempt the writer opened (``Arwx-Attempt``), fencing writers a rewind superseded."""
    v = request.headers.get(ATTEMPT_HEADER)
    if v is None:
        return None
    if not v.isdigit() or len(v) > 9:
        raise BadRequest(f"{ATTEMPT_HEADER} must be an attempt number (0, 1, ...), not {v[:20]!r}")
    return int(v)


@run_bound
@budgeted("body")
async def ingest_batch(request: web.Request) -> web.Response:
    """``POST /v1/ingest``: a JSON batch (or, as ``COLUMNS_CONTENT_TYPE``, columns), all or nothing."""
    cfg = request.app[CONFIG]
    try:
        body = await read_body(request, cfg.max_body_bytes)
    except PayloadTooLarge as e:
        raise PayloadTooLarge(f"{e}; send large batches to /v1/ingest/stream") from None
    if request.content_type == COLUMNS_CONTENT_TYPE:
        return await _ingest_columns(request, body)
    try:
        batch = decode_batch_fast(body)
    except BadInput:
        metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
        raise
    key = request[API_KEY]
    result = await request.app[INGEST].ingest(
        key.org, batch.points, batch.run_id, batch.writer_id, validated=True, only_run=key.run_id,
        attempt=attempt_of(request),
    )
    return web.json_response(result.body())


async def _ingest_columns(request: web.Request, body: bytes) -> web.Response:
    """The columnar body (``wire.IngestColumns``) of ``POST /v1/ingest``: all or nothing, like a batch."""
    try:
        cols = decode_columns(body)
    except BadInput:
        metrics.POINTS_REJECTED.labels(reason="bad_request").inc()
        raise
    key = request[API_KEY]
    result = await request.app[INGEST].ingest_columns(key.org, cols, only_run=key.run_id, attempt=attempt_of(request))
    return web.json_response(result.body())


@run_bound
@budgeted("stream")
async def ingest_stream(request: web.Request) -> web.Response:
    """``POST /v1/ingest/stream``: NDJSON, any length, bounded memory."""
    cfg = request.app[CONFIG]
    lines = split_lines(body_chunks(request, whole=False), cfg.max_line_bytes)
    key = request[API_KEY]
    result = await request.app[INGEST].ingest_lines(
        key.org, lines, cfg.max_line_bytes, only_run=key.run_id, attempt=attempt_of(request)
    )
    if result.rejected:
        raise BadRequest(f"{result.rejected} line(s) rejected; every other line was accepted", extra=result.body())
    return web.json_response(result.body())
