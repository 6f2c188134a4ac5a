"""Run history as NDJSON, streamed page by page with bounded memory.

The run is read in keyset pages of ``(step, writer_id)`` (the same cursor as
``GET /v1/runs/:id/metrics``), each page written out before the next is read,
so memory stays at one page whatever the run length.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from arwx.query.history import history
from arwx.store.base import Store

PAGE_ROWS = 20_000

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
) -> web.StreamResponse:
    """Write one JSON row per line (the history row shape), then end."""
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    after = None
    while True:
        page = await history(store, org, run_id, keys, min_step, max_step, page_rows or PAGE_ROWS, after)
        if page["rows"]:
            await resp.write(b"\n".join(_enc.encode(r) for r in page["rows"]) + b"\n")
        if not page["next"]:
            break
        last = page["rows"][-1]
        after = (last["step"], last["writer_id"])
    await resp.write_eof()
    return resp
