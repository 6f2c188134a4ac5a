"""Charts over rewound and forked runs: each segment's cells, from the rollups, under the run's id.

Invariant: a run with segments (``arwx/segments.py``) charts, per segment
(storage id S, steps lo..hi), exactly the cells ``rollups.step_cells`` yields
for S over lo..hi (rollup cells wholly inside the segment used whole, the
cells a boundary cuts read raw for their in-range part only), relabelled with
the run's id. So a step shows from one attempt only, charts agree with history
point for point, and a chart of a long rewound run still reads rollups: its
cost grows with the number of segments, not with the run's length.

Extents (the step and time range, the latest value) come from the coarsest
rollup tier per storage id when a source's data lies wholly inside its
segment, else from that segment's cells at a tier of about 64 cells per series.
"""

from __future__ import annotations

import re

from arwx.query.rollups import extents_sql, merged, pick_tier, pos_step, pos_value, step_cells
from arwx.segments import Segment, within
from arwx.store.base import Store

_SHARED = {"org", "keys"}  # parameters every part reads alike
_PARAM = re.compile(r"\{(\w+):")
_FAR = 2**63 - 1


def _relabel(sql: str, params: dict, tag: str, sid: str, run_id: str) -> tuple[str, dict]:
    """``sql`` over storage id ``sid`` only, its rows labelled ``run_id``; its own
    parameters renamed with ``tag`` so that parts of one query never collide."""
    own = {**params, "runs": [sid]}
    renamed = _PARAM.sub(lambda m: "{" + (m.group(1) if m.group(1) in _SHARED else f"{m.group(1)}_{tag}") + ":", sql)
    out = {f"{k}_{tag}": v for k, v in own.items() if k not in _SHARED}
    out[f"label_{tag}"] = run_id
    return f"SELECT * REPLACE ({{label_{tag}:String}} AS run_id) FROM ({renamed})", out


def _parts(
    segments: dict[str, list[Segment]], lo: int, hi: int, tier_of, src_hi: dict[str, int]
) -> list[tuple[str, str, int, int, int]]:
    """(run id, storage id, step lo, step hi, tier) of every segment part within ``lo..hi``;
    an open segment ends at its source's last step (nothing after it to read)."""
    out = []
    for run_id, segs in segments.items():
        for sid, a, b in within(segs, lo, hi):
            b = min(b, src_hi.get(sid, -1))
            if a <= b:
                out.append((run_id, sid, a, b, tier_of(a, b)))
    return out


def add_cells(
    cells: str, params: dict, segments: dict[str, list[Segment]], tier: int, lo: int, hi: int, src_hi: dict[str, int],
    whole: bool = False,
) -> tuple[str, dict]:
    """The chart's cells (``cells`` over the plain runs) plus every segment's, at ``tier``, over
    ``lo..hi``; ``whole``: each cell's rows folded into one (``rollups.merged``, for time axes)."""
    sqls, params = [f"({cells})"], dict(params)
    for i, (run_id, sid, a, b, t) in enumerate(_parts(segments, lo, hi, lambda a, b: tier, src_hi)):
        sql, p = step_cells(t, a, b)
        p.setdefault("tier", t)
        if whole:
            sql = merged(sql)
        sql, p = _relabel(sql, p, f"s{i}", sid, run_id)
        sqls.append(f"({sql})")
        params.update(p)
    return " UNION ALL ".join(sqls), params


