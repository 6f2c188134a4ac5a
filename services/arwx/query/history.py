"""Run history (W&B ``scan_history``): rows of step, ts, writer and one column per key.

Reads use FINAL, so a point stored twice (a replay not merged yet) shows once.
Skipped values (stored as NaN placeholders) never show.

A rewound or forked run's history is its segments read one after the other
(``arwx/segments.py``): each from its storage id over its step range. They are
disjoint and ordered by step, so the rows stay in (step, writer) order and the
cursor ``"<step>:<writer>"`` needs no segment: no step shows twice.
"""

from __future__ import annotations

from arwx.segments import Segment, within
from arwx.store.base import Store

MAX_LIMIT = 100_000


async def _extent(store: Store, params: dict, keys: list[str]) -> tuple[int, int, int]:
    """(first step, last step, rows) of what a read may return; rows counts
    replays too (no FINAL): it only sizes the step windows."""
    where = "org = {org:String} AND run_id = {run:String} AND step >= {lo:UInt64} AND step <= {max_step:UInt64}"
    if keys:
        where += " AND key IN {keys:Array(String)}"
    ((lo, hi, n),) = await store.rows(f"SELECT min(step), max(step), count() FROM points WHERE {where}", params)
    return int(lo), int(hi), int(n)


async def _window(store: Store, params: dict, keys: list[str], lo: int, hi: int, limit: int) -> list[tuple]:
    """History rows with ``lo <= step <= hi`` after the cursor, at most ``limit``."""
    cond = (
        "org = {org:String} AND run_id = {run:String} AND isFinite(value)"
        " AND step >= {lo:UInt64} AND step <= {hi:UInt64}"
        " AND (step, writer_id) > ({after_step:Int64}, {after_writer:String})"
    )
    if keys:
        cond += " AND key IN {keys:Array(String)}"
    return await store.rows(
        "SELECT step, writer_id, toUnixTimestamp64Milli(max(ts)), groupArray(key), groupArray(value)"
        f" FROM points FINAL WHERE {cond}"
        " GROUP BY step, writer_id ORDER BY step, writer_id LIMIT {limit:UInt32}",
        {**params, "lo": lo, "hi": hi, "limit": limit},
    )


async def read_rows(
    store: Store,
    org: str,
    run_id: str,
    keys: list[str],
    min_step: int,
    max_step: int,
    want: int,
    after: tuple[int, str] | None = None,
    segments: list[Segment] | None = None,
):  # noqa: ANN201 - an async generator of row batches
    """Yield batches of raw history rows in (step, writer) order, ``want``
    rows at a time, until the range is read: of ``run_id``'s storage, or of
    ``segments`` (a rewound or forked run's) when given.
    """
    for sid, lo, hi in within(segments or [(run_id, 0, None)], min_step, max_step):
        if after is not None and hi < after[0]:
            continue
        async for batch in _read_source(store, org, sid, keys, lo, hi, want, after):
            yield batch


async def _read_source(
    store: Store,
    org: str,
    run_id: str,
    keys: list[str],
    min_step: int,
    max_step: int,
    want: int,
    after: tuple[int, str] | None = None,
):  # noqa: ANN201 - an async generator of row batches
    """``read_rows`` of one storage id.

    Reads go by step windows sized from the run's density, so each query
    touches about ``want`` rows (the ``step`` minmax index prunes the rest)
    instead of aggregating everything after the cursor: paging and streaming
    cost O(rows), not O(rows²).
    """
    params: dict = {"org": org, "run": run_id, "max_step": max_step}
    if keys:
        params["keys"] = keys
    start = max(min_step, after[0] if after else min_step)
    params["lo"] = start
    first, last, n = await _extent(store, params, keys)
    if n == 0:
        return
    lo = max(start, first)
    width = max(1, (last - first + 1) * want // n)
    cursor = after or (-1, "")
    while lo <= last:
        hi = min(last, lo + width - 1)
        params["after_step"], params["after_writer"] = cursor
        rows = await _window(store, params, keys, lo, hi, want)
        if len(rows) >= want:
            # The window holds at least a page: hand it over, go on after it.
            yield rows
            cursor = (rows[-1][0], rows[-1][1])
            lo = int(rows[-1][0])
            continue
        if rows:
            yield rows
            cursor = (rows[-1][0], rows[-1][1])
        lo = hi + 1
        width *= 2 if len(rows) < want // 4 else 1  # sparse here: look further next time


def to_rows(raw: list[tuple], seen_keys: set[str]) -> list[dict]:
    out = []
    for step, writer, ts_ms, ks, vs in raw:
        row = {"step": step, "ts": ts_ms / 1000, "writer_id": writer}
        row.update(zip(ks, vs))
        seen_keys.update(ks)
        out.append(row)
    return out


async def history(
    store: Store,
    org: str,
    run_id: str,
    keys: list[str],
    min_step: int,
    max_step: int,
    limit: int,
    after: tuple[int, str] | None = None,
    segments: list[Segment] | None = None,
) -> dict:
    """One page of history; ``next`` is the cursor for the following page (or None)."""
    raw: list[tuple] = []
    async for batch in read_rows(store, org, run_id, keys, min_step, max_step, limit + 1 - len(raw), after, segments):
        raw.extend(batch)
        if len(raw) > limit:
            break
    more = len(raw) > limit
    raw = raw[:limit]
    seen_keys: set[str] = set()
    out = to_rows(raw, seen_keys)
    nxt = f"{raw[-1][0]}:{raw[-1][1]}" if more and raw else None
    return {"run_id": run_id, "keys": keys if keys else sorted(seen_keys), "rows": out, "next": nxt}


def parse_cursor(cursor: str) -> tuple[int, str]:
    """``"<step>:<writer_id>"`` as given in ``next``."""
    step, _, writer = cursor.partition(":")
    return int(step), writer
