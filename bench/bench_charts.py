"""Chart latency of one metric at 10^5..10^7 points, project charts for a dashboard, receipt latency.

Embedded store (chDB in a temp dir). Synthetic points go in with
``store.insert("points", table)`` in 1M-row blocks, so the rollup materialized
views fill exactly as they do behind the consumer. In-process: the chart
service's time (its ClickHouse queries included), not HTTP. Each figure is
the wall-clock p50/p99 and the process CPU time (all threads, chDB's
included: far less sensitive to other load on a shared machine) per chart.

``--baseline DIR`` times DIR/services/arwx/query/charts.py with its own
rollups.py and rollup tables (DIR/schemas/clickhouse.sql, created beside this
tree's, both filled by the same inserts; e.g. the code before a change:
``git archive <rev> services schemas | tar -x -C DIR``) on the same store,
interleaved, and prints it beside this tree's. ``--view-cost N`` also times
the insert of N points with each tree's view alone. Not a test: prints tables.

    python bench/bench_charts.py --exps 5 6 7 --samples 320 --project 50 10 100000 --view-cost 1000000 --baseline /tmp/arwx-base
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from arwx.query.charts import ChartRequest, chart  # noqa: E402
from arwx.query.integrity import receipt  # noqa: E402
from arwx.runs import Run  # noqa: E402
from arwx.store.chdb_store import ChdbStore  # noqa: E402
from arwx.store.schema import apply_schema  # noqa: E402

BLOCK = 1_000_000
ORG = "bench"
DASHBOARD_KEYS = ("loss", "acc", "lr", "grad_norm", "val_loss", "val_acc", "throughput", "mem", "tokens", "epoch")


def _block(run: str, keys: tuple[str, ...], start_step: int, n_steps: int, msg_points: int = 500) -> pa.Table:
    """``n_steps`` steps × keys of one writer; seq interleaves keys as the SDK does;
    log offsets mimic 500-point SDK batches (one log message each)."""
    steps = np.repeat(np.arange(start_step, start_step + n_steps, dtype=np.uint64), len(keys))
    n = len(steps)
    seq = np.arange(start_step * len(keys), start_step * len(keys) + n, dtype=np.uint64)
    rng = np.random.default_rng(start_step + hash(run) % 1000)
    value = np.sin(steps / 1000.0) + rng.normal(0, 0.05, n)
    ts = 1_700_000_000_000 + steps.astype(np.int64) * 100
    return pa.table(
        {
            "org": pa.array(np.full(n, ORG, dtype=object), pa.string()),
            "run_id": pa.array(np.full(n, run, dtype=object), pa.string()),
            "key": pa.array(np.tile(np.array(keys, dtype=object), n_steps), pa.string()),
            "writer_id": pa.array(np.full(n, "rank0", dtype=object), pa.string()),
            "seq": pa.array(seq),
            "step": pa.array(steps),
            "ts": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
            "value": pa.array(value),
            "log_partition": pa.array(np.zeros(n, dtype=np.uint32)),
            "log_offset": pa.array(seq // msg_points),
            "ingested_at": pa.array(ts).cast(pa.timestamp("ms", tz="UTC")),
        }
    )


async def _fill(store: ChdbStore, run: str, keys: tuple[str, ...], per_key: int) -> float:
    t0 = time.perf_counter()
    steps_per_block = BLOCK // len(keys)
    for start in range(0, per_key, steps_per_block):
        await store.insert("points", _block(run, keys, start, min(steps_per_block, per_key - start)))
    return time.perf_counter() - t0


async def _optimize(store: ChdbStore) -> None:
    for table in ("chart_cells", "point_rollups"):
        if await store.rows("SELECT 1 FROM system.tables WHERE database = currentDatabase() AND name = {t:String}", {"t": table}):
            await store.command(f"OPTIMIZE TABLE {table}")


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


async def _time(fn, reps: int) -> tuple[list[float], list[float]]:  # noqa: ANN001
    """Wall and process-CPU seconds of each call (after one warm-up call)."""
    await fn()
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        await fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _load_baseline(tree: str):  # noqa: ANN202
    """The chart function of another tree's charts.py, with that tree's rollups.py
    (the SQL of its own rollup tables); its other imports resolve to this tree's arwx."""
    query = Path(tree) / "services" / "arwx" / "query"
    mods = {}
    for name in ("rollups", "charts"):
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", query / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up
        own = sys.modules["arwx.query.rollups"]
        sys.modules["arwx.query.rollups"] = mods.get("rollups", own)
        try:
            spec.loader.exec_module(mod)
        finally:
            sys.modules["arwx.query.rollups"] = own
        mods[name] = mod
    return mods["charts"]


async def _baseline_schema(store: ChdbStore, tree: str) -> None:
    """The other tree's rollup tables and views beside this tree's (both fill on every insert)."""
    text = (Path(tree) / "schemas" / "clickhouse.sql").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    for stmt in "\n".join(lines).split("\n;"):
        if "point_rollups" in stmt and stmt.strip().startswith("CREATE"):
            await store.command(stmt)


