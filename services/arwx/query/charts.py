"""Downsampled chart series, computed in ClickHouse from the rollup tiers.

Per output bucket: ``minmax`` (default) keeps first, last, min and max (and the
steps of the extremes) so no spike is lost; ``last`` keeps the last value;
``lttb`` runs ClickHouse's ``largestTriangleThreeBuckets`` over the cells'
extreme points (MinMaxLTTB); ``avg`` averages raw points (FINAL; it is the one
aggregate that is not idempotent, so it never reads rollups, see
docs/query.md). Buckets are aligned to multiples of the bucket width, which is
a multiple of the tier's cell, so each cell falls in exactly one bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from arwx.query import segmented
from arwx.query.rollups import (
    RAW_CELLS,
    ext_step,
    ext_value,
    extents_sql,
    merged,
    pick_tier,
    pos_step,
    pos_value,
    step_cells,
    time_cells,
)
from arwx.segments import Segment
from arwx.store.base import Store

AGGS = ("minmax", "lttb", "avg", "last")
AXES = ("step", "time", "relative")
WRITER_MODES = ("per", "combined")


@dataclass
class ChartRequest:
    """A validated chart request (see docs/query.md for each knob)."""

    org: str
    runs: list[str]
    keys: list[str]
    samples: int = 500
    x: str = "step"
    agg: str = "minmax"
    writers: str = "per"
    since_step: int | None = None
    max_step: int | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    interval: int | None = None  # bucket width: steps on the step axis, ms on time axes
    smoothing: float = 0.0
    # Rewound or forked runs' segments (``query/segmented.py``); the other runs read as they are.
    segments: dict[str, list[Segment]] = field(default_factory=dict)

    @property
    def plain(self) -> list[str]:
        """The runs read under their own id (no segments)."""
        return [r for r in self.runs if r not in self.segments]

    # Per-series arrays to compute (empty: all of the aggregate's); ``x`` always comes.
    fields: tuple[str, ...] = ()

    def wants(self, name: str) -> bool:
        """Whether the series array ``name`` is asked for (``value`` also when smoothing)."""
        return not self.fields or name in self.fields or (name == "value" and self.smoothing > 0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def ema(values: list[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average (as W&B's EMA): ``smoothing`` 0 is off."""
    out, acc, weight = [], 0.0, 0.0
    for v in values:
        acc = acc * smoothing + (1 - smoothing) * v
        weight = weight * smoothing + (1 - smoothing)
        out.append(acc / weight)
    return out


