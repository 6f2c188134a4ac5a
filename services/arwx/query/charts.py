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
from collections.abc import Callable
from dataclasses import dataclass

from arwx.query.rollups import RAW_CELLS, extents_sql, pick_tier, step_cells, time_cells
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


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


async def _extents(store: Store, req: ChartRequest) -> dict[tuple[str, str], tuple]:
    """(run, key) -> (step_lo, step_hi, ts_lo, ts_hi, latest value, latest step)."""
    params: dict = {"org": req.org, "runs": req.runs}
    if req.keys:
        params["keys"] = req.keys
    rows = await store.rows(extents_sql(bool(req.keys)), params)
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def ema(values: list[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average (as W&B's EMA): ``smoothing`` 0 is off."""
    out, acc, weight = [], 0.0, 0.0
    for v in values:
        acc = acc * smoothing + (1 - smoothing) * v
        weight = weight * smoothing + (1 - smoothing)
        out.append(acc / weight)
    return out


async def chart(store: Store, req: ChartRequest) -> dict:
    """Series per (run, key[, writer]) plus each run's latest values."""
    ext = await _extents(store, req)
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
    params: dict = {"org": req.org, "runs": req.runs, "keys": req.keys}
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
            bucket = Buckets("intDiv(toInt64(step_min), {w:Int64})", lambda b, w=width: b * w)
        else:
            # Exactly ``samples`` buckets of span/samples steps. Each cell goes
            # whole to the bucket of its first step, so a bucket's edges move
            # to the next cell start. The tier is the coarsest whose cell fits
            # in a bucket (1 to 4 cells each): every bucket is non-empty on
            # dense data, and a chart reads as few cells as before (the -Merge
            # of their argMin/argMax states is its cost: a tier 4x finer made
            # a 500-series dashboard chart 2x dearer, measured).
            tier = 0 if req.agg == "avg" else pick_tier(span // req.samples // (4 if req.agg == "lttb" else 1))
            width = span / req.samples
            n = req.samples
            bucket = Buckets(
                "greatest(0, intDiv((toInt128(bitShiftLeft(bitShiftRight(step_min, {tier:UInt8}), {tier:UInt8})) - {lo:UInt64})"
                " * {n:UInt32}, {span:UInt64}))",
                lambda b, lo=lo, n=n, span=span: lo + _ceil_div(b * span, n),
            )
            params.update(n=n, span=span)
        cells, p = step_cells(tier, lo, hi, edges=req.since_step is not None or req.max_step is not None)
        p.setdefault("tier", tier)
        xexpr = "step_min"
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
        xexpr = "(ts_ms - transform(run_id, {o_runs:Array(String)}, {o_ms:Array(Int64)}, toInt64(0)))"
        p.update(o_runs=list(origins), o_ms=list(origins.values()), x_lo=f, x_hi=t)
        cells = f"SELECT * FROM ({cells}) WHERE {xexpr} BETWEEN {{x_lo:Int64}} AND {{x_hi:Int64}}"
        bucket = Buckets(f"intDiv(toInt64({xexpr}), {{w:Int64}})", lambda b, w=width: b * w)
        out["range"] = [f, t]
    params.update(p)
    params["w"] = width
    out["tier"], out["bucket_width"] = tier, width
    series = await _series(store, req, cells, xexpr, bucket, params)
    skipped = await _skipped(store, req)
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
    """How cells fall into output buckets: the bucket number's SQL, and each bucket's x."""

    sql: str
    x: Callable[[int], int]


async def _series(store: Store, req: ChartRequest, cells: str, xexpr: str, buckets: Buckets, params: dict) -> list[dict]:
    bucket, x_of = buckets.sql, buckets.x
    if req.agg == "lttb":
        # MinMaxLTTB: each cell offers its first, last and extreme points; LTTB picks among them.
        pts = (
            "arrayJoin(arrayDistinct([(toFloat64(step_min), f), (toFloat64(lo_x), lo), (toFloat64(hi_x), hi),"
            " (toFloat64(step_max), l)]))" if req.x == "step" else
            f"arrayJoin(arrayDistinct([(toFloat64({xexpr}), lo), (toFloat64({xexpr}), hi)]))"
        )
        sql = (
            "SELECT run_id, key, writer_id, largestTriangleThreeBuckets({n:UInt64})(p.1, p.2) FROM ("
            f"  SELECT run_id, key, writer_id, {pts} AS p FROM ({cells})"
            ") GROUP BY run_id, key, writer_id ORDER BY run_id, key, writer_id"
        )
        rows = await store.rows(sql, {**params, "n": req.samples})
        return [
            {"run_id": r, "key": k, "writer_id": w, "x": [_num(x) for x, _ in pts], "value": [y for _, y in pts]}
            for r, k, w, pts in rows
        ]
    line = "avg(lo)" if req.agg == "avg" else "argMax(l, step_max)"
    per_writer = (
        f"SELECT run_id, key, writer_id, {bucket} AS b, {line} AS v, min(lo) AS mn, max(hi) AS mx,"
        " argMin(f, step_min) AS first, argMax(l, step_max) AS last,"
        " argMin(lo_x, lo) AS mn_x, argMax(hi_x, hi) AS mx_x"
        f" FROM ({cells}) GROUP BY run_id, key, writer_id, b"
    )
    if req.writers == "combined":
        # Each writer's bucket value, then mean and band across writers.
        sql = (
            "SELECT run_id, key, b, avg(v), min(v), max(v), count() FROM ("
            f"{per_writer}) GROUP BY run_id, key, b ORDER BY run_id, key, b"
        )
        out: dict[tuple, dict] = {}
        for r, k, b, mean, lo, hi, n in await store.rows(sql, params):
            s = out.setdefault((r, k), {"run_id": r, "key": k, "writer_id": None, "x": [], "value": [], "min": [], "max": [], "writers": []})
            s["x"].append(x_of(b))
            s["value"].append(mean)
            s["min"].append(lo)
            s["max"].append(hi)
            s["writers"].append(n)
        return list(out.values())
    sql = per_writer + " ORDER BY run_id, key, writer_id, b"
    series: dict[tuple, dict] = {}
    for r, k, w, b, v, mn, mx, first, last, mn_x, mx_x in await store.rows(sql, params):
        s = series.get((r, k, w))
        if s is None:
            s = series[(r, k, w)] = {"run_id": r, "key": k, "writer_id": w, "x": [], "value": []}
            if req.agg == "minmax":
                s.update(first=[], last=[], min=[], max=[])
                if req.x == "step":
                    s.update(min_x=[], max_x=[])
        s["x"].append(x_of(b))
        s["value"].append(v)
        if req.agg == "minmax":
            s["first"].append(first)
            s["last"].append(last)
            s["min"].append(mn)
            s["max"].append(mx)
            if req.x == "step":
                s["min_x"].append(mn_x)
                s["max_x"].append(mx_x)
    return list(series.values())


def _num(x: float) -> int | float:
    return int(x) if math.isfinite(x) and x == int(x) else x


async def _skipped(store: Store, req: ChartRequest) -> dict[tuple[str, str, str], int]:
    """Non-finite points per series (whole run), from the idempotent skip bitmaps."""
    rows = await store.rows(
        "SELECT run_id, key, writer_id, bitmapCardinality(groupBitmapMergeState(seqs)) FROM point_skips"
        " WHERE org = {org:String} AND run_id IN {runs:Array(String)} AND key IN {keys:Array(String)}"
        " GROUP BY run_id, key, writer_id",
        {"org": req.org, "runs": req.runs, "keys": req.keys},
    )
    return {(r, k, w): int(n) for r, k, w, n in rows}


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
