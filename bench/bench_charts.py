"""Chart latency at 10^4..10^7 points per key, history streaming rate, receipt latency.

Embedded store (chDB in a temp dir). Synthetic points go in with
``store.insert("points", table)`` in 1M-row blocks, so the rollup materialized
views fill exactly as they do behind the consumer. Not a test: prints a table.

    /tmp/venv/bin/python bench/bench_charts.py [--max-exp 7] [--reps 30]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "services"))

from arwx.query.charts import ChartRequest, chart  # noqa: E402
from arwx.query.history import read_rows, to_rows  # noqa: E402
from arwx.query.integrity import receipt  # noqa: E402
from arwx.runs import Run  # noqa: E402
from arwx.store.chdb_store import ChdbStore  # noqa: E402
from arwx.store.schema import apply_schema  # noqa: E402

KEYS = ("loss", "acc", "lr", "grad_norm")
_enc = msgspec.json.Encoder()
BLOCK = 1_000_000
ORG = "bench"


def _block(run: str, start_step: int, n_steps: int, msg_points: int = 500) -> pa.Table:
    """``n_steps`` steps × 4 keys of one writer; seq interleaves keys as the SDK does;
    log offsets mimic 500-point SDK batches (one log message each)."""
    steps = np.repeat(np.arange(start_step, start_step + n_steps, dtype=np.uint64), len(KEYS))
    n = len(steps)
    seq = np.arange(start_step * len(KEYS), start_step * len(KEYS) + n, dtype=np.uint64)
    rng = np.random.default_rng(start_step)
    value = np.sin(steps / 1000.0) + rng.normal(0, 0.05, n)
    ts = (1_700_000_000_000 + steps.astype(np.int64) * 100)
    return pa.table(
        {
            "org": pa.array(np.full(n, ORG, dtype=object), pa.string()),
            "run_id": pa.array(np.full(n, run, dtype=object), pa.string()),
            "key": pa.array(np.tile(np.array(KEYS, dtype=object), n_steps), pa.string()),
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


async def _fill(store: ChdbStore, run: str, per_key: int) -> float:
    t0 = time.perf_counter()
    steps_per_block = BLOCK // len(KEYS)
    for start in range(0, per_key, steps_per_block):
        await store.insert("points", _block(run, start, min(steps_per_block, per_key - start)))
    return time.perf_counter() - t0


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, p))


async def _time(fn, reps: int) -> list[float]:  # noqa: ANN001
    await fn()  # warm
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def main(max_exp: int, reps: int) -> None:
    tmp = tempfile.mkdtemp(prefix="arwx-bench-")
    store = ChdbStore(tmp)
    await store.start()
    await apply_schema(store)
    rows = []
    try:
        for e in range(4, max_exp + 1):
            run = f"run_1e{e}"
            load_s = await _fill(store, run, 10**e)
            await store.command("OPTIMIZE TABLE point_rollups")  # as background merges would, eventually

            async def one(run: str = run, agg: str = "minmax") -> None:
                await chart(store, ChartRequest(org=ORG, runs=[run], keys=list(KEYS), samples=500, agg=agg))

            res = await chart(store, ChartRequest(org=ORG, runs=[run], keys=list(KEYS), samples=500))
            lat = await _time(one, reps)
            lat_lttb = await _time(lambda run=run: one(run, "lttb"), max(5, reps // 3))
            rows.append((e, load_s, res["tier"], len(res["series"][0]["x"]), _pct(lat, 50), _pct(lat, 99), _pct(lat_lttb, 50)))
            print(f"  10^{e}: loaded {4 * 10**e:,} rows in {load_s:.1f}s", flush=True)
        print()
        print("chart: 1 run x 4 keys, samples=500, agg=minmax (lttb p50 alongside)")
        print(f"{'points/key':>11} {'load s':>7} {'tier':>5} {'buckets':>8} {'p50 ms':>8} {'p99 ms':>8} {'lttb p50':>9}")
        for e, load_s, tier, nb, p50, p99, lp50 in rows:
            print(f"{'10^' + str(e):>11} {load_s:7.1f} {tier:5d} {nb:8d} {p50:8.1f} {p99:8.1f} {lp50:9.1f}")
        base = rows[0][4]
        print(f"largest / smallest p50: {rows[-1][4] / base:.2f}x")

        # History streaming (the stream endpoint's page loop) and the receipt, at 10^6 per key.
        run = "run_1e6"
        if any(r[0] == 6 for r in rows):
            t0 = time.perf_counter()
            n, nbytes, seen = 0, 0, set()
            # What GET /v1/runs/:id/metrics/stream does: step windows, rows, NDJSON.
            async for raw in read_rows(store, ORG, run, ["loss"], 0, 2**63 - 1, 20_000):
                rows_ = to_rows(raw, seen)
                nbytes += len(b"\n".join(_enc.encode(r) for r in rows_))
                n += len(rows_)
            dt = time.perf_counter() - t0
            print(f"\nhistory stream, 1 key of 10^6 points: {n:,} rows in {dt:.2f}s = {n / dt:,.0f} points/s")

            class _NoLog:
                async def pending(self, _: str) -> int:
                    return 0

            r = Run(ORG, run, "bench", run, "finished", {}, ["rank0"], 0, None)
            lat = await _time(lambda: receipt(store, _NoLog(), r), 10)
            print(f"integrity receipt, 4x10^6 points in the run: p50 {_pct(lat, 50):.0f} ms, p99 {_pct(lat, 99):.0f} ms")
    finally:
        await store.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-exp", type=int, default=7)
    ap.add_argument("--reps", type=int, default=30)
    a = ap.parse_args()
    asyncio.run(main(a.max_exp, a.reps))