async def _view_cost(store: ChdbStore, tree: str | None, n: int) -> None:
    """CPU of inserting ``n`` points of one run into ``points`` with only this
    tree's chart view, only the baseline's rollup view, and none; the tables
    are emptied after."""
    modes = [("no chart view", None), ("this tree (chart_cells_mv)", "chart_cells_mv")]
    if tree:
        modes.append(("baseline (point_rollups_mv)", "point_rollups_mv"))
    print(f"\n| insert {n:,} points into points, 1 run x 1 key | CPU s | µs per point over no view |")
    print("|---|---:|---:|")
    base = None
    for label, keep in modes:
        for view in ("chart_cells_mv", "point_rollups_mv"):
            await store.command(f"DROP VIEW IF EXISTS {view}")
        await apply_schema(store)
        if tree:
            await _baseline_schema(store, tree)
        for view in ("chart_cells_mv", "point_rollups_mv"):
            if view != keep:
                await store.command(f"DROP VIEW IF EXISTS {view}")
        data = _block(f"mv-{keep}", ("loss",), 0, n)
        c0 = time.process_time()
        await store.insert("points", data)
        cpu = time.process_time() - c0
        base = cpu if base is None else base
        extra = "" if keep is None else f"{(cpu - base) / n * 1e6:.2f}"
        print(f"| {label} | {cpu:.2f} | {extra} |", flush=True)
    await apply_schema(store)
    if tree:
        await _baseline_schema(store, tree)
    for table in ("points", "chart_cells", "point_rollups", "point_skips"):
        await store.command(f"TRUNCATE TABLE IF EXISTS {table}")


async def main(a: argparse.Namespace) -> None:
    la = os.getloadavg()
    print(f"<!-- load avg {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')} -->")
    impls = [("this tree", ChartRequest, chart)]
    if a.baseline:
        base = _load_baseline(a.baseline)
        impls.append(("baseline", base.ChartRequest, base.chart))
    tmp = tempfile.mkdtemp(prefix="arwx-bench-")
    store = ChdbStore(tmp)
    await store.start()
    await apply_schema(store)
    if a.baseline:
        await _baseline_schema(store, a.baseline)
    try:
        if a.view_cost:
            await _view_cost(store, a.baseline, a.view_cost)
        rows = []
        for e in a.exps:
            run = f"run_1e{e}"
            load_s = await _fill(store, run, ("loss",), 10**e)
            await _optimize(store)  # as background merges would, eventually
            print(f"  10^{e}: loaded {10**e:,} points in {load_s:.1f}s", flush=True)
            for name, req_cls, fn in impls:

                async def one(run: str = run, req_cls=req_cls, fn=fn) -> dict:  # noqa: ANN001
                    return await fn(store, req_cls(org=ORG, runs=[run], keys=["loss"], samples=a.samples))

                res = await one()
                wall, cpu = await _time(one, a.reps)
                rows.append((e, name, res["tier"], len(res["series"][0]["x"]), _pct(wall, 50), _pct(wall, 99), _pct(cpu, 50)))
        print(f"\n| chart, 1 metric, samples={a.samples}, agg=minmax | code | tier | buckets | p50 ms | p99 ms | CPU ms p50 |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for e, name, tier, nb, p50, p99, c50 in rows:
            print(f"| 10^{e} points | {name} | {tier} | {nb} | {p50:.1f} | {p99:.1f} | {c50:.1f} |")

        if a.project:
            n_runs, n_keys, per_key = a.project
            keys = DASHBOARD_KEYS[:n_keys]
            t0 = time.perf_counter()
            runs = [f"dash{i:03d}" for i in range(n_runs)]
            for r in runs:
                await _fill(store, r, keys, per_key)
            await _optimize(store)
            print(f"  project: loaded {n_runs} runs x {n_keys} keys x {per_key:,} points in {time.perf_counter() - t0:.0f}s", flush=True)
            print(f"\n| project chart: {n_runs} runs x {n_keys} keys x {per_key:,} points, samples={a.samples} | code | agg | tier | series | p50 ms | p99 ms | CPU ms p50 |")
            print("|---|---|---|---:|---:|---:|---:|---:|")
            # The dashboard asks for fields=value,min,max (a line and its band); a
            # baseline without ``fields`` computes every array (the route drops the rest).
            for agg, fields in (("minmax", ()), ("minmax", ("value", "min", "max")), ("last", ())):
                for name, req_cls, fn in impls:
                    extra = {"fields": fields} if fields and "fields" in req_cls.__dataclass_fields__ else {}

                    async def dash(req_cls=req_cls, fn=fn, agg=agg, extra=extra) -> dict:  # noqa: ANN001
                        return await fn(store, req_cls(org=ORG, runs=runs, keys=list(keys), samples=a.samples, agg=agg, **extra))

                    res = await dash()
                    wall, cpu = await _time(dash, max(3, a.reps // 3))
                    label = f"{agg}, fields={','.join(fields)}" if fields else agg
                    print(f"| | {name} | {label} | {res['tier']} | {len(res['series'])} | {_pct(wall, 50):.0f} | {_pct(wall, 99):.0f} | {_pct(cpu, 50):.0f} |", flush=True)

        if a.exps:
            run = f"run_1e{max(a.exps)}"

            class _NoLog:
                async def pending(self, _: str, stored: dict | None = None, before: dict | None = None) -> int:
                    return 0

            r = Run(ORG, run, "bench", run, "finished", {}, ["rank0"], 0, None)
            wall, _ = await _time(lambda: receipt(store, _NoLog(), r), 10)
            print(f"\nintegrity receipt, 10^{max(a.exps)} points in the run: p50 {_pct(wall, 50):.0f} ms, p99 {_pct(wall, 99):.0f} ms")
    finally:
        await store.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exps", type=int, nargs="*", default=[5, 6, 7], help="points of the one metric: 10^e")
    ap.add_argument("--samples", type=int, default=320)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--project", type=int, nargs=3, metavar=("RUNS", "KEYS", "POINTS"), help="also time a dashboard chart")
    ap.add_argument("--baseline", help="a tree whose services/arwx/query/charts.py is the 'before'")
    ap.add_argument("--view-cost", type=int, default=0, metavar="POINTS", help="also time the chart view's insert cost")
    asyncio.run(main(ap.parse_args()))
