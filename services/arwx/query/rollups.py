"""Which rollup tier answers a chart, and the SQL of its "cells".

``point_rollups`` (schemas/clickhouse.sql) holds, per (run, key, writer),
idempotent aggregates over power-of-two step cells: tiers 2^4, 2^6, ...,
2^16. A chart of ``samples`` buckets over a step range reads the coarsest tier
whose cells still fit into one output bucket, so its cost follows ``samples``,
not the run length. Tier 0 means "read raw points" (short ranges).

Every cell source yields the same columns, so the chart SQL is one text:
``run_id, key, writer_id, step_min, step_max, ts_ms, lo, hi, f, l, lo_x, hi_x``
(step range, first timestamp in ms, min, max, first, last, and the steps of
the min and the max).
"""

from __future__ import annotations

TIERS = (16, 14, 12, 10, 8, 6, 4)

# Raw points as one-point cells; FINAL so a stored duplicate is read once.
RAW_CELLS = (
    "SELECT run_id, key, writer_id, step AS step_min, step AS step_max,"
    " toUnixTimestamp64Milli(ts) AS ts_ms, value AS lo, value AS hi, value AS f, value AS l,"
    " step AS lo_x, step AS hi_x"
    " FROM points FINAL"
    " WHERE org = {org:String} AND run_id IN {runs:Array(String)} AND key IN {keys:Array(String)}"
    " AND isFinite(value)"
)

# Rollup cells of one tier; the -Merge functions fold the rows of a cell that
# several inserts (or not yet merged parts) wrote.
ROLLUP_CELLS = (
    "SELECT run_id, key, writer_id, min(step_min) AS step_min, max(step_max) AS step_max,"
    " toUnixTimestamp64Milli(min(ts_min)) AS ts_ms, min(vmin) AS lo, max(vmax) AS hi,"
    " argMinMerge(first) AS f, argMaxMerge(last) AS l,"
    " argMinMerge(vmin_step) AS lo_x, argMaxMerge(vmax_step) AS hi_x"
    " FROM point_rollups"
    " WHERE org = {org:String} AND run_id IN {runs:Array(String)} AND key IN {keys:Array(String)}"
    " AND tier = {tier:UInt8}"
)
ROLLUP_GROUP = " GROUP BY run_id, key, writer_id, bucket"


def pick_tier(width: int) -> int:
    """The coarsest tier whose cell (2^tier steps) is at most ``width`` steps; 0: raw."""
    for t in TIERS:
        if (1 << t) <= width:
            return t
    return 0


def raw_steps(a: str, b: str) -> str:
    """Raw points with steps between the parameters ``a`` and ``b``.

    ``step`` is not in the points sort key, so the read is narrowed by the seq
    range of the finest rollup cells covering those steps (scalar subqueries,
    constant before index analysis): a zoom into a long run reads only the
    granules of its range, not the run."""
    scope = (
        " FROM point_rollups WHERE org = {org:String} AND run_id IN {runs:Array(String)}"
        " AND key IN {keys:Array(String)} AND tier = 4"
        f" AND bucket BETWEEN intDiv({{{a}:UInt64}}, 16) AND intDiv({{{b}:UInt64}}, 16)"
    )
    return (
        RAW_CELLS + f" AND step BETWEEN {{{a}:UInt64}} AND {{{b}:UInt64}}"
        f" AND seq BETWEEN (SELECT min(seq_min){scope}) AND (SELECT max(seq_max){scope})"
    )


def step_cells(tier: int, lo: int, hi: int, edges: bool = True) -> tuple[str, dict]:
    """Cells covering exactly the steps ``lo..hi``.

    Rollup cells whose points all lie inside the range are used whole; only a
    series whose first or last cell straddles ``lo`` or ``hi`` reads that cell's
    in-range part raw (at most 2^tier steps at each end, seq-pruned).
    ``edges=False`` when ``lo..hi`` spans all the data: no cell can straddle."""
    params: dict = {"lo": lo, "hi": hi}
    if tier == 0:
        return raw_steps("lo", "hi"), params
    size = 1 << tier
    b0, b1 = lo // size, hi // size
    params.update(tier=tier, b0=b0, b1=b1)
    parts = [
        ROLLUP_CELLS + " AND bucket BETWEEN {b0:UInt64} AND {b1:UInt64}" + ROLLUP_GROUP
        + " HAVING step_min >= {lo:UInt64} AND step_max <= {hi:UInt64}"
    ]
    if not edges:
        return parts[0], params
    ends = [("b0", "lo", "e0_hi")]
    params["e0_hi"] = min(hi, (b0 + 1) * size - 1)
    if b1 != b0:
        ends.append(("b1", "e1_lo", "hi"))
        params["e1_lo"] = max(lo, b1 * size)
    for b, a, z in ends:
        straddling = (
            "SELECT run_id, key, writer_id FROM point_rollups"
            " WHERE org = {org:String} AND run_id IN {runs:Array(String)} AND key IN {keys:Array(String)}"
            f" AND tier = {{tier:UInt8}} AND bucket = {{{b}:UInt64}} GROUP BY run_id, key, writer_id"
            " HAVING NOT (min(step_min) >= {lo:UInt64} AND max(step_max) <= {hi:UInt64})"
        )
        parts.append(raw_steps(a, z) + f" AND (run_id, key, writer_id) IN ({straddling})")
    return " UNION ALL ".join(f"({p})" for p in parts), params


def time_cells(tier: int, from_ms: int, to_ms: int) -> tuple[str, dict]:
    """Cells whose first timestamp falls in ``from_ms..to_ms`` (a time axis
    places each cell by its first point, so buckets are exact up to one cell)."""
    if tier == 0:
        return (
            RAW_CELLS + " AND ts BETWEEN fromUnixTimestamp64Milli({from_ms:Int64}) AND fromUnixTimestamp64Milli({to_ms:Int64})",
            {"from_ms": from_ms, "to_ms": to_ms},
        )
    sql = (
        f"SELECT * FROM ({ROLLUP_CELLS}{ROLLUP_GROUP})"
        " WHERE ts_ms BETWEEN {from_ms:Int64} AND {to_ms:Int64}"
    )
    return sql, {"tier": tier, "from_ms": from_ms, "to_ms": to_ms}


# Per (run, key): step and time extents and the latest value, from the
# coarsest tier (a handful of rows per series, whatever the run length).
EXTENTS = (
    "SELECT run_id, key, min(step_min), max(step_max), toUnixTimestamp64Milli(min(ts_min)),"
    " toUnixTimestamp64Milli(max(ts_max)), argMax(l, step_max), max(step_max) FROM ("
    "  SELECT run_id, key, writer_id, bucket, min(step_min) AS step_min, max(step_max) AS step_max,"
    "   min(ts_min) AS ts_min, max(ts_max) AS ts_max, argMaxMerge(last) AS l"
    "  FROM point_rollups"
    "  WHERE org = {org:String} AND run_id IN {runs:Array(String)} AND tier = 16 {key_filter}"
    "  GROUP BY run_id, key, writer_id, bucket"
    ") GROUP BY run_id, key"
)


def extents_sql(with_keys: bool) -> str:
    """EXTENTS for the given keys, or for every key of the runs."""
    return EXTENTS.replace("{key_filter}", "AND key IN {keys:Array(String)}" if with_keys else "")
