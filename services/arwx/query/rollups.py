"""Which tier of chart cells answers a chart, and the SQL of its "cells".

``chart_cells`` (schemas/clickhouse.sql) holds, per (run, key, writer),
idempotent min/max columns over power-of-two step cells: tiers 2^4, 2^6, ...,
2^16. A chart of ``samples`` buckets over a step range reads the coarsest
tier whose cells still fit into one output bucket, so its cost follows
``samples``, not the run length. Tier 0 means "read raw points" (short ranges).

Every cell source yields the same columns, so the chart SQL is one text:
``run_id, key, writer_id, cell, ts_min, first, last, low, high``:
``cell`` is the step the row is bucketed by (its cell's first step; a raw
point's own step at tier 0), ``ts_min`` its first time, and ``first``/``last``/
``low``/``high`` the packed positions of schemas/clickhouse.sql. A cell can
come as several rows (one per insert until background merges fold them):
they fold with ``min``/``max`` only, so a chart aggregates rows straight into
output buckets, one level, and decodes the few results (``decode``).
"""

from __future__ import annotations

TIERS = (16, 14, 12, 10, 8, 6, 4)

_M64 = "18446744073709551615"


def pos_step(x: str) -> str:
    """Step of a packed first/last position."""
    return f"toUInt64(bitShiftRight({x}, 128))"


def pos_value(x: str) -> str:
    """Value of a packed first/last position."""
    return f"reinterpretAsFloat64(toUInt64(bitAnd({x}, {_M64})))"


def ext_value(x: str) -> str:
    """Value of a packed low/high extreme (undoes the order-preserving map)."""
    o = f"toUInt64(bitShiftRight({x}, 64))"
    return f"reinterpretAsFloat64(if(bitTest({o}, 63), bitAnd({o}, 9223372036854775807), bitNot({o})))"


def ext_step(x: str) -> str:
    """Step of a packed low/high extreme."""
    return f"toUInt64(bitAnd({x}, {_M64}))"


# A raw point as a one-point cell, packed as the materialized view packs it.
_BITS = "reinterpretAsUInt64(value)"
_POS = f"bitOr(bitShiftLeft(toUInt256(step), 128), bitOr(bitShiftLeft(toUInt256(seq), 64), toUInt256({_BITS})))"
_EXT = (
    f"bitOr(bitShiftLeft(toUInt128(if(bitTest({_BITS}, 63), bitNot({_BITS}), bitOr({_BITS}, 9223372036854775808))), 64),"
    " toUInt128(step))"
)
_SERIES = "org = {org:String} AND run_id IN {runs:Array(String)} AND key IN {keys:Array(String)}"


def raw_cells(cell: str = "step") -> str:
    """Raw points as one-point cells (FINAL: a stored duplicate is read once);
    ``cell``: the step each is bucketed by (a partial edge cell goes whole to
    its cell's bucket, as the rollup cell would)."""
    return (
        f"SELECT run_id, key, writer_id, {cell} AS cell, ts AS ts_min, {_POS} AS first, {_POS} AS last,"
        f" {_EXT} AS low, {_EXT} AS high FROM points FINAL WHERE {_SERIES} AND isFinite(value)"
    )


RAW_CELLS = raw_cells()

# Rows of one tier's cells; not grouped: rows of a cell fold in the chart's own aggregation.
ROLLUP_CELLS = (
    "SELECT run_id, key, writer_id, bitShiftLeft(bucket, {tier:UInt8}) AS cell, ts_min, first, last, low, high"
    f" FROM chart_cells WHERE {_SERIES} AND tier = {{tier:UInt8}}"
)


def merged(cells: str) -> str:
    """``cells`` with the rows of each cell folded into one (for consumers that
    look at a cell as a whole: time axes place it by its first time, LTTB
    picks among its points)."""
    return (
        "SELECT run_id, key, writer_id, cell, min(ts_min) AS ts_min, min(first) AS first, max(last) AS last,"
        f" min(low) AS low, max(high) AS high FROM ({cells}) GROUP BY run_id, key, writer_id, cell"
    )


def pick_tier(width: int) -> int:
    """The coarsest tier whose cell (2^tier steps) is at most ``width`` steps; 0: raw."""
    for t in TIERS:
        if (1 << t) <= width:
            return t
    return 0


