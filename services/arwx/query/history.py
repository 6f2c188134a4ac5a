"""Run history (W&B ``scan_history``): rows of step, ts, writer and one column per key.

Reads use FINAL, so a point stored twice (a replay not merged yet) shows once.
Skipped values (stored as NaN placeholders) never show.
"""

from __future__ import annotations

from arwx.store.base import Store

MAX_LIMIT = 100_000


def _where(keys: list[str]) -> str:
    cond = (
        "org = {org:String} AND run_id = {run:String} AND isFinite(value)"
        " AND step >= {min_step:UInt64} AND step <= {max_step:UInt64}"
        " AND (step, writer_id) > ({after_step:Int64}, {after_writer:String})"
    )
    if keys:
        cond += " AND key IN {keys:Array(String)}"
    return cond


async def history(
    store: Store,
    org: str,
    run_id: str,
    keys: list[str],
    min_step: int,
    max_step: int,
    limit: int,
    after: tuple[int, str] | None = None,
) -> dict:
    """One page of history; ``next`` is the cursor for the following page (or None)."""
    params = {
        "org": org,
        "run": run_id,
        "min_step": min_step,
        "max_step": max_step,
        "after_step": after[0] if after else -1,
        "after_writer": after[1] if after else "",
        "limit": limit + 1,
    }
    if keys:
        params["keys"] = keys
    rows = await store.rows(
        "SELECT step, writer_id, toUnixTimestamp64Milli(max(ts)), groupArray(key), groupArray(value)"
        f" FROM points FINAL WHERE {_where(keys)}"
        " GROUP BY step, writer_id ORDER BY step, writer_id LIMIT {limit:UInt32}",
        params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    seen_keys: set[str] = set()
    for step, writer, ts_ms, ks, vs in rows:
        row = {"step": step, "ts": ts_ms / 1000, "writer_id": writer}
        row.update(zip(ks, vs))
        seen_keys.update(ks)
        out.append(row)
    nxt = f"{rows[-1][0]}:{rows[-1][1]}" if more and rows else None
    return {"run_id": run_id, "keys": keys if keys else sorted(seen_keys), "rows": out, "next": nxt}


def parse_cursor(cursor: str) -> tuple[int, str]:
    """``"<step>:<writer_id>"`` as given in ``next``."""
    step, _, writer = cursor.partition(":")
    return int(step), writer
