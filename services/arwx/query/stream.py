"""Run history streamed page by page with bounded memory: NDJSON rows or one Arrow IPC stream.

NDJSON: the run is read in step windows of about ``PAGE_ROWS`` rows (see
``history.read_rows``). Arrow: keyset pages of ``ARROW_PAGE_ROWS`` points in
sort-key order (see ``series``), ClickHouse's record batches framed into one
stream. Either way each page is written out before the next is read, so
memory stays at one page whatever the run length and each query costs one page.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from arwx.query.history import read_rows, to_rows
from arwx.query.series import ARROW_STREAM, Range, arrow_pages
from arwx.segments import Segment
from arwx.store.base import Store

PAGE_ROWS = 20_000
ARROW_PAGE_ROWS = 100_000

_enc = msgspec.json.Encoder()


async def stream_history(
    request: web.Request,
    store: Store,
    org: str,
    run_id: str,
    keys: list[str],
    min_step: int,
    max_step: int,
    page_rows: int | None = None,
    segments: list[Segment] | None = None,
) -> web.StreamResponse:
    """Write one JSON row per line (the history row shape), then end (a rewound or forked
    run: its ``segments``, see ``history.read_rows``)."""
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    seen: set[str] = set()
    async for raw in read_rows(store, org, run_id, keys, min_step, max_step, page_rows or PAGE_ROWS, None, segments):
        await resp.write(b"\n".join(_enc.encode(r) for r in to_rows(raw, seen)) + b"\n")
    await resp.write_eof()
    return resp


async def stream_arrow(request: web.Request, store: Store, rng: Range, page_rows: int | None = None) -> web.StreamResponse:
    """Write every point of the range as one Arrow IPC stream (columns as ``series``)."""
    resp = web.StreamResponse(headers={"Content-Type": ARROW_STREAM})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    async for chunk in arrow_pages(store, rng, page_rows or ARROW_PAGE_ROWS):
        await resp.write(chunk)
    await resp.write_eof()
    return resp