def raw_steps(a: str, b: str, cell: str = "step") -> str:
    """Raw points with steps between the parameters ``a`` and ``b``.

    ``step`` is not in the points sort key, so the read is narrowed by the seq
    range of the finest cells covering those steps (scalar subqueries,
    constant before index analysis): a zoom into a long run reads only the
    granules of its range, not the run."""
    scope = (
        f" FROM chart_cells WHERE {_SERIES} AND tier = 4"
        f" AND bucket BETWEEN intDiv({{{a}:UInt64}}, 16) AND intDiv({{{b}:UInt64}}, 16)"
    )
    return (
        raw_cells(cell) + f" AND step BETWEEN {{{a}:UInt64}} AND {{{b}:UInt64}}"
        f" AND seq BETWEEN (SELECT min(seq_min){scope}) AND (SELECT max(seq_max){scope})"
    )


def step_cells(tier: int, lo: int, hi: int, edges: bool = True) -> tuple[str, dict]:
    """Cells covering exactly the steps ``lo..hi`` (the SQL's parameters besides
    ``org``, ``runs`` and ``keys``).

    Cells that lie wholly inside the range are read from ``chart_cells``; a cell
    that straddles ``lo`` or ``hi`` is read raw, its in-range part only (at
    most 2^tier steps at each end, seq-pruned), bucketed by its cell start.
    ``edges=False`` when ``lo..hi`` spans all the data: no cell can straddle."""
    params: dict = {"lo": lo, "hi": hi}
    if tier == 0:
        return raw_steps("lo", "hi"), params
    size = 1 << tier
    b0, b1 = lo // size, hi // size
    params["tier"] = tier
    if not edges:
        params.update(c0=b0, c1=b1)
        return ROLLUP_CELLS + " AND bucket BETWEEN {c0:UInt64} AND {c1:UInt64}", params
    # Whole cells: the first from lo's cell if lo is its start, the last to hi's if hi is its end.
    c0 = b0 if lo % size == 0 else b0 + 1
    c1 = b1 if hi % size == size - 1 else b1 - 1
    cell = "bitShiftLeft(bitShiftRight(step, {tier:UInt8}), {tier:UInt8})"
    parts = []
    if c0 <= c1:
        params.update(c0=c0, c1=c1)
        parts.append(ROLLUP_CELLS + " AND bucket BETWEEN {c0:UInt64} AND {c1:UInt64}")
    if c0 > b0:  # lo's cell is partly outside
        params["e0_hi"] = min(hi, (b0 + 1) * size - 1)
        parts.append(raw_steps("lo", "e0_hi", cell))
    if c1 < b1 and (b1 > b0 or c0 == b0):  # hi's cell is partly outside (and not read above)
        params["e1_lo"] = max(lo, b1 * size)
        parts.append(raw_steps("e1_lo", "hi", cell))
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
        f"SELECT * FROM ({merged(ROLLUP_CELLS)})"
        " WHERE ts_min BETWEEN fromUnixTimestamp64Milli({from_ms:Int64}) AND fromUnixTimestamp64Milli({to_ms:Int64})"
    )
    return sql, {"tier": tier, "from_ms": from_ms, "to_ms": to_ms}


def extents_sql(with_keys: bool) -> str:
    """Per (run, key): first and last step, first and last time, the latest
    value and its step (the last point by (step, seq) over all writers), from
    the coarsest tier (a handful of rows per series, whatever the run length);
    for the given keys, or every key of the runs."""
    keys = " AND key IN {keys:Array(String)}" if with_keys else ""
    return (
        f"SELECT run_id, key, {pos_step('min(first)')} AS step_lo, {pos_step('max(last)')} AS step_hi,"
        " toUnixTimestamp64Milli(min(ts_min)) AS ts_lo, toUnixTimestamp64Milli(max(ts_max)) AS ts_hi,"
        f" {pos_value('max(last)')} AS latest, {pos_step('max(last)')} AS latest_step"
        " FROM chart_cells WHERE org = {org:String} AND tier = 16 AND run_id IN {runs:Array(String)}"
        f"{keys} GROUP BY run_id, key"
    )