async def chart(store: Store, req: ChartRequest) -> dict:
    """Series per (run, key[, writer]) plus each run's latest values.

    Two ClickHouse queries, whatever the number of series: the extents (with
    each series' skip count) and the series, which ClickHouse returns as one
    row of arrays per series (no Python work per bucket)."""
    ext, skipped = await _extents(store, req)
    src_hi: dict[str, int] = {}
    if req.segments:
        seg_ext, src_hi, seg_skipped = await segmented.extents(store, req.org, req.segments, req.keys)
        ext.update(seg_ext)
        skipped.update(seg_skipped)
    if not req.keys:
        req.keys = sorted({k for _, k in ext})[:50]
    latest: dict[str, dict] = {}
    for (run, key), (_, _, _, _, val, step) in ext.items():
        latest.setdefault(run, {})[key] = {"step": step, "value": val}
    out = {
        "x": req.x, "agg": req.agg, "writers": req.writers, "samples": req.samples, "keys": req.keys,
        "latest": latest, "series": [], "tier": None, "bucket_width": None,
    }
    ext = {k: v for k, v in ext.items() if k[1] in req.keys}
    if not ext:
        return out
    params: dict = {"org": req.org, "runs": req.plain, "keys": req.keys}
    if req.x == "step":
        lo = req.since_step if req.since_step is not None else min(e[0] for e in ext.values())
        hi = req.max_step if req.max_step is not None else max(e[1] for e in ext.values())
        if hi < lo:
            return out
        span = hi - lo + 1
        if req.interval:
            # Buckets of a given width: a multiple of the cell, aligned to multiples of itself.
            tier = 0 if req.agg == "avg" else pick_tier(req.interval // 4 if req.agg == "lttb" else req.interval)
            width = _ceil_div(req.interval, 1 << tier) * (1 << tier)
            bucket = Buckets("intDiv(toInt64(cell), {w:Int64})", "toInt64(b * {w:Int64})")
        else:
            # Exactly ``samples`` buckets of span/samples steps. Each cell goes
            # whole to the bucket of its first step, so a bucket's edges move
            # to the next cell start. The tier is the coarsest whose cell fits
            # in a bucket (1 to 4 cells each): every bucket is non-empty on
            # dense data, and a chart reads as few cells as it can.
            tier = 0 if req.agg == "avg" else pick_tier(span // req.samples // (4 if req.agg == "lttb" else 1))
            width = span / req.samples
            bucket = Buckets(
                "greatest(0, intDiv((toInt128(cell) - {lo:UInt64}) * {n:UInt32}, {span:UInt64}))",
                # lo + ceil(b * span / n): the bucket's nominal start
                "toUInt64({lo:UInt64} + intDiv(toUInt128(b) * {span:UInt64} + {n:UInt32} - 1, {n:UInt32}))",
            )
            params.update(n=req.samples, span=span)
        cells, p = step_cells(tier, lo, hi, edges=req.since_step is not None or req.max_step is not None)
        p.setdefault("tier", tier)
        if req.segments:
            cells, p = segmented.add_cells(cells, p, req.segments, tier, lo, hi, src_hi)
        xexpr = "cell"
        out["range"] = [lo, hi]
    else:
        origins = {}
        if req.x == "relative":
            for (run, _), e in ext.items():
                origins[run] = min(origins.get(run, e[2]), e[2])
        span_lo = min(e[2] - origins.get(r, 0) for (r, _), e in ext.items())
        span_hi = max(e[3] - origins.get(r, 0) for (r, _), e in ext.items())
        f = req.from_ms if req.from_ms is not None else span_lo
        t = req.to_ms if req.to_ms is not None else span_hi
        if t < f:
            return out
        width = req.interval or max(1, _ceil_div(t - f + 1, req.samples))
        # Steps per ms of the fastest series: how many steps one bucket holds.
        rate = max(((e[1] - e[0]) / (e[3] - e[2]) if e[3] > e[2] else 0.0) for e in ext.values())
        steps = int(width * rate)
        tier = 0 if req.agg == "avg" or not rate else pick_tier(steps // 4 if req.agg == "lttb" else steps)
        # Inner filter on absolute time (the outer one on the axis value).
        o_lo = min(origins.values()) if origins else 0
        o_hi = max(origins.values()) if origins else 0
        cells, p = time_cells(tier, f + o_lo, t + o_hi)
        if req.segments:  # each segment's cells (a cell as a whole), whatever their time: the axis filter picks
            cells, p = segmented.add_cells(cells, p, req.segments, tier, 0, 2**63 - 1, src_hi, whole=tier > 0)
        xexpr = "(toUnixTimestamp64Milli(ts_min) - transform(run_id, {o_runs:Array(String)}, {o_ms:Array(Int64)}, toInt64(0)))"
        p.update(o_runs=list(origins), o_ms=list(origins.values()), x_lo=f, x_hi=t)
        cells = f"SELECT * FROM ({cells}) WHERE {xexpr} BETWEEN {{x_lo:Int64}} AND {{x_hi:Int64}}"
        bucket = Buckets(f"intDiv(toInt64({xexpr}), {{w:Int64}})", "toInt64(b * {w:Int64})")
        out["range"] = [f, t]
    params.update(p)
    params["w"] = width
    out["tier"], out["bucket_width"] = tier, width
    series = await _series(store, req, cells, xexpr, bucket, params)
    for s in series:
        s["skipped"] = skipped.get((s["run_id"], s["key"], s["writer_id"]), 0) if s["writer_id"] is not None else sum(
            n for (r, k, _), n in skipped.items() if (r, k) == (s["run_id"], s["key"])
        )
        if req.smoothing > 0:
            s["smoothed"] = ema(s["value"], req.smoothing)
    out["series"] = series
    return out


@dataclass(frozen=True)
class Buckets:
    """How cells fall into output buckets: the bucket number ``b`` of a cell row, and a bucket's x, in SQL."""

    sql: str
    x: str


def _per_series(group: str, cols: dict[str, str], rows: str) -> str:
    """One row per series (``group``): each output column an array in bucket
    order, from ``rows`` of one bucket ``b`` each. ClickHouse builds the
    response's shape, Python copies lists. One sort of one array of tuples,
    then its elements as arrays (``a.2``): a lambda sort per column cost more
    than the aggregation itself (measured)."""
    tup = ", ".join(cols.values())
    arrays = ", ".join(f"a.{i + 2}" for i in range(len(cols)))
    return (
        f"SELECT {group}, {arrays} FROM (SELECT {group}, arraySort(groupArray((b, {tup}))) AS a FROM ({rows})"
        f" GROUP BY {group}) ORDER BY {group}"
    )


async def _series(store: Store, req: ChartRequest, cells: str, xexpr: str, buckets: Buckets, params: dict) -> list[dict]:
    if req.agg == "lttb":
        # MinMaxLTTB: each cell offers its first, last and extreme points; LTTB picks among them.
        pts = (
            f"arrayJoin(arrayDistinct([(toFloat64({pos_step('first')}), {pos_value('first')}),"
            f" (toFloat64({ext_step('low')}), {ext_value('low')}), (toFloat64({ext_step('high')}), {ext_value('high')}),"
            f" (toFloat64({pos_step('last')}), {pos_value('last')})]))" if req.x == "step" else
            f"arrayJoin(arrayDistinct([(toFloat64({xexpr}), {ext_value('low')}), (toFloat64({xexpr}), {ext_value('high')})]))"
        )
        sql = (
            "SELECT run_id, key, writer_id, largestTriangleThreeBuckets({n:UInt64})(p.1, p.2) FROM ("
            f"  SELECT run_id, key, writer_id, {pts} AS p FROM ({merged(cells) if req.x == 'step' else cells})"
            ") GROUP BY run_id, key, writer_id ORDER BY run_id, key, writer_id"
        )
        rows = await store.rows(sql, {**params, "n": req.samples})
        return [
            {"run_id": r, "key": k, "writer_id": w, "x": [_num(x) for x, _ in pts], "value": [y for _, y in pts]}
            for r, k, w, pts in rows
        ]
    # Rows of cells straight into buckets: every column is a min or a max, so
    # the rows of a cell need no folding of their own first.
    # Only the aggregates some asked-for array needs (each is a column read and folded).
    aggs = {"v": f"avg({pos_value('first')})" if req.agg == "avg" else "max(last)"}
    if req.agg == "minmax" and req.writers == "per":
        needs = {"f": ("first",), "l": ("last",), "lo": ("min", "min_x"), "hi": ("max", "max_x")}
        src = {"f": "min(first)", "l": "max(last)", "lo": "min(low)", "hi": "max(high)"}
        aggs.update((a, src[a]) for a, names in needs.items() if any(req.wants(n) for n in names))
    per_writer = (
        f"SELECT run_id, key, writer_id, {buckets.sql} AS b, {', '.join(f'{e} AS {a}' for a, e in aggs.items())}"
        f" FROM ({cells}) GROUP BY run_id, key, writer_id, b"
    )
    line = "v" if req.agg == "avg" else pos_value("v")
    if req.writers == "combined":
        # Each writer's bucket value, then mean and band across writers.
        inner = (
            "SELECT run_id, key, b, avg(v) AS mean, min(v) AS vmin, max(v) AS vmax, count() AS n FROM ("
            f"  SELECT run_id, key, b, {line} AS v FROM ({per_writer})"
            ") GROUP BY run_id, key, b"
        )
        cols = {"x": buckets.x, "value": "mean", "min": "vmin", "max": "vmax", "writers": "n"}
        cols = {k: v for k, v in cols.items() if k == "x" or req.wants(k)}
        names = list(cols)
        return [
            {"run_id": r, "key": k, "writer_id": None, **dict(zip(names, arrays))}
            for r, k, *arrays in await store.rows(_per_series("run_id, key", cols, inner), params)
        ]
    cols = {"x": buckets.x, "value": line}
    if req.agg == "minmax":
        cols.update(first=pos_value("f"), last=pos_value("l"), min=ext_value("lo"), max=ext_value("hi"))
        if req.x == "step":
            cols.update(min_x=ext_step("lo"), max_x=ext_step("hi"))
    # Only the arrays asked for: formatting and decoding the numbers is most of a big chart's cost.
    cols = {k: v for k, v in cols.items() if k == "x" or req.wants(k)}
    sql = _per_series("run_id, key, writer_id", cols, per_writer)
    names = list(cols)
    return [
        {"run_id": r, "key": k, "writer_id": w, **dict(zip(names, arrays))}
        for r, k, w, *arrays in await store.rows(sql, params)
    ]


def _num(x: float) -> int | float:
    return int(x) if math.isfinite(x) and x == int(x) else x


async def _extents(store: Store, req: ChartRequest) -> tuple[dict[tuple[str, str], tuple], dict[tuple[str, str, str], int]]:
    """(run, key) -> (step_lo, step_hi, ts_lo, ts_hi, latest value, latest step), and
    non-finite points per (run, key, writer) from the idempotent skip bitmaps (whole
    run), in one query."""
    if not req.plain:
        return {}, {}  # only rewound or forked runs: ``segmented.extents`` has them all
    params: dict = {"org": req.org, "runs": req.plain}
    if req.keys:
        params["keys"] = req.keys
    keys = " AND key IN {keys:Array(String)}" if req.keys else ""
    # One result: extents rows (skips 0) and skip rows (kind 1, writer and count set).
    sql = (
        "SELECT 0 AS kind, run_id, key, '' AS writer_id, step_lo, step_hi, ts_lo, ts_hi, latest, latest_step, 0 AS skipped"
        f" FROM ({extents_sql(bool(req.keys))})"
        " UNION ALL SELECT 1, run_id, key, toString(writer_id), 0, 0, 0, 0, nan, 0,"
        " bitmapCardinality(groupBitmapMergeState(seqs)) FROM point_skips"
        f" WHERE org = {{org:String}} AND run_id IN {{runs:Array(String)}}{keys} GROUP BY run_id, key, writer_id"
    )
    ext: dict[tuple[str, str], tuple] = {}
    skipped: dict[tuple[str, str, str], int] = {}
    for kind, run, key, writer, *cols in await store.rows(sql, params):
        if kind:
            skipped[(run, key, writer)] = int(cols[-1])
        else:
            ext[(run, key)] = tuple(cols[:6])
    return ext, skipped


def grafana_frames(result: dict) -> list[dict]:
    """The series as Grafana data frames (column shapes: time, value[, min, max])."""
    frames = []
    is_time = result["x"] != "step"
    for s in result["series"]:
        labels = {"run": s["run_id"], "key": s["key"]}
        if s["writer_id"] is not None:
            labels["writer"] = s["writer_id"]
        name = " ".join(str(v) for v in labels.values())
        fields = [{"name": "time" if is_time else "step", "type": "time" if is_time else "number"}]
        values = [s["x"]]
        for col in ("value", "min", "max", "smoothed"):
            if col in s:
                fields.append({"name": col, "type": "number", "labels": labels})
                values.append(s[col])
        frames.append({"schema": {"name": name, "fields": fields}, "data": {"values": values}})
    return frames


__all__ = ["AGGS", "AXES", "RAW_CELLS", "WRITER_MODES", "ChartRequest", "chart", "ema", "grafana_frames"]