async def source_extents(
    store: Store, org: str, segments: dict[str, list[Segment]], keys: list[str]
) -> tuple[dict, dict]:
    """(storage id, key) -> the coarsest tier's extents of every source of the segments, and
    (run id, key, writer) -> skipped points of every attempt a run shows a part of (skips are
    kept by seq, not step: an attempt shown in part counts whole); one query."""
    label: dict[str, list[str]] = {}
    for run_id, segs in segments.items():
        for sid, _, _ in segs:
            label.setdefault(sid, []).append(run_id)
    params: dict = {"org": org, "runs": sorted(label)}
    if keys:
        params["keys"] = keys
    key_filter = " AND key IN {keys:Array(String)}" if keys else ""
    sql = (
        "SELECT 0 AS kind, run_id, key, '' AS writer_id, step_lo, step_hi, ts_lo, ts_hi, latest, latest_step, 0 AS n"
        f" FROM ({extents_sql(bool(keys))})"
        " UNION ALL SELECT 1, run_id, key, toString(writer_id), 0, 0, 0, 0, nan, 0,"
        " bitmapCardinality(groupBitmapMergeState(seqs)) FROM point_skips"
        f" WHERE org = {{org:String}} AND run_id IN {{runs:Array(String)}}{key_filter} GROUP BY run_id, key, writer_id"
    )
    ext: dict[tuple[str, str], tuple] = {}
    skipped: dict[tuple[str, str, str], int] = {}
    for kind, sid, key, writer, *cols in await store.rows(sql, params):
        if kind:
            for run_id in label[sid]:
                skipped[(run_id, key, writer)] = skipped.get((run_id, key, writer), 0) + int(cols[-1])
        else:
            ext[(sid, key)] = tuple(cols[:6])
    return ext, skipped


async def extents(
    store: Store, org: str, segments: dict[str, list[Segment]], keys: list[str]
) -> tuple[dict[tuple[str, str], tuple], dict[str, int], dict[tuple[str, str, str], int]]:
    """(run id, key) -> (step_lo, step_hi, ts_lo, ts_hi, latest value, latest step) over each
    run's segments, each source's last step (for ``add_cells``), and the skip counts of
    ``source_extents``: two queries at most."""
    by_source, skipped = await source_extents(store, org, segments, keys)
    src_hi: dict[str, int] = {}
    for (sid, _), e in by_source.items():
        src_hi[sid] = max(src_hi.get(sid, -1), int(e[1]))
    found: list[tuple[str, str, tuple]] = []
    sqls, params = [], {"org": org}
    if keys:
        params["keys"] = keys
    for i, (run_id, sid, a, b, tier) in enumerate(
        _parts(segments, 0, _FAR, lambda a, b: pick_tier((b - a + 1) // 64), src_hi)
    ):
        whole = [(k, e) for (s, k), e in by_source.items() if s == sid and a <= e[0] and e[1] <= b]
        if len(whole) == len([1 for (s, _) in by_source if s == sid]):
            found += [(run_id, k, e) for k, e in whole]  # the source lies inside its segment: exact as it is
            continue
        sql, p = step_cells(tier, a, b)
        p.setdefault("tier", tier)
        sql, p = _relabel(sql, p, f"s{i}", sid, run_id)
        if not keys:
            sql = sql.replace(" AND key IN {keys:Array(String)}", "")
        sqls.append(
            f"SELECT run_id, key, {pos_step('min(first)')}, {pos_step('max(last)')},"
            " toUnixTimestamp64Milli(min(ts_min)), toUnixTimestamp64Milli(max(ts_min)),"
            f" {pos_value('max(last)')}, {pos_step('max(last)')} FROM ({sql}) GROUP BY run_id, key"
        )
        params.update(p)
    if sqls:
        for r in await store.rows(" UNION ALL ".join(sqls), params):
            found.append((r[0], r[1], tuple(r[2:])))
    out: dict[tuple[str, str], tuple] = {}
    for run_id, key, (s_lo, s_hi, t_lo, t_hi, val, at) in found:
        prev = out.get((run_id, key))
        if prev is None:
            out[(run_id, key)] = (s_lo, s_hi, t_lo, t_hi, val, at)
            continue
        later = (val, at) if at >= prev[5] else (prev[4], prev[5])
        out[(run_id, key)] = (min(prev[0], s_lo), max(prev[1], s_hi), min(prev[2], t_lo), max(prev[3], t_hi), *later)
    return out, src_hi, skipped


async def latest(
    store: Store, org: str, segments: dict[str, list[Segment]], keys: list[str] | None = None
) -> dict[str, dict[str, dict]]:
    """run id -> key -> ``{"step", "value"}``: each run's latest visible value per key (of
    ``keys`` only, when given)."""
    if keys == []:
        return {run_id: {} for run_id in segments}
    ext, _, _ = await extents(store, org, segments, keys or [])
    out: dict[str, dict[str, dict]] = {run_id: {} for run_id in segments}
    for (run_id, key), e in ext.items():
        out[run_id][key] = {"step": e[5], "value": e[4]}
    return out
